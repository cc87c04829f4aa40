"""Django in one file with wsgi_session as the session engine.

    cd examples && python django_app.py             # http://127.0.0.1:8000
    cd examples && gunicorn --threads 8 django_app:app

A usual Django site (auth, admin, messages, CSRF) whose sessions live in
wsgi_session: the only session setting is ``SESSION_ENGINE`` (plus
``WSGI_SESSION`` to choose the store). Log in as alice / wonderland, also
at /admin/. The database is a throwaway SQLite file made at start-up.
"""

from __future__ import annotations

import atexit
import html
import os
import shutil
import tempfile

import django
from django.conf import settings

DEMO_USER, DEMO_PASSWORD = "alice", "wonderland"

if not settings.configured:
    database = tempfile.mkdtemp(prefix="django-example-")
    atexit.register(shutil.rmtree, database, ignore_errors=True)
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret"),
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
        ],
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(database, "db.sqlite3"),
            }
        },
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
        # The sessions: wsgi_session keeps them; Django's middleware sends the cookie.
        SESSION_ENGINE="wsgi_session.django",
        WSGI_SESSION={"provider": "memory", "max_lifetime": 1800},
        SESSION_COOKIE_NAME="session_id",
        SESSION_EXPIRE_AT_BROWSER_CLOSE=True,
        # Django's CSRF token and flash messages live in the session too.
        CSRF_USE_SESSIONS=True,
        MESSAGE_STORAGE="django.contrib.messages.storage.session.SessionStorage",
    )
    django.setup()

from django.contrib import admin, messages  # noqa: E402 - needs the settings above
from django.contrib.auth import authenticate, get_user_model, login, logout  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect  # noqa: E402
from django.middleware.csrf import get_token  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.http import require_GET, require_POST  # noqa: E402

PAGE = """<!doctype html><title>Django + wsgi_session</title>
{flashes}<p id="visits">Visits: {visits}</p><p id="user">{user}</p>
<form method="post" action="/login"><input type="hidden" name="csrfmiddlewaretoken" value="{csrf}">
<input name="user" value="alice"><input name="password" type="password" value="wonderland">
<button id="login">Log in</button></form>
<form method="post" action="/logout"><input type="hidden" name="csrfmiddlewaretoken" value="{csrf}">
<button id="logout">Log out</button></form>
"""


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    session = request.session
    session["visits"] = session.get("visits", 0) + 1
    user = request.user
    name = user.get_username() if user.is_authenticated else None
    who = f"Logged in as {html.escape(name)}" if name else "Not logged in"
    flashes = "".join(
        f'<p class="flash">{html.escape(str(m))}</p>' for m in messages.get_messages(request)
    )
    page = PAGE.format(
        flashes=flashes, visits=session["visits"], user=who, csrf=html.escape(get_token(request))
    )
    return HttpResponse(page)


@require_POST
def login_view(request: HttpRequest) -> HttpResponse:
    user = authenticate(
        request,
        username=request.POST.get("user", ""),
        password=request.POST.get("password", ""),
    )
    if user is None:
        messages.error(request, "Wrong user name or password.")
    else:
        login(request, user)  # a new session id (cycle_key), the data kept
        messages.success(request, f"Welcome, {user.get_username()}!")
    return HttpResponseRedirect("/", status=303)


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)  # the session is destroyed (flush)
    messages.info(request, "Logged out.")
    return HttpResponseRedirect("/", status=303)


urlpatterns = [
    path("", index),
    path("login", login_view),
    path("logout", logout_view),
    path("admin/", admin.site.urls),
]


def _prepare_database() -> None:
    call_command("migrate", verbosity=0, interactive=False)
    users = get_user_model()
    if not users.objects.filter(username=DEMO_USER).exists():
        users.objects.create_superuser(DEMO_USER, "alice@example.com", DEMO_PASSWORD)


_prepare_database()
app = get_wsgi_application()


if __name__ == "__main__":
    from wsgiref.simple_server import make_server

    with make_server("127.0.0.1", 8000, app) as server:
        print("Django + wsgi_session on http://127.0.0.1:8000/ (alice / wonderland)")
        server.serve_forever()
