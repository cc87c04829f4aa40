"""PasteDeploy: the middleware as a filter configured from an .ini file.

::

    [filter:session]
    use = egg:wsgi_session
    max_lifetime = 1800
    secure = true
    secret = new-secret-at-least-16-bytes
             old-secret-still-accepted
    provider = redis
    provider_options = {"url": "redis://127.0.0.1:6379/0"}

    [pipeline:main]
    pipeline = session myapp

Each option is a string converted by the type of the keyword it feeds:

* booleans (``secure``, ``httponly``, ``partitioned``, ``hash_ids``):
  true/false, yes/no, on/off, 1/0, in any case;
* numbers (``max_lifetime``, ``absolute_lifetime``, ``gc_interval``: float;
  ``cookie_max_age``, ``max_session_bytes``: int);
* ``none`` or an empty value means None where None is allowed
  (``absolute_lifetime``, ``gc_interval``, ``cookie_max_age``,
  ``max_session_bytes``, ``cookie_name``, ``cookie_domain``, ``user_key``,
  ``secret``, ``samesite``). For ``samesite`` only the
  empty value is None: ``samesite = None`` means the ``SameSite=None``
  attribute;
* ``secret``: one secret, or several separated by whitespace or newlines,
  newest first;
* ``provider_options``: a JSON object, passed as keyword arguments to the
  provider, so its values keep their JSON types.

A value that cannot be converted, or an unknown option, raises ValueError
naming the option; the middleware then checks every value as usual.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .middleware import SessionMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"", "none"}


def _bool(option: str, value: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{option} must be true or false (yes/no, on/off, 1/0), not {value!r}")


def _float(option: str, value: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise ValueError(f"{option} must be a number of seconds, not {value!r}") from None


def _int(option: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError(f"{option} must be a whole number, not {value!r}") from None


def _str(option: str, value: str) -> str:
    return value.strip()


def _optional(convert: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    def optional(option: str, value: str) -> Any:
        return None if value.strip().lower() in _NONE else convert(option, value)

    return optional


def _samesite(option: str, value: str) -> str | None:
    return value.strip() or None  # "None" is the attribute value, not Python's None


def _secret(option: str, value: str) -> str | list[str] | None:
    secrets = value.split()
    if not secrets or (len(secrets) == 1 and secrets[0].lower() == "none"):
        return None
    return secrets[0] if len(secrets) == 1 else secrets


def _provider_options(option: str, value: str) -> dict[str, Any] | None:
    if value.strip().lower() in _NONE:
        return None
    try:
        options = json.loads(value)
    except ValueError as exc:
        raise ValueError(f"{option} must be a JSON object: {exc}") from None
    if not isinstance(options, dict):
        raise ValueError(f"{option} must be a JSON object, not {value.strip()!r}")
    return options


# Every keyword SessionMiddleware takes from configuration (not ``clock``).
CONVERTERS: dict[str, Callable[[str, str], Any]] = {
    "provider": _str,
    "provider_options": _provider_options,
    "cookie_name": _optional(_str),
    "max_lifetime": _float,
    "absolute_lifetime": _optional(_float),
    "gc_interval": _optional(_float),
    "cookie_path": _str,
    "cookie_domain": _optional(_str),
    "secure": _bool,
    "httponly": _bool,
    "samesite": _samesite,
    "cookie_max_age": _optional(_int),
    "partitioned": _bool,
    "secret": _secret,
    "environ_key": _str,
    "hash_ids": _bool,
    "user_key": _optional(_str),
    "max_session_bytes": _optional(_int),
}


def parse_options(conf: Mapping[str, Any]) -> dict[str, Any]:
    """SessionMiddleware keyword arguments from .ini strings.

    Values that are not strings (a caller passing Python values) are kept as
    they are. Unknown options raise ValueError listing the known ones.
    """
    options: dict[str, Any] = {}
    for option, value in conf.items():
        convert = CONVERTERS.get(option)
        if convert is None:
            raise ValueError(
                f"unknown wsgi_session option {option!r}; known options: "
                f"{', '.join(sorted(CONVERTERS))}"
            )
        options[option] = convert(option, value) if isinstance(value, str) else value
    return options


def filter_app_factory(
    app: WSGIApplication, global_conf: Mapping[str, Any], **local_conf: Any
) -> SessionMiddleware:
    """The ``paste.filter_app_factory`` entry point: ``app`` wrapped in a session."""
    return SessionMiddleware(app, **parse_options(local_conf))


def filter_factory(
    global_conf: Mapping[str, Any], **local_conf: Any
) -> Callable[[WSGIApplication], SessionMiddleware]:
    """The ``paste.filter_factory`` entry point: options checked now, applied per app."""
    options = parse_options(local_conf)

    def session_filter(app: WSGIApplication) -> SessionMiddleware:
        return SessionMiddleware(app, **options)

    return session_filter
