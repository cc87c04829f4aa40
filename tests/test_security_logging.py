"""Logging under ``wsgi_session``: sweeps, store failures, and never an id or a value."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from security_support import FlakyProvider, Response, call, environ_for

from wsgi_session import Manager, ProviderError, SessionError, SessionMiddleware, get_session
from wsgi_session.ids import new_id
from wsgi_session.providers.memory import MemoryProvider

LOGGER = "wsgi_session"


def wait_for(condition: Callable[[], bool], seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.005)
    return True


def gc_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and "GC removed" in r.getMessage()]


def test_gc_sweeps_are_logged_at_debug_with_count_and_duration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = [1000.0]
    manager = Manager(MemoryProvider(), max_lifetime=60, gc_interval=0.005, clock=lambda: clock[0])
    for i in range(3):
        manager.create({"n": i})
    clock[0] += 61
    manager.start_gc()
    try:
        assert wait_for(lambda: any(r.args and r.args[0] == 3 for r in gc_records(caplog)))
    finally:
        manager.close()
    record = next(r for r in gc_records(caplog) if r.args and r.args[0] == 3)
    assert record.levelno == logging.DEBUG
    count, duration_ms = record.args  # type: ignore[misc]
    assert isinstance(duration_ms, float) and duration_ms >= 0
    assert record.getMessage().startswith("session GC removed 3 sessions in ")
    assert record.getMessage().endswith(" ms")


def counter(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = get_session(environ)
    session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [])
    return [str(session["n"]).encode()]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= 30]


def test_failed_load_is_logged_and_raised(caplog: pytest.LogCaptureFixture) -> None:
    provider = FlakyProvider()
    with SessionMiddleware(counter, provider=provider, gc_interval=None) as mw:
        cookie = call(mw, environ_for("/")).cookie_value()
        provider.down = True
        with pytest.raises(ProviderError):
            call(mw, environ_for("/", f"session_id={cookie}"))
    assert warnings_of(caplog) == ["FlakyProvider failed to load a session: ProviderError"]
    assert caplog.records[-1].levelno == logging.WARNING


def test_failed_save_at_response_start_is_logged_and_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = FlakyProvider()

    def breaks_the_store(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        session["n"] = session.get("n", 0) + 1
        provider.down = True  # fails between the read and the save
        start_response("200 OK", [])
        return [b""]

    mw = SessionMiddleware(breaks_the_store, provider=provider, gc_interval=None)
    with mw, pytest.raises(ProviderError):
        call(mw, environ_for("/"))
    assert any("failed to create a session" in m for m in warnings_of(caplog))


def test_failed_save_after_an_app_error_is_logged_at_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = FlakyProvider()

    def fails(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        session["n"] = 5
        provider.down = True
        raise RuntimeError("the app failed")

    with SessionMiddleware(counter, provider=provider, gc_interval=None) as mw:
        cookie = call(mw, environ_for("/")).cookie_value()
    mw = SessionMiddleware(fails, provider=provider, gc_interval=None)
    with mw, pytest.raises(RuntimeError, match="the app failed"):  # the app's error, not ours
        call(mw, environ_for("/", f"session_id={cookie}"))
    errors = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "could not save the session after an app error"
    ]
    assert any("failed to save a session" in m for m in warnings_of(caplog))


def test_ids_in_a_store_error_message_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    """A careless store may put the key in its error; the log never shows it."""
    provider = FlakyProvider(message="no reply for key session:{sid}")
    with SessionMiddleware(counter, provider=provider, gc_interval=None) as mw:
        cookie = call(mw, environ_for("/")).cookie_value()
        assert cookie
        provider.down = True
        with pytest.raises(ProviderError):
            call(mw, environ_for("/", f"session_id={cookie}"))
    (message,) = warnings_of(caplog)
    assert message == "FlakyProvider failed to load a session: ProviderError"
    assert cookie not in formatted(caplog) and "no reply" not in formatted(caplog)


def test_https_without_secure_is_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    with SessionMiddleware(counter, gc_interval=None) as mw:
        call(mw, environ_for("/", **{"wsgi.url_scheme": "https"}))
        call(mw, environ_for("/", **{"wsgi.url_scheme": "https"}))
    assert [m for m in warnings_of(caplog) if "secure=False" in m] == [
        "this app is served over HTTPS but secure=False, so browsers also "
        "send the session cookie over plain HTTP. Set secure=True."
    ]
    with SessionMiddleware(counter, gc_interval=None, secure=True) as mw:
        caplog.clear()
        call(mw, environ_for("/", **{"wsgi.url_scheme": "https"}))
    assert warnings_of(caplog) == []


def test_no_id_and_no_value_is_ever_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Every record ``wsgi_session`` emits over a whole life, errors included,
    formatted with its traceback, holds no session id and no session value."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    # Made at run time (no source line shows it), and not shaped like an id,
    # which the log filter would hide anyway.
    marker = "value-" + secrets.token_hex(8)
    values = {"secret": marker, "nested": {"card": marker + "-card"}, "list": [marker + "-l"]}
    clock = [1000.0]
    provider = FlakyProvider(message="store unreachable")
    seen: set[str] = set()

    def lifecycle(environ: dict[str, Any], start_response: Any) -> Any:
        session = get_session(environ)
        action = environ["PATH_INFO"]
        if action == "/write":
            session.update(values)
        elif action == "/regenerate":
            session.regenerate()
        elif action == "/destroy":
            session.destroy()
        elif action == "/fail":
            session["more"] = values["secret"]
            provider.down = True
            raise RuntimeError("the app failed")
        elif action == "/late":

            def body() -> Any:
                yield b"x"
                session.update(values)  # after the headers: refused, not stored

            start_response("200 OK", [])
            return body()
        seen.add(session.sid or "")
        start_response("200 OK", [])
        return [repr(session).encode()]

    mw = SessionMiddleware(
        lifecycle,
        provider=provider,
        max_lifetime=60,
        absolute_lifetime=600,
        gc_interval=0.005,
        clock=lambda: clock[0],
    )
    issued: list[str] = []

    def send(path: str, cookie: str | None, **extra: Any) -> Response:
        res = call(mw, environ_for(path, None if cookie is None else f"session_id={cookie}",
                                   **extra))
        value = res.cookie_value()
        if value:
            issued.append(value)
        return res

    try:
        # First request: multi-process server over HTTPS without secure=True.
        send("/write", None, **{"wsgi.multiprocess": True, "wsgi.url_scheme": "https"})
        sid = issued[-1]
        send("/read", sid)
        send("/regenerate", sid)
        sid = issued[-1]
        with pytest.raises(SessionError):
            send("/late", None)
        send("/write", None)  # a second session, left to expire
        clock[0] += 30
        send("/read", sid)  # sid stays live; the other one expires at +60
        clock[0] += 31
        assert wait_for(lambda: any(r.args and r.args[0] >= 1 for r in gc_records(caplog)))
        with pytest.raises(RuntimeError):
            send("/fail", sid)
        with pytest.raises(ProviderError):
            send("/read", sid)
        provider.down = False
        send("/destroy", sid)
        send("/read", new_id())  # a forged id
    finally:
        mw.close()

    records = [r for r in caplog.records if r.name.startswith(LOGGER)]
    levels = {r.levelname for r in records}
    assert {"DEBUG", "WARNING", "ERROR"} <= levels  # the whole range was exercised
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    text = "\n".join(formatter.format(r) for r in records)
    secrets_ = set(issued) | (seen - {""})
    assert len(secrets_) >= 3
    for secret in secrets_:
        assert secret not in text
    assert marker not in text  # nor any value (they all contain the marker)


def formatted(caplog: pytest.LogCaptureFixture) -> str:
    """Every wsgi_session record as a handler would write it, tracebacks included."""
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    return "\n".join(formatter.format(r) for r in caplog.records if r.name.startswith(LOGGER))


def test_the_error_after_an_app_error_hides_ids_in_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The store quotes the id in its error, the app in its own: the ERROR
    record and its traceback (with the chained causes) show neither."""
    provider = FlakyProvider(message="no reply for key session:{sid}")

    def fails(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        session["n"] = 5
        provider.down = True
        raise RuntimeError(f"the app failed for session {session.sid}")

    with SessionMiddleware(counter, provider=provider, gc_interval=None) as mw:
        cookie = call(mw, environ_for("/")).cookie_value()
    assert cookie
    mw = SessionMiddleware(fails, provider=provider, gc_interval=None)
    with mw, pytest.raises(RuntimeError, match="the app failed"):
        call(mw, environ_for("/", f"session_id={cookie}"))
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.exc_info is None and error.exc_text  # the text stays, redacted
    text = formatted(caplog)
    assert "Traceback" in text and "no reply for key session:<id>" in text
    assert "the app failed for session <id>" in text
    assert cookie not in text


def test_the_gc_threads_error_record_hides_ids(caplog: pytest.LogCaptureFixture) -> None:
    sid = new_id()
    failed = threading.Event()

    class BrokenSweep(MemoryProvider):
        def gc(self, *args: Any) -> int:
            failed.set()
            raise ProviderError(f"cannot expire {sid} or {sid}.{new_id()}")

    manager = Manager(BrokenSweep(), gc_interval=0.005)
    manager.start_gc()
    try:
        assert failed.wait(2)
        assert wait_for(lambda: any(r.levelno == logging.ERROR for r in caplog.records))
    finally:
        manager.close()
    text = formatted(caplog)
    assert "ProviderError: cannot expire <id> or <id>.<id>" in text
    assert sid not in text


def test_redaction_keeps_what_is_not_an_id() -> None:
    from wsgi_session.logs import redact

    sid = new_id()
    assert redact(f"id {sid}, key prefix:{sid}, signed {sid}.{new_id()}") == (
        "id <id>, key prefix:<id>, signed <id>.<id>"
    )
    assert redact(f"joined_{sid}_x and hex {'ab12' * 16}") == "<id> and hex <id>"
    assert "<id>" not in redact(sid[:42])  # too short to be an id
    names = "test_a_rather_long_function_name_from_a_test_suite line 42 in ValueError"
    assert redact(names) == names  # snake_case names in tracebacks stay readable


def test_every_logger_of_the_package_redacts() -> None:
    """A module that logs to a logger of its own (``wsgi_session.x``) would
    bypass the filter: every one in use must carry it."""
    import wsgi_session.logs  # noqa: F401 - installs the filter
    from wsgi_session.logs import RedactingFilter

    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == LOGGER]
    assert LOGGER in names
    for name in names:
        logger = logging.getLogger(name)
        assert any(isinstance(f, RedactingFilter) for f in logger.filters), name


def test_messages_read_well_under_a_name_prefixed_format(
    make_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The logger's name is the prefix (``%(name)s: %(message)s``), so no
    message repeats it ("wsgi_session: wsgi_session: ...")."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        get_session(environ)["n"] = 1
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("app failure")
        start_response("200 OK", [])
        return [b""]

    _, client = make_app(app=app)
    with caplog.at_level(logging.DEBUG, logger="wsgi_session"):
        client.get("/", extra_environ={"wsgi.url_scheme": "https", "wsgi.multiprocess": True})
        with pytest.raises(RuntimeError):
            client.get("/boom")
    assert caplog.records, "the warnings above were logged"
    for record in caplog.records:
        assert not record.getMessage().lower().startswith("wsgi_session"), record.getMessage()
