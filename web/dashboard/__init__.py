"""The dashboard: server-rendered pages over the history, live parts over SSE, SVG drawn by kapal.

Pages (`web.dashboard.routes.router`; CSS, JavaScript and icon from `static_files`, no CDN):

    /                          pipelines of every repository, newest first, filtered, paged;
                               rows change and appear live (`/dashboard/events`)
    /pipelines/{id}            stages of job cards, the `needs:` graph, tests, artifacts, images;
                               retry (failed or all), cancel, play manual jobs; follows the run
    /jobs/{id}                 the log live (ANSI colours, `$ command` sections, numbered lines,
                               auto-scroll), its facts, retry/cancel/play, raw log, artifacts
    /repos, /repos/{id}        settings, the webhook to paste (its secret for admins), badges
    /badges/{repo}/{branch}.svg  the status of a branch's latest pipeline
    /charts                    durations, pass rate, slowest jobs, flakiest tests
    /signin, /signout          an API token kept in an HttpOnly, SameSite=Strict cookie

Every value from the history reaches a page escaped (Jinja autoescaping, `textContent` in the
log viewer), and a Content-Security-Policy allows kapal's own scripts only.
"""
