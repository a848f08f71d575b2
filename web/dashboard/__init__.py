"""The dashboard: server-rendered pages over the history, live parts over SSE, SVG drawn by kapal.

`web.dashboard.routes.router` holds the pages, the sign-in and the write actions;
`web.dashboard.routes.static_files` serves the CSS and JavaScript (no CDN: it works offline).
"""
