"""Pyramid with wsgi_session: ``request.session`` with flash, log in and CSRF.

    cd examples && gunicorn --threads 8 pyramid_app:app
    cd examples && gunicorn --paste pyramid.ini    # the settings from an .ini

``config.include("wsgi_session.pyramid")`` makes ``request.session`` (an
``ISession``) from the ``wsgi_session.*`` settings. ``main`` is the Paste
app factory; ``app`` is the same app with the settings given in code.
"""

from __future__ import annotations

import html
from typing import Any

from pyramid.authentication import SessionAuthenticationHelper
from pyramid.config import Configurator
from pyramid.csrf import get_csrf_token
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import forget, remember

PAGE = """<!doctype html><title>Pyramid + wsgi_session</title>
{flashes}<p id="visits">Visits: {visits}</p><p id="user">{user}</p>
<form method="post" action="/login"><input type="hidden" name="csrf_token" value="{csrf}">
<input name="user" value="alice"><input name="password" type="password" value="wonderland">
<button id="login">Log in</button></form>
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{csrf}">
<button id="logout">Log out</button></form>
"""


class SessionSecurityPolicy:
    """Who is logged in, kept in the session (Pyramid's helper, key ``auth.userid``)."""

    def __init__(self) -> None:
        self.helper = SessionAuthenticationHelper()

    def identity(self, request: Request) -> Any:
        return self.helper.authenticated_userid(request)

    def authenticated_userid(self, request: Request) -> Any:
        return self.helper.authenticated_userid(request)

    def permits(self, request: Request, context: Any, permission: str) -> bool:
        return True

    def remember(self, request: Request, userid: Any, **kw: Any) -> list[tuple[str, str]]:
        return self.helper.remember(request, userid, **kw)  # type: ignore[no-any-return]

    def forget(self, request: Request, **kw: Any) -> list[tuple[str, str]]:
        return self.helper.forget(request, **kw)  # type: ignore[no-any-return]


def index(request: Request) -> Response:
    session = request.session
    session["visits"] = session.get("visits", 0) + 1
    user = request.authenticated_userid
    who = f"Logged in as {html.escape(user)}" if user else "Not logged in"
    flashes = "".join(f'<p class="flash">{html.escape(m)}</p>' for m in session.pop_flash())
    page = PAGE.format(
        flashes=flashes, visits=session["visits"], user=who, csrf=get_csrf_token(request)
    )
    return Response(page)


def login(request: Request) -> HTTPSeeOther:
    # Pyramid has checked the CSRF token (require_csrf); a real app checks
    # the password here.
    name = request.POST.get("user", "alice")
    request.session.regenerate()  # a privilege change: never keep the old id
    remember(request, name)
    request.session.flash(f"Welcome, {name}!")
    return HTTPSeeOther(location="/")


def logout(request: Request) -> HTTPSeeOther:
    forget(request)
    request.session.invalidate()  # destroyed; the old id is dead
    request.session.flash("Logged out.")  # kept in a new session
    return HTTPSeeOther(location="/")


def main(global_config: dict[str, str] | None = None, **settings: Any) -> Any:
    """The Pyramid WSGI app; the session options are its ``wsgi_session.*`` settings."""
    with Configurator(settings=settings) as config:
        config.include("wsgi_session.pyramid")
        config.set_security_policy(SessionSecurityPolicy())
        config.set_default_csrf_options(require_csrf=True)
        config.add_route("index", "/")
        config.add_route("login", "/login")
        config.add_route("logout", "/logout")
        config.add_view(index, route_name="index", request_method="GET")
        config.add_view(login, route_name="login", request_method="POST")
        config.add_view(logout, route_name="logout", request_method="POST")
        return config.make_wsgi_app()


app = main(
    None,
    **{
        "wsgi_session.max_lifetime": "1800",
        "wsgi_session.cookie_name": "session_id",
    },
)


if __name__ == "__main__":
    from wsgiref.simple_server import make_server

    with make_server("127.0.0.1", 8000, app) as server:
        print("Pyramid + wsgi_session on http://127.0.0.1:8000/")
        server.serve_forever()
