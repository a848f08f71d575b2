// kapal job log: followed over server-sent events (the browser resumes with Last-Event-ID),
// ANSI colours turned into classes, `$ command` lines opening collapsible sections, numbered
// lines with anchors, auto-scroll that stops when the reader scrolls up.
//
// Every line is attacker-controlled text: it only ever reaches the page through textContent
// on elements made here, never through innerHTML.
"use strict";

(function () {
  // CSI (parameters, intermediates, final byte), OSC (up to BEL or ST), other two-byte escapes
  var ESCAPE = /\x1b\[([0-?]*)[ -\/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?/g;
  var CUBE = [0, 95, 135, 175, 215, 255];

  function newState() {
    return { fg: null, bg: null, fgRgb: null, bgRgb: null, bold: false, dim: false, italic: false, underline: false };
  }

  function colour256(n) {
    if (n < 16) return null;
    if (n >= 232) { var g = 8 + (n - 232) * 10; return "rgb(" + g + "," + g + "," + g + ")"; }
    n -= 16;
    return "rgb(" + CUBE[Math.floor(n / 36)] + "," + CUBE[Math.floor(n / 6) % 6] + "," + CUBE[n % 6] + ")";
  }

  function applySgr(state, params) {
    var codes = params === "" ? [0] : params.split(/[;:]/).map(function (p) { return p === "" ? 0 : parseInt(p, 10); });
    for (var i = 0; i < codes.length; i++) {
      var c = codes[i];
      if (c === 0) { var fresh = newState(); for (var k in fresh) state[k] = fresh[k]; }
      else if (c === 1) state.bold = true;
      else if (c === 2) state.dim = true;
      else if (c === 3) state.italic = true;
      else if (c === 4) state.underline = true;
      else if (c === 22) { state.bold = false; state.dim = false; }
      else if (c === 23) state.italic = false;
      else if (c === 24) state.underline = false;
      else if (c >= 30 && c <= 37) { state.fg = c - 30; state.fgRgb = null; }
      else if (c >= 90 && c <= 97) { state.fg = c - 90 + 8; state.fgRgb = null; }
      else if (c === 39) { state.fg = null; state.fgRgb = null; }
      else if (c >= 40 && c <= 47) { state.bg = c - 40; state.bgRgb = null; }
      else if (c >= 100 && c <= 107) { state.bg = c - 100 + 8; state.bgRgb = null; }
      else if (c === 49) { state.bg = null; state.bgRgb = null; }
      else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
        var n = codes[i + 2] || 0, rgb = colour256(n);
        if (c === 38) { state.fg = rgb ? null : n; state.fgRgb = rgb; } else { state.bg = rgb ? null : n; state.bgRgb = rgb; }
        i += 2;
      } else if ((c === 38 || c === 48) && codes[i + 1] === 2) {
        var value = "rgb(" + (codes[i + 2] & 255) + "," + (codes[i + 3] & 255) + "," + (codes[i + 4] & 255) + ")";
        if (c === 38) { state.fg = null; state.fgRgb = value; } else { state.bg = null; state.bgRgb = value; }
        i += 4;
      }
    }
  }

  function styled(state, text) {
    var span = document.createElement("span");
    span.textContent = text;
    if (state.fg !== null) span.classList.add("ansi-fg-" + state.fg);
    if (state.bg !== null) span.classList.add("ansi-bg-" + state.bg);
    if (state.fgRgb) span.style.color = state.fgRgb;
    if (state.bgRgb) span.style.backgroundColor = state.bgRgb;
    if (state.bold) span.classList.add("ansi-bold");
    if (state.dim) span.classList.add("ansi-dim");
    if (state.italic) span.classList.add("ansi-italic");
    if (state.underline) span.classList.add("ansi-underline");
    return span;
  }

  // The spans of one line, and its text without escapes.
  function renderLine(state, raw) {
    raw = raw.replace(/\r+$/, "");
    var cr = raw.lastIndexOf("\r");
    if (cr >= 0) raw = raw.slice(cr + 1);  // a progress bar: what the terminal would show last
    var spans = [], plain = "", last = 0, match;
    ESCAPE.lastIndex = 0;
    while ((match = ESCAPE.exec(raw)) !== null) {
      if (match.index > last) {
        var text = raw.slice(last, match.index);
        spans.push(styled(state, text));
        plain += text;
      }
      if (match[2] === "m") applySgr(state, match[1]);
      last = ESCAPE.lastIndex;
      if (match[0] === "") ESCAPE.lastIndex++;
    }
    if (last < raw.length) {
      var rest = raw.slice(last);
      spans.push(styled(state, rest));
      plain += rest;
    }
    return { spans: spans, plain: plain };
  }

  function LogView(root) {
    this.root = root;
    this.state = newState();
    this.target = root;        // where the next line goes: the log, or a section's body
    this.count = 0;
    this.queue = [];
    this.follow = true;
    this.scripted = false;     // a scroll this code made, not the reader
    this.anchor = /^#L(\d+)$/.exec(window.location.hash);
    this.counter = document.getElementById("log-count");
    this.followBox = document.getElementById("log-follow");
    if (this.anchor) this.setFollow(false);
  }

  LogView.prototype.setFollow = function (on) {
    this.follow = on;
    if (this.followBox) this.followBox.checked = on;
  };

  LogView.prototype.atBottom = function () {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 24;
  };

  LogView.prototype.add = function (number, raw) {
    this.queue.push([number, raw]);
    if (this.queue.length === 1) {
      var view = this;
      window.requestAnimationFrame(function () { view.flush(); });
    }
  };

  LogView.prototype.line = function (number, raw) {
    var rendered = renderLine(this.state, raw);
    var line = document.createElement("div");
    line.className = "line";
    line.id = "L" + number;
    var link = document.createElement("a");
    link.className = "ln";
    link.href = "#L" + number;
    link.textContent = String(number);
    var text = document.createElement("span");
    text.className = "text";
    rendered.spans.forEach(function (span) { text.appendChild(span); });
    line.appendChild(link);
    line.appendChild(text);
    if (rendered.plain.slice(0, 2) === "$ ") {
      var section = document.createElement("details");
      section.className = "section";
      section.open = true;
      var summary = document.createElement("summary");
      line.classList.add("command");
      summary.appendChild(line);
      var body = document.createElement("div");
      body.className = "section-body";
      section.appendChild(summary);
      section.appendChild(body);
      this.root.appendChild(section);
      this.target = body;
    } else {
      this.target.appendChild(line);
    }
    this.count = Math.max(this.count, number);
    return line;
  };

  LogView.prototype.flush = function () {
    var batch = this.queue;
    this.queue = [];
    var wanted = null;
    for (var i = 0; i < batch.length; i++) {
      var line = this.line(batch[i][0], batch[i][1]);
      if (this.anchor && String(batch[i][0]) === this.anchor[1]) wanted = line;
    }
    if (this.counter) this.counter.textContent = this.count + " lines";
    if (wanted) {
      wanted.classList.add("target");
      var section = wanted.closest("details");
      if (section) section.open = true;
      this.scripted = true;
      wanted.scrollIntoView({ block: "center" });
      this.anchor = null;
    } else if (this.follow) {
      this.scripted = true;
      window.scrollTo(0, document.documentElement.scrollHeight);
    }
  };

  LogView.prototype.watchScroll = function () {
    var view = this, lastY = window.scrollY;
    window.addEventListener("scroll", function () {
      var y = window.scrollY;
      if (view.scripted) { view.scripted = false; lastY = y; return; }
      if (y < lastY && !view.atBottom()) view.setFollow(false);
      else if (view.atBottom()) view.setFollow(true);
      lastY = y;
    }, { passive: true });
    if (this.followBox) {
      this.followBox.addEventListener("change", function () {
        view.setFollow(view.followBox.checked);
        if (view.follow) { view.scripted = true; window.scrollTo(0, document.documentElement.scrollHeight); }
      });
    }
  };

  function refreshJob() {
    fetch(window.location.pathname, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.text(); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("job-live");
        var current = document.getElementById("job-live");
        if (fresh && current) current.replaceWith(document.importNode(fresh, true));
      })
      .catch(function () {});
  }

  function setAll(open) {
    document.querySelectorAll("#log details.section").forEach(function (d) { d.open = open; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("log");
    if (!root) return;
    var view = new LogView(root);
    view.watchScroll();
    window.addEventListener("hashchange", function () {
      var match = /^#L(\d+)$/.exec(window.location.hash);
      if (!match) return;
      document.querySelectorAll("#log .line.target").forEach(function (l) { l.classList.remove("target"); });
      var line = document.getElementById("L" + match[1]);
      view.setFollow(false);
      if (line) {
        line.classList.add("target");
        var section = line.closest("details");
        if (section) section.open = true;
      } else {
        view.anchor = match;  // not arrived yet: marked when it does
      }
    });
    var collapse = document.getElementById("log-collapse"), expand = document.getElementById("log-expand");
    if (collapse) collapse.addEventListener("click", function () { setAll(false); });
    if (expand) expand.addEventListener("click", function () { setAll(true); });
    var ended = document.getElementById("log-end");
    var wasRunning = root.getAttribute("data-finished") !== "yes";
    var received = 0;  // the last line number shown or queued: a (re)opened stream starts after it
    var base = root.getAttribute("data-events");
    // the log so far in one plain-text request (fast for long logs), then the rest as it comes
    fetch(root.getAttribute("data-raw"), { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (text) {
        var lines = text.split("\n");
        if (lines.length && lines[lines.length - 1] === "") lines.pop();
        lines.forEach(function (line) { received += 1; view.add(received, line); });
      })
      .catch(function () { /* the stream below sends every line instead */ })
      .then(follow);
    var handle = null;
    function follow() {
      handle = window.kapalStream(function () { return base + "?offset=" + received; }, function (source) {
        source.addEventListener("message", function (event) {
          var number = parseInt(event.lastEventId, 10) || received + 1;
          if (number <= received) return;
          received = number;
          view.add(number, event.data);
        });
        source.addEventListener("end", function (event) {
          if (handle) handle.stop();
          var end = {};
          try { end = JSON.parse(event.data); } catch (e) { end = {}; }
          root.setAttribute("data-status", end.status || "");
          root.classList.add("ended");
          if (ended) {
            ended.hidden = false;
            ended.textContent = "Job " + (end.status || "finished") +
              (end.exit_code !== null && end.exit_code !== undefined ? " with exit code " + end.exit_code : "") + ".";
          }
          if (wasRunning) refreshJob();
        });
        source.addEventListener("error", function () {
          if (source.readyState === EventSource.CLOSED && ended && !root.classList.contains("ended")) {
            ended.hidden = false;
            ended.textContent = "The log stream stopped; reload the page to follow it again.";
          }
        });
      });
    }
  });
})();
