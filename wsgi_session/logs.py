"""The library's logger, which never lets a session id through.

Every record the package emits goes to the ``wsgi_session`` logger, and a
filter on that logger rewrites each record before any handler sees it: the
message (with its arguments), the traceback and the stack text lose every
run of characters shaped like a session id or a storage key. A store's
error message or an app's exception that quotes an id is thus safe to log.
"""

from __future__ import annotations

import logging
import re

#: What replaces an id in a log record.
REDACTED = "<id>"

# Ids and base64 storage keys are 43 URL-safe characters; a signed cookie
# value is two of them around a dot. A run of 43 or more of those characters
# (so also an id inside a longer key, as in "prefix_<id>") is redacted when it
# has both an upper- and a lower-case letter: a random id lacks one with
# probability about 2e-10, while snake_case names in tracebacks have no upper
# case and stay readable. Hashed storage keys are 32 hex digits (runs of 32
# or more are redacted: a whole SHA-256 too).
_ID = re.compile(
    r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*[A-Z])(?=[A-Za-z0-9_-]*[a-z])[A-Za-z0-9_-]{43,}"
    r"(?![A-Za-z0-9_-])|(?<![0-9A-Fa-f])[0-9A-Fa-f]{32,}(?![0-9A-Fa-f])"
)


def redact(text: str) -> str:
    """``text`` with everything shaped like an id or storage key replaced."""
    return _ID.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """Rewrites a record so that no id reaches a handler; never drops one."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        # Judged on the formatted message: an argument (an exception, say)
        # can quote an id that neither the format string nor the tuple shows.
        # A clean record keeps its arguments for handlers that read them.
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg = clean
            record.args = None
        if record.exc_info:
            # Handlers use exc_text when it is set; exc_info goes, so that no
            # handler (or error tracker) formats the raw exception itself.
            record.exc_text = redact(self._formatter.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


log = logging.getLogger("wsgi_session")
if not any(isinstance(f, RedactingFilter) for f in log.filters):  # once, even if reloaded
    log.addFilter(RedactingFilter())
