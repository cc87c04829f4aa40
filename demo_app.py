"""wsgi_session's demo: what a server-side session is, on one page.

    python demo_app.py [--host 127.0.0.1] [--port 8000]   # standard library server
    gunicorn --threads 8 demo_app:app                      # the same app under gunicorn

The page shows the visit counter, what the server keeps (created, last
access, when the session expires if left idle), a fingerprint of the id
(never the id itself) that changes at log in, and, once logged in, your
sessions on every device with a button to revoke each or all but this one.
Log in and log out are POST forms protected by the session's CSRF token.

Where sessions live (default: memory, in this process):

    WSGI_SESSION_PROVIDER=sqlite   WSGI_SESSION_SQLITE_PATH=sessions.db
    WSGI_SESSION_PROVIDER=redis    WSGI_SESSION_REDIS_URL=redis://127.0.0.1:6379/0
    WSGI_SESSION_PROVIDER=postgres WSGI_SESSION_POSTGRES_DSN=postgresql://...

Redis and PostgreSQL need their URL: the demo never writes into a server
you did not name.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import html
import os
import sys
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from wsgi_session import Session, SessionMiddleware, get_session

#: How long "remember me" keeps a session alive between visits.
REMEMBER_FOR = 30 * 24 * 3600
USER_KEY = "user"

STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
main{max-width:760px;margin:0 auto;padding:24px}
h1{font-size:1.6rem;margin:0 0 4px}.lead{color:#5a6270;margin:0 0 20px}
.card{background:#fff;border-radius:10px;padding:16px 20px;margin:0 0 16px;
box-shadow:0 1px 3px #0001}
.card h2{font-size:1.05rem;margin:0 0 8px}
.flash{background:#e7f6ec;border-left:4px solid #2e9d57;padding:10px 14px;border-radius:6px;
margin:0 0 16px}
.big{font-size:2.2rem;font-weight:700;margin:0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dt{color:#5a6270}dd{margin:0}
code{background:#eef0f3;padding:1px 6px;border-radius:4px}
.fp{font-family:ui-monospace,monospace;font-size:1.1rem;letter-spacing:1px;
background:#1d2330;color:#9be7b4;padding:2px 8px;border-radius:4px}
form{display:inline}input[type=text]{padding:6px 8px;border:1px solid #c8ccd4;border-radius:6px}
button{padding:6px 14px;border:0;border-radius:6px;background:#3257d5;color:#fff;cursor:pointer}
button.quiet{background:#e3e6eb;color:#1d2330}button.danger{background:#c23b3b}
ul.sessions{list-style:none;padding:0;margin:0}
ul.sessions li{display:flex;justify-content:space-between;align-items:center;gap:12px;
padding:8px 0;border-top:1px solid #eef0f3}
.muted{color:#5a6270;font-size:.9rem}.tag{background:#2e9d57;color:#fff;border-radius:4px;
padding:0 6px;font-size:.8rem;margin-left:6px}
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>wsgi_session demo</title><style>{style}</style></head>
<body><main>
<h1>wsgi_session demo</h1>
<p class="lead">Your browser holds only a random id in an HttpOnly cookie; everything
below is kept on the server ({provider}), under that id.</p>
{flash}
<section class="card"><h2>This visit</h2>
<p class="big" id="visits">Visits: {visits}</p>
<p id="user">{who}</p>
<p><a id="visit" href="/">Visit again</a></p></section>
<section class="card"><h2>What the server keeps</h2><dl>
<dt>Session id</dt><dd>fingerprint <span class="fp" id="fingerprint">{fingerprint}</span>
<span class="muted">(a hash of the id: it changes when you log in)</span></dd>
<dt>Created</dt><dd id="created">{created}</dd>
<dt>Last access before this one</dt><dd id="accessed">{accessed}</dd>
<dt>Ends if left idle</dt><dd id="expires">{expires}</dd>
<dt>Cookie</dt><dd>{cookie_kind}</dd>
<dt>Data</dt><dd id="data">{data}</dd></dl></section>
{account}
</main></body></html>
"""

LOGIN = """<section class="card"><h2>Log in</h2>
<form method="post" action="/login">{csrf}
<input type="text" name="name" value="demo" aria-label="name">
<label><input type="checkbox" name="remember" id="remember"> remember me for 30 days</label>
<button id="login">Log in</button></form>
<p class="muted">Logging in gives the session a new id (see the fingerprint), so an id
seen or planted before is worthless afterwards.</p></section>
"""

ACCOUNT = """<section class="card"><h2>Your sessions</h2>
<ul class="sessions" id="sessions">{rows}</ul>
<p><form method="post" action="/logout-others">{csrf}
<button class="quiet" id="logout-others">Log out everywhere else</button></form>
<form method="post" action="/logout">{csrf}
<button class="danger" id="logout">Log out</button></form></p></section>
"""

ROW = """<li><span>{label}<br><span class="muted">started {created}, last seen {seen},
ends {expires}</span></span>{action}</li>"""


def demo(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    session = get_session(environ)
    manager = environ["demo.manager"]
    path = environ.get("PATH_INFO", "/")
    method = environ.get("REQUEST_METHOD", "GET")
    if method == "POST":
        form = _form(environ)
        if not session.check_csrf_token(form.get("csrf_token")):
            return _respond(start_response, "403 Forbidden", "bad or missing CSRF token\n")
        if path == "/login":
            before = _fingerprint(session.sid)
            session.regenerate()  # a privilege change: never keep the old id
            name = form.get("name", "").strip()[:40] or "demo"
            session[USER_KEY] = name
            if form.get("remember"):
                session.set_lifetime(REMEMBER_FOR, persistent=True)
            after = _fingerprint(session.sid)
            session.flash(f"Logged in as {name}. The session id changed: {before} → {after}.")
        elif path == "/logout":
            session.destroy()
            session.flash("Logged out: the session was destroyed on the server.")
        elif path == "/logout-others" and session.get(USER_KEY):
            n = manager.revoke_user(session[USER_KEY], keep=session.handle)
            session.flash(f"Logged out {n} other session{'s' * (n != 1)}.")
        elif path == "/revoke" and session.get(USER_KEY):
            ok = manager.revoke(form.get("handle", ""))
            session.flash("That session is logged out." if ok else "That session had ended.")
        else:
            return _respond(start_response, "404 Not Found", "not found\n")
        start_response("303 See Other", [("Location", "/"), ("Content-Length", "0")])
        return [b""]
    if path != "/":
        return _respond(start_response, "404 Not Found", "not found\n")
    visits = session.get("visits", 0) + 1
    session["visits"] = visits
    body = _page(session, manager, environ["demo.provider"], visits)
    return _respond(start_response, "200 OK", body, "text/html; charset=utf-8")


def _page(session: Session, manager: Any, provider: str, visits: int) -> str:
    flashes = session.pop_flash()
    csrf = f'<input type="hidden" name="csrf_token" value="{session.csrf_token}">'
    user = session.get(USER_KEY)
    if user:
        rows = []
        mine = session.handle
        for info in manager.sessions_of(user):
            if info.handle == mine:
                label, action = 'This browser<span class="tag">you</span>', ""
            else:
                label = "Another browser"
                action = (
                    f'<form method="post" action="/revoke">{csrf}'
                    f'<input type="hidden" name="handle" value="{html.escape(info.handle)}">'
                    '<button class="quiet revoke">Revoke</button></form>'
                )
            rows.append(
                ROW.format(
                    label=label,
                    action=action,
                    created=_ago(info.created),
                    seen=_ago(info.last_access),
                    expires=_when(info.expires),
                )
            )
        account = ACCOUNT.format(rows="".join(rows), csrf=csrf)
    else:
        account = LOGIN.format(csrf=csrf)
    shown = {k: ("…" if k == "_csrf_token" else v) for k, v in session.items()}
    return PAGE.format(
        style=STYLE,
        provider=html.escape(provider),
        flash="".join(f'<p class="flash" id="flash">{html.escape(str(m))}</p>' for m in flashes),
        visits=visits,
        who=f"Logged in as {html.escape(user)}" if user else "Not logged in",
        fingerprint=_fingerprint(session.sid) if session.sid else "(new: stored at the end)",
        created=_ago(session.created) if session.created else "now",
        accessed=_ago(session.last_access) if session.last_access else "never",
        expires=_when(session.expires) if session.expires else "—",
        cookie_kind=(
            "kept by the browser for 30 days (remember me)"
            if session.persistent
            else "deleted when the browser closes"
        ),
        data=html.escape(", ".join(f"{k} = {v!r}" for k, v in sorted(shown.items()))),
        account=account,
    )


def _fingerprint(sid: str | None) -> str:
    return "none" if sid is None else hashlib.sha256(sid.encode()).hexdigest()[:8]


def _ago(when: float) -> str:
    seconds = max(0, int(time.time() - when))
    if seconds < 60:
        return f"{seconds} s ago"
    return f"{seconds // 60} min ago" if seconds < 3600 else f"{seconds // 3600} h ago"


def _when(when: float) -> str:
    left = max(0, int(when - time.time()))
    clock = time.strftime("%H:%M:%S", time.localtime(when))
    return f"at {clock} (in {left // 60} min {left % 60} s)"


def _form(environ: dict[str, Any]) -> dict[str, str]:
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), 64 * 1024)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body).items()}


def _respond(
    start_response: Any, status: str, text: str, kind: str = "text/plain; charset=utf-8"
) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]


def make_app() -> SessionMiddleware:
    """The demo behind SessionMiddleware, its store chosen by the environment."""
    provider = os.environ.get("WSGI_SESSION_PROVIDER", "memory")
    options: dict[str, Any] | None = None
    if provider == "sqlite":
        options = {"path": os.environ.get("WSGI_SESSION_SQLITE_PATH", "sessions.db")}
    elif provider in ("redis", "postgres"):
        variable = "WSGI_SESSION_REDIS_URL" if provider == "redis" else "WSGI_SESSION_POSTGRES_DSN"
        url = os.environ.get(variable)
        if not url:
            raise SystemExit(f"demo_app: WSGI_SESSION_PROVIDER={provider} needs {variable}")
        options = {"url": url} if provider == "redis" else {"dsn": url}
    middleware: SessionMiddleware

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ["demo.manager"] = middleware.manager
        environ["demo.provider"] = provider
        return demo(environ, start_response)

    middleware = SessionMiddleware(
        app,
        provider=provider,
        provider_options=options,
        user_key=USER_KEY,
        max_lifetime=float(os.environ.get("WSGI_SESSION_MAX_LIFETIME", "1800")),
        gc_interval=float(os.environ.get("WSGI_SESSION_GC_INTERVAL", "60")),
    )
    return middleware


app = make_app()


def main(argv: list[str] | None = None) -> int:
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # a browser holds connections open

    parser = argparse.ArgumentParser(description="wsgi_session's demo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args(argv)
    try:
        server = make_server(args.host, args.port, app, server_class=Server)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"demo_app: port {args.port} is in use; try --port {args.port + 1}",
                file=sys.stderr,
            )
            return 2
        print(f"demo_app: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    print(f"wsgi_session demo on http://{args.host}:{server.server_port}/ (Ctrl-C to stop)")
    with server, contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
