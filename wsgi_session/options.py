"""Option checks, in one place: each raises TypeError or ValueError naming the option.

Every constructor in the package (middleware, manager, cookie, providers,
adapters) checks its options with these at construction, so a bad
configuration fails at start-up with the option's name in the message.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


#: The longest duration any option takes, about 31 years. Longer ones
#: ("never" as ``sys.maxsize``) overflow a thread's wait, a socket timeout,
#: and Redis's PEXPIRE (which then refuses every session).
MAX_SECONDS = 10**9


def seconds(option: str, value: object) -> float:
    """``value`` as float seconds: a positive int or float (not bool) of at
    most :data:`MAX_SECONDS`."""
    if type(value) not in (int, float):
        raise TypeError(f"{option} must be a number of seconds, not {value!r:.60}")
    try:
        result = float(value)  # type: ignore[arg-type]
    except OverflowError:  # an int too large for a float
        raise ValueError(
            f"{option} must be a finite number of seconds, not {value!r:.60}"
        ) from None
    if not 0 < result <= MAX_SECONDS:  # also refuses NaN and infinities
        raise ValueError(
            f"{option} must be a positive number of seconds, at most {MAX_SECONDS:,} "
            f"(about 31 years), not {value!r:.60}"
        )
    return result


def optional_seconds(option: str, value: object) -> float | None:
    """:func:`seconds`, or None for None."""
    return None if value is None else seconds(option, value)


def boolean(option: str, value: object) -> bool:
    """``value`` if it is True or False (not merely truthy)."""
    if type(value) is not bool:
        raise TypeError(f"{option} must be True or False, not {value!r:.60}")
    return value


def positive_int(option: str, value: object) -> int:
    """``value`` if it is an int (not bool) of at least 1."""
    if type(value) is not int:
        raise TypeError(f"{option} must be an int, not {value!r:.60}")
    if value < 1:
        raise ValueError(f"{option} must be positive, not {value!r:.60}")
    return value


def optional_positive_int(option: str, value: object) -> int | None:
    """:func:`positive_int`, or None for None."""
    return None if value is None else positive_int(option, value)


def text(option: str, value: object, *, empty: bool = False) -> str:
    """A str (non-empty unless ``empty``)."""
    if type(value) is not str:
        raise TypeError(f"{option} must be a str, not {value!r:.60}")
    if not value and not empty:
        raise ValueError(f"{option} must not be empty")
    return value


def one_of(option: str, value: Any, allowed: tuple[T, ...]) -> T:
    """``value`` if it is one of ``allowed``."""
    if value not in allowed:
        choices = ", ".join(map(repr, allowed))
        raise ValueError(f"{option} must be one of {choices}, not {value!r:.60}")
    return value  # type: ignore[no-any-return]


def instance(option: str, value: object, cls: type[T]) -> T:
    """``value`` if it is an instance of ``cls``."""
    if not isinstance(value, cls):
        raise TypeError(f"{option} must be a {cls.__name__}, not {type(value).__name__}")
    return value
