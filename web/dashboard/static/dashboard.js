// kapal dashboard: live rows of the pipelines list, live pipeline pages, ticking durations.
// Every value shown comes escaped from the server's templates; nothing here builds HTML from
// text it received.
"use strict";

(function () {
  function formatDuration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    if (h) return h + "h " + two(m) + "m";
    if (m) return m + "m " + two(s) + "s";
    return s + "s";
  }

  // As the server words it (web/dashboard/display.py `age`).
  function formatAge(seconds) {
    if (seconds < 45) return "just now";
    if (seconds < 3600) return Math.max(1, Math.round(seconds / 60)) + " min ago";
    if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
    var days = Math.round(seconds / 86400);
    return days + " day" + (days !== 1 ? "s" : "") + " ago";
  }

  function tickDurations() {
    var now = Date.now();
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("data-since"));
      if (!isNaN(since)) el.textContent = formatDuration((now - since) / 1000);
    });
    document.querySelectorAll("time.age[datetime]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(at)) el.textContent = formatAge((now - at) / 1000);
    });
  }

  // A fragment of the server's own escaped HTML, parsed inertly (scripts in it never run).
  function parseRow(html) {
    var doc = new DOMParser().parseFromString("<table><tbody>" + html + "</tbody></table>", "text/html");
    var row = doc.querySelector("tr");
    return row ? document.importNode(row, true) : null;
  }

  // An EventSource that lets go of its connection while the tab is hidden (a browser gives a
  // site six HTTP/1.1 connections across all its tabs) and opens again, from `makeUrl()`, when
  // the tab is shown; `attach(source)` adds the listeners to each new one.
  function stream(makeUrl, attach) {
    var source = null, done = false;
    function open() {
      if (done || source) return;
      source = new EventSource(makeUrl());
      attach(source);
    }
    function close() {
      if (source) { source.close(); source = null; }
    }
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) close(); else open();
    });
    if (!document.hidden) open();
    return { stop: function () { done = true; close(); } };
  }
  window.kapalStream = stream;

  function followList(tbody) {
    var state = document.getElementById("live-state");
    stream(function () { return tbody.getAttribute("data-events"); }, function (source) {
      source.addEventListener("open", function () { if (state) state.hidden = false; });
      source.addEventListener("error", function () { if (state) state.hidden = true; });
      source.addEventListener("row", function (event) {
        var data = JSON.parse(event.data);
        var row = parseRow(data.html);
        if (!row) return;
        var old = document.getElementById("pipeline-" + data.id);
        // the first events repeat the rows as served: flash only a row that is new or moved on
        var moved = !old || old.getAttribute("data-status") !== row.getAttribute("data-status");
        if (old) {
          old.replaceWith(row);
        } else {
          tbody.insertBefore(row, tbody.firstChild);
          var empty = document.getElementById("no-pipelines");
          if (empty) empty.remove();
        }
        if (moved) {
          row.classList.add("changed");
          setTimeout(function () { row.classList.remove("changed"); }, 1500);
        }
      });
      source.addEventListener("order", function (event) {
        var ids = JSON.parse(event.data);
        var keep = {};
        ids.forEach(function (id) { keep["pipeline-" + id] = true; });
        Array.prototype.slice.call(tbody.children).forEach(function (row) {
          if (!keep[row.id]) row.remove();
        });
        ids.forEach(function (id) {
          var row = document.getElementById("pipeline-" + id);
          if (row) tbody.appendChild(row);
        });
      });
    });
  }

  // A live part of a page (a pipeline's jobs, a job's facts): when the server says the
  // pipeline changed, fetch the page again and swap the part in.
  function followPart(live) {
    var id = live.id;
    var url = live.getAttribute("data-events");
    var busy = false, again = false;
    function refresh() {
      if (busy) { again = true; return; }
      busy = true;
      fetch(window.location.pathname, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) { return response.text(); })
        .then(function (text) {
          var doc = new DOMParser().parseFromString(text, "text/html");
          var fresh = doc.getElementById(id);
          var current = document.getElementById(id);
          if (fresh && current) {
            // keep the open <details> open
            var open = {};
            current.querySelectorAll("details[open] > summary").forEach(function (s) { open[s.textContent] = true; });
            var node = document.importNode(fresh, true);
            node.removeAttribute("data-events");
            node.querySelectorAll("details > summary").forEach(function (s) { if (open[s.textContent]) s.parentNode.open = true; });
            current.replaceWith(node);
            tickDurations();
          }
        })
        .catch(function () {})
        .then(function () { busy = false; if (again) { again = false; refresh(); } });
    }
    stream(function () { return url; }, function (source) {
      source.addEventListener("changed", refresh);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var tbody = document.getElementById("pipelines");
    if (tbody && tbody.getAttribute("data-events")) followList(tbody);
    ["pipeline-live", "job-live"].forEach(function (id) {
      var live = document.getElementById(id);
      if (live && live.getAttribute("data-events")) followPart(live);
    });
    document.querySelectorAll("input.copy").forEach(function (input) {
      input.addEventListener("focus", function () { input.select(); });
    });
    tickDurations();
    setInterval(tickDurations, 1000);
  });
})();
