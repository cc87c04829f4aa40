"""Django in one file with wsgi_session: a visit counter with log in and log out.

    cd examples && python django_app.py             # http://127.0.0.1:8000
    cd examples && gunicorn --threads 8 django_app:app

No database and no django.contrib.sessions: the session comes from the
middleware around Django's WSGI handler, in ``request.META["wsgi_session.session"]``.
"""

from __future__ import annotations

import html
import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from wsgi_session import SessionMiddleware, get_session

if not settings.configured:
    settings.configure(
        DEBUG=False,
        # Django refuses to start without one; nothing here signs with it.
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret"),
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        # A real project keeps its usual middleware here, CSRF included.
        MIDDLEWARE=[],
    )

PAGE = """<!doctype html><title>Django + wsgi_session</title>
<p id="visits">Visits: {visits}</p><p id="user">{user}</p>
<form method="post" action="/login"><input name="user" value="alice"><button>Log in</button></form>
<form method="post" action="/logout"><button>Log out</button></form>
"""


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    session = get_session(request.META)
    session["visits"] = session.get("visits", 0) + 1
    user = session.get("user")
    who = f"Logged in as {html.escape(user)}" if user else "Not logged in"
    return HttpResponse(PAGE.format(visits=session["visits"], user=who))


@require_POST
def login(request: HttpRequest) -> HttpResponse:
    session = get_session(request.META)
    # A real app checks a password here.
    session.regenerate()  # a privilege change: never keep the old id
    session["user"] = request.POST.get("user", "alice")
    return HttpResponse(status=303, headers={"Location": "/"})


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    get_session(request.META).destroy()  # the response deletes the cookie
    return HttpResponse(status=303, headers={"Location": "/"})


urlpatterns = [path("", index), path("login", login), path("logout", logout)]

app = SessionMiddleware(get_wsgi_application(), max_lifetime=1800)


if __name__ == "__main__":
    from wsgiref.simple_server import make_server

    with make_server("127.0.0.1", 8000, app) as server:
        print("Django + wsgi_session on http://127.0.0.1:8000/")
        server.serve_forever()
