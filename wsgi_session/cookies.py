"""The session-id cookie: reading it from a request and writing Set-Cookie.

Everything that never changes (name, attributes) is validated and rendered
once, at construction, so a request pays for one string concatenation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sys
from base64 import urlsafe_b64encode
from collections.abc import Sequence
from typing import Any

from . import options
from .ids import is_valid_id

# RFC 6265 cookie-name is an RFC 2616 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Path and Domain may hold neither ';' nor ',' (header splitting), spaces or controls.
_PATH = re.compile(r"/[!#-+\--:<-~]*")
_DOMAIN = re.compile(
    r"\.?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_SAMESITE = {"lax": "Lax", "strict": "Strict", "none": "None"}
_EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"
_POSSESSIVE_WS = r"\s*+" if sys.version_info >= (3, 11) else r"\s*"
# How many cookies of our name (duplicates from other paths or domains) we try.
MAX_CANDIDATES = 4


class SessionCookie:
    """Validated cookie options and the two Set-Cookie headers they produce.

    ``name=None`` picks the safest name the other options allow:
    ``__Host-session_id`` for a secure cookie without a domain on path "/",
    ``__Secure-session_id`` for another secure cookie, else ``session_id``.
    The prefixes make browsers refuse the cookie from anywhere but this
    site over HTTPS, so a sibling subdomain or a plain-HTTP attacker cannot
    plant (toss) an id. A prefixed name is refused without the attributes
    its prefix requires, since browsers would drop every such cookie.
    ``max_age`` is the default Max-Age of :meth:`set_header` (None: a
    browser-session cookie).

    With ``secret`` (a str or bytes, or a list of them, newest first) the
    cookie carries ``id.signature``: an HMAC-SHA256 of the id under the first
    secret. Forged or tampered values are refused without touching the store;
    any listed secret verifies, so secrets can be rotated.
    """

    __slots__ = (
        "name",
        "_key",
        "_find_ids",
        "_find_values",
        "_set_prefix",
        "_set_suffix",
        "delete_header",
        "_secrets",
        "max_age",
        "rotating",
    )

    def __init__(
        self,
        name: str | None = None,
        *,
        path: str = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = True,
        samesite: str | None = "Lax",
        max_age: int | None = None,
        partitioned: bool = False,
        secret: str | bytes | Sequence[str | bytes] | None = None,
    ) -> None:
        if name is not None and type(name) is not str:
            raise TypeError(f"cookie_name must be a str or None, not {name!r}")
        if name is not None and not _TOKEN.fullmatch(name):
            raise ValueError(f"cookie_name {name!r} must be a non-empty RFC 6265 token")
        if type(path) is not str:
            raise TypeError(f"cookie_path must be a str, not {path!r}")
        if not _PATH.fullmatch(path):
            raise ValueError(
                f"cookie_path {path!r} must start with '/' and hold no ';', ',', "
                "spaces or control characters"
            )
        if domain is not None:
            if type(domain) is not str:
                raise TypeError(f"cookie_domain must be a str or None, not {domain!r}")
            if not _DOMAIN.fullmatch(domain):
                raise ValueError(f"cookie_domain {domain!r} is not a valid host name")
        secure = options.boolean("secure", secure)
        httponly = options.boolean("httponly", httponly)
        partitioned = options.boolean("partitioned", partitioned)
        if samesite is not None:
            if type(samesite) is not str:
                raise TypeError(
                    f"samesite must be 'Lax', 'Strict', 'None' or None, not {samesite!r}"
                )
            canonical = _SAMESITE.get(samesite.lower())
            if canonical is None:
                raise ValueError(f"samesite must be 'Lax', 'Strict' or 'None', not {samesite!r}")
            samesite = canonical
            if samesite == "None" and not secure:
                raise ValueError(
                    "samesite='None' requires secure=True (browsers drop such cookies)"
                )
        if partitioned and not secure:
            raise ValueError("partitioned=True requires secure=True")
        if max_age is not None:
            if type(max_age) is not int:
                raise TypeError(f"cookie_max_age must be an int or None, not {max_age!r}")
            if max_age <= 0:
                raise ValueError(f"cookie_max_age must be positive, not {max_age}")
        self._secrets = _check_secrets(secret)
        #: Whether several secrets are given: then a cookie signed with an
        #: older one is re-signed (see needs_resigning).
        self.rotating = self._secrets is not None and len(self._secrets) > 1
        name = _prefixed_name(name, secure=secure, domain=domain, path=path)

        attrs = f"; Path={path}"
        if domain is not None:
            attrs += f"; Domain={domain}"
        if secure:
            attrs += "; Secure"
        if httponly:
            attrs += "; HttpOnly"
        if samesite is not None:
            attrs += f"; SameSite={samesite}"
        if partitioned:
            attrs += "; Partitioned"
        self.name = name
        self._key = name + "="
        # Applied to ";" + header, so every cookie starts with ";" and the
        # search can jump from one ";" to the next. A cookie is the text
        # between two ";"; it is ours when the part before its first "="
        # is our name once stripped (\s is what str.strip() strips).
        # _find_values gives the raw values; _find_ids only the values that
        # are, once stripped, well-formed ids (the shape ids.is_valid_id checks).
        # Every \s* is followed by something that is not whitespace, so
        # giving back spaces never helps a match: where Python has possessive
        # quantifiers (3.11+) they say so, and a header of 8 KB of spaces
        # costs a scan, not a scan plus a backtrack.
        ws = _POSSESSIVE_WS
        part = rf";{ws}{re.escape(name)}{ws}="
        self._find_ids = re.compile(part + ws + r"([A-Za-z0-9_-]{43})" + ws + r"(?=;|\Z)").findall
        self._find_values = re.compile(part + "([^;]*)").findall
        self._set_prefix = name + "="
        self._set_suffix = attrs
        #: The default Max-Age (None: a browser-session cookie).
        self.max_age = max_age
        self.delete_header = ("Set-Cookie", f"{name}=; Max-Age=0; Expires={_EPOCH}{attrs}")

    def set_header(self, sid: str, max_age: int | None = None) -> tuple[str, str]:
        """The Set-Cookie header that gives the client ``sid`` (for
        ``max_age`` seconds; None: until the browser closes)."""
        if self._secrets is not None:
            sid = sid + "." + _sign(self._secrets[0], sid)
        if max_age is None:
            return ("Set-Cookie", f"{self._set_prefix}{sid}{self._set_suffix}")
        return ("Set-Cookie", f"{self._set_prefix}{sid}; Max-Age={max_age}{self._set_suffix}")

    def ids(self, header: str) -> list[str]:
        """The well-formed (and, with a secret, correctly signed) session ids
        in a Cookie header, in order, at most MAX_CANDIDATES; none if there
        are more (fail closed, see below). Never raises."""
        if self._key not in header:
            return []
        if self._secrets is None and '"' not in header:
            # The usual header: one regex pass (no split, no strip) finds the
            # well-formed ids.
            found: list[str] = self._find_ids(";" + header)
            if len(found) < 2:
                return found
            values = found
        else:
            values = [v.strip() for v in self._find_values(";" + header)]
            if '"' in header:
                # RFC 6265 allows DQUOTEs around a value. Unquoted here, in linear
                # time: webob's parse_cookie is quadratic on some headers (an
                # 8 KB Cookie header took it about a second). Our values hold no
                # ';' or '"', so a quoted value with those in it is not ours anyway.
                values = [v[1:-1] if len(v) > 1 and v[0] == '"' == v[-1] else v for v in values]
        out: list[str] = []
        for value in values:
            sid = self._verify(value)
            if sid is not None and sid not in out:
                if len(out) == MAX_CANDIDATES:
                    # More than we look up: ids tossed in front (dead ones,
                    # then the attacker's live one) could push the user's own
                    # out of sight and so choose the account. Fail closed.
                    return []
                out.append(sid)
        return out

    def needs_resigning(self, header: str, sid: str) -> bool:
        """Whether the client's cookie for ``sid`` was signed with an older
        secret, so the response should re-sign it with the newest one (then
        the old secret can be retired without logging anybody out)."""
        secrets = self._secrets
        if secrets is None or len(secrets) == 1:
            return False
        return f"{sid}.{_sign(secrets[0], sid)}" not in header

    def _verify(self, value: str) -> str | None:
        secrets = self._secrets
        if secrets is None:
            return value if is_valid_id(value) else None
        sid, dot, signature = value.partition(".")
        # An HMAC-SHA256 in unpadded base64 has an id's shape; checking it
        # first also keeps non-ASCII text away from compare_digest (TypeError).
        if not dot or not is_valid_id(sid) or not is_valid_id(signature):
            return None
        for secret in secrets:
            if hmac.compare_digest(_sign(secret, sid), signature):
                return sid
        return None


def _prefixed_name(name: str | None, *, secure: bool, domain: str | None, path: str) -> str:
    """``name``, or the default one; a cookie-name prefix (RFC 6265bis, which
    browsers match case-insensitively) checked against the other options."""
    host_only = secure and domain is None and path == "/"
    if name is None:
        if host_only:
            return "__Host-session_id"
        return "__Secure-session_id" if secure else "session_id"
    folded = name.lower()
    if folded.startswith("__host-") and not host_only:
        raise ValueError(
            f"cookie_name {name!r}: browsers drop a __Host- cookie unless secure=True, "
            f"cookie_domain=None and cookie_path='/' (got secure={secure}, "
            f"cookie_domain={domain!r}, cookie_path={path!r})"
        )
    if folded.startswith("__secure-") and not secure:
        raise ValueError(
            f"cookie_name {name!r}: browsers drop a __Secure- cookie unless secure=True"
        )
    return name


def _sign(secret: bytes, sid: str) -> str:
    digest = hmac.digest(secret, sid.encode("ascii"), hashlib.sha256)
    return urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _check_secrets(secret: Any) -> list[bytes] | None:
    if secret is None:
        return None
    items = [secret] if isinstance(secret, (str, bytes)) else secret
    if not isinstance(items, (list, tuple)) or not items:
        raise TypeError("secret must be a str or bytes, or a non-empty list of them")
    out = []
    for item in items:
        if isinstance(item, str):
            item = item.encode("utf-8")
        if not isinstance(item, bytes):
            raise TypeError("secret must be a str or bytes, or a non-empty list of them")
        if len(item) < 16:
            raise ValueError("secret must be at least 16 bytes long; use secrets.token_urlsafe(32)")
        out.append(item)
    return out
