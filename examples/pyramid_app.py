"""Pyramid with wsgi_session: a visit counter with log in and log out.

    cd examples && gunicorn --threads 8 pyramid_app:app
    cd examples && gunicorn --paste pyramid.ini    # the session as a PasteDeploy filter

``main`` is the Paste app factory (the app *without* the session: pyramid.ini
adds it as a filter); ``app`` is the same app wrapped in code.
"""

from __future__ import annotations

import html
from typing import Any

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response

from wsgi_session import SessionMiddleware, get_session

PAGE = """<!doctype html><title>Pyramid + wsgi_session</title>
<p id="visits">Visits: {visits}</p><p id="user">{user}</p>
<form method="post" action="/login"><input name="user" value="alice"><button>Log in</button></form>
<form method="post" action="/logout"><button>Log out</button></form>
"""


def index(request: Request) -> Response:
    session = get_session(request.environ)
    session["visits"] = session.get("visits", 0) + 1
    user = session.get("user")
    who = f"Logged in as {html.escape(user)}" if user else "Not logged in"
    return Response(PAGE.format(visits=session["visits"], user=who))


def login(request: Request) -> HTTPSeeOther:
    session = get_session(request.environ)
    # A real app checks a password (and a CSRF token) here.
    session.regenerate()  # a privilege change: never keep the old id
    session["user"] = request.POST.get("user", "alice")
    return HTTPSeeOther(location="/")


def logout(request: Request) -> HTTPSeeOther:
    get_session(request.environ).destroy()  # the response deletes the cookie
    return HTTPSeeOther(location="/")


def main(global_config: dict[str, str] | None = None, **settings: Any) -> Any:
    """The Pyramid WSGI app, without the session middleware."""
    with Configurator(settings=settings) as config:
        config.add_route("index", "/")
        config.add_route("login", "/login")
        config.add_route("logout", "/logout")
        config.add_view(index, route_name="index", request_method="GET")
        config.add_view(login, route_name="login", request_method="POST")
        config.add_view(logout, route_name="logout", request_method="POST")
        return config.make_wsgi_app()


app = SessionMiddleware(main(), max_lifetime=1800)


if __name__ == "__main__":
    from wsgiref.simple_server import make_server

    with make_server("127.0.0.1", 8000, app) as server:
        print("Pyramid + wsgi_session on http://127.0.0.1:8000/")
        server.serve_forever()
