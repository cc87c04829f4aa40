"""The framework-level apps of ``bench/run.py`` (section 7): one tiny view per
framework, behind our adapter or a peer's session, or no session at all.

Each builder returns ``(wsgi_app, cookie_name)``. The view reads ``n`` from
the session and writes ``n + 1``; the bare app's view never touches a
session. A builder is called once per process (Django's settings can be
configured only once), and needs its framework and peer installed:
``pip install -e '.[bench]'``. ``redis_url`` is a private server's
(run.py starts one as bench/redis_bench.py does); ``directory`` is a
temporary directory for files (SQLite databases, Flask-Session's files).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any

SECRET = "bench-secret-" + "x" * 32
LIFETIME = 3600

#: framework -> implementations, "bare" first. "wsgi_session/<store>" is our
#: adapter on that provider; the others are the peers.
IMPLS: dict[str, list[str]] = {
    "flask": [
        "bare",
        "wsgi_session",
        "wsgi_session/sqlite",
        "wsgi_session/redis",
        "flask-session/simplecache",
        "flask-session/filesystem",
        "flask-session/redis",
        "signed-cookie",
    ],
    "django": ["bare", "wsgi_session", "wsgi_session/sqlite", "cache/locmem", "db/sqlite"],
    "pyramid": [
        "bare",
        "wsgi_session",
        "wsgi_session/redis",
        "pyramid_session_redis",
        "signed-cookie",
    ],
}

#: (framework, ours, peer, store class): the goal is ours ahead of the peer.
#: A signed cookie keeps no server-side state: reported, but no goal.
RACES: list[tuple[str, str, str, str]] = [
    ("flask", "wsgi_session", "flask-session/simplecache", "in process memory"),
    ("flask", "wsgi_session/sqlite", "flask-session/filesystem", "local disk"),
    ("flask", "wsgi_session/redis", "flask-session/redis", "Redis"),
    ("django", "wsgi_session", "cache/locmem", "in process memory"),
    ("django", "wsgi_session/sqlite", "db/sqlite", "SQLite"),
    ("pyramid", "wsgi_session/redis", "pyramid_session_redis", "Redis"),
]
CLIENT_SIDE: list[tuple[str, str, str]] = [
    ("flask", "wsgi_session", "signed-cookie"),
    ("pyramid", "wsgi_session", "signed-cookie"),
]

_NEEDS = {
    "flask": ["flask"],
    "django": ["django"],
    "pyramid": ["pyramid"],
    "flask-session": ["flask_session", "cachelib"],
    "pyramid_session_redis": ["pyramid_session_redis"],
}


def missing(framework: str, impl: str, redis_url: str | None) -> str | None:
    """Why ``impl`` cannot run here (a module or Redis is missing), or None."""
    modules = list(_NEEDS[framework])
    modules += _NEEDS.get(impl.split("/")[0], [])
    if "redis" in impl:
        modules.append("redis")
        if redis_url is None:
            return "no redis-server"
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    return None


def _ours(store: str, directory: str, redis_url: str | None) -> tuple[str, dict[str, Any]]:
    if store == "sqlite":
        return "sqlite", {"path": os.path.join(directory, "sessions.db")}
    if store == "redis":
        return "redis", {"url": redis_url}
    return "memory", {}


def build(framework: str, impl: str, directory: str, redis_url: str | None) -> tuple[Any, str]:
    builder: Callable[[str, str, str | None], tuple[Any, str]] = {
        "flask": flask_app,
        "django": django_app,
        "pyramid": pyramid_app,
    }[framework]
    return builder(impl, directory, redis_url)


# -- Flask -----------------------------------------------------------------------


def flask_app(impl: str, directory: str, redis_url: str | None) -> tuple[Any, str]:
    from flask import Flask, session

    app = Flask("bench")
    cookie = app.config["SESSION_COOKIE_NAME"]

    if impl == "bare":
        # No SECRET_KEY: Flask's own cookie session then does nothing (with
        # one, it would check the signature of our cookie on every request).

        @app.route("/")
        def untouched() -> str:
            return "ok"

        return app, cookie

    app.config["SECRET_KEY"] = SECRET

    @app.route("/")
    def counter() -> str:
        session["n"] = session.get("n", 0) + 1
        return "ok"

    if impl.startswith("wsgi_session"):
        from wsgi_session.flask import init_app

        provider, options = _ours(impl.partition("/")[2], directory, redis_url)
        init_app(app, provider=provider, provider_options=options, max_lifetime=LIFETIME)
    elif impl.startswith("flask-session/"):
        from flask_session import Session

        store = impl.partition("/")[2]
        app.config["PERMANENT_SESSION_LIFETIME"] = LIFETIME
        if store == "redis":
            import redis

            app.config["SESSION_TYPE"] = "redis"
            app.config["SESSION_REDIS"] = redis.Redis.from_url(redis_url or "")
        else:
            from cachelib import FileSystemCache, SimpleCache

            app.config["SESSION_TYPE"] = "cachelib"
            app.config["SESSION_CACHELIB"] = (
                SimpleCache(threshold=1_000_000, default_timeout=LIFETIME)
                if store == "simplecache"
                else FileSystemCache(
                    os.path.join(directory, "flask-session"),
                    threshold=1_000_000,
                    default_timeout=LIFETIME,
                )
            )
        Session(app)
    elif impl != "signed-cookie":  # Flask's default session is the signed cookie
        raise ValueError(impl)
    return app, cookie


# -- Django ----------------------------------------------------------------------

urlpatterns: list[Any] = []  # ROOT_URLCONF is this module; filled by django_app


def django_app(impl: str, directory: str, redis_url: str | None) -> tuple[Any, str]:
    import django
    from django.conf import settings

    middleware = [] if impl == "bare" else ["django.contrib.sessions.middleware.SessionMiddleware"]
    config: dict[str, Any] = {
        "DEBUG": False,
        "SECRET_KEY": SECRET,
        "ALLOWED_HOSTS": ["*"],
        "ROOT_URLCONF": __name__,
        "MIDDLEWARE": middleware,
        "INSTALLED_APPS": ["django.contrib.sessions"],
        "SESSION_COOKIE_AGE": LIFETIME,
        "USE_TZ": True,
        "DATABASES": {},
        "LOGGING_CONFIG": None,
    }
    if impl.startswith("wsgi_session"):
        provider, options = _ours(impl.partition("/")[2], directory, redis_url)
        config["SESSION_ENGINE"] = "wsgi_session.django"
        config["WSGI_SESSION"] = {"provider": provider, "provider_options": options}
    elif impl == "cache/locmem":
        config["SESSION_ENGINE"] = "django.contrib.sessions.backends.cache"
        config["CACHES"] = {
            "default": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "OPTIONS": {"MAX_ENTRIES": 1_000_000},
            }
        }
    elif impl == "db/sqlite":
        config["SESSION_ENGINE"] = "django.contrib.sessions.backends.db"
        config["DATABASES"] = {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(directory, "django.sqlite3"),
            }
        }
    elif impl != "bare":
        raise ValueError(impl)
    settings.configure(**config)
    django.setup()
    if impl == "db/sqlite":
        from django.core.management import call_command

        call_command("migrate", "sessions", verbosity=0)

    from django.core.wsgi import get_wsgi_application
    from django.http import HttpResponse
    from django.urls import path

    def counter(request: Any) -> Any:
        request.session["n"] = request.session.get("n", 0) + 1
        return HttpResponse("ok")

    def untouched(request: Any) -> Any:
        return HttpResponse("ok")

    urlpatterns[:] = [path("", untouched if impl == "bare" else counter)]
    return get_wsgi_application(), settings.SESSION_COOKIE_NAME


# -- Pyramid ---------------------------------------------------------------------


def pyramid_app(impl: str, directory: str, redis_url: str | None) -> tuple[Any, str]:
    from pyramid.config import Configurator
    from pyramid.response import Response

    factory: Any = None
    if impl.startswith("wsgi_session"):
        from wsgi_session.pyramid import session_factory

        provider, options = _ours(impl.partition("/")[2], directory, redis_url)
        factory = session_factory(
            provider=provider, provider_options=options, max_lifetime=LIFETIME
        )
    elif impl == "pyramid_session_redis":
        from pyramid_session_redis import RedisSessionFactory

        factory = RedisSessionFactory(SECRET, timeout=LIFETIME, redis_url=redis_url)
    elif impl == "signed-cookie":
        from pyramid.session import SignedCookieSessionFactory

        factory = SignedCookieSessionFactory(SECRET, timeout=LIFETIME)
    elif impl != "bare":
        raise ValueError(impl)

    def counter(request: Any) -> Any:
        request.session["n"] = request.session.get("n", 0) + 1
        return Response("ok")

    def untouched(request: Any) -> Any:
        return Response("ok")

    config = Configurator(session_factory=factory)
    config.add_route("home", "/")
    config.add_view(untouched if impl == "bare" else counter, route_name="home")
    return config.make_wsgi_app(), "session"
