"""Calendar: today's date, in the paper's words: "Today is Monday, January 30, 2023."

The clock and the timezone are injectable (``make_calendar(clock=..., tz=...)``) so that tests and
reproducible runs see a fixed date. The entry-point tool ``calendar`` uses the system clock and
the timezone named in ``TOOLRUN_TZ`` (an IANA name such as "Europe/Paris"), else local time.

``with as_of(day):`` makes every Calendar answer with ``day`` in that context: the annotator gives
a text its own date (the paper's Calendar returned each document's date, not the annotation's),
and a date question set asks each question on the day its answers are for.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator
from datetime import date, datetime, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import toolrun

__all__ = ["TZ_ENV", "as_of", "calendar", "format_date", "make_calendar"]

TZ_ENV = "TOOLRUN_TZ"
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip
_DESCRIPTION = "Today's date, e.g. 'Today is Monday, January 30, 2023.' Takes no input."
_AS_OF: contextvars.ContextVar[date | None] = contextvars.ContextVar("toolrun_as_of", default=None)


@contextlib.contextmanager
def as_of(day: date | None) -> Iterator[None]:
    """Every Calendar answers with ``day`` inside this block (None: the clock again).

    A context variable, so it holds in tool threads started from the block (toolrun copies the
    context into them) and never leaks into other threads or tasks."""
    if day is not None and not isinstance(day, date):
        raise toolrun.ToolConfigError(f"as_of takes a datetime.date, got {day!r}")
    token = _AS_OF.set(day.date() if isinstance(day, datetime) else day)
    try:
        yield
    finally:
        _AS_OF.reset(token)


def format_date(day: date) -> str:
    """'Today is Monday, January 30, 2023.' in English whatever the process locale."""
    return f"Today is {_DAYS[day.weekday()]}, {_MONTHS[day.month - 1]} {day.day}, {day.year}."


# The paper's examples (Schick et al. 2023, appendix A.2), with results as this tool
# returns them: the annotator's prompt and the bracket format's preamble show them.
EXAMPLES = (
    "Today is the first [Calendar() → Today is Friday, January 6, 2023.] Friday of the year.",
    "The president of the United States is [Calendar() → Today is Monday, March 20, 2023.] "
    "Joe Biden.",
    "The current day of the week is [Calendar() → Today is Wednesday, May 10, 2023.] Wednesday.",
    "The number of days from now until Christmas is "
    "[Calendar() → Today is Friday, November 25, 2022.] 30.",
    "The store is never open on the weekend, so today it is "
    "[Calendar() → Today is Saturday, June 3, 2023.] closed.",
)


def make_calendar(
    clock: Callable[[], datetime] | None = None, tz: str | tzinfo | None = None
) -> Callable[[], str]:
    """A Calendar tool reading ``clock`` (default: the system clock) in timezone ``tz``.

    ``tz`` is a tzinfo or an IANA name; None means the machine's local time. A naive datetime
    from ``clock`` is taken as already local to ``tz``. An unknown name raises ToolConfigError.
    """
    zone = _zone(tz)
    read = clock or (lambda: datetime.now(timezone.utc))

    @toolrun.tool(examples=EXAMPLES, name="Calendar", description=_DESCRIPTION, timeout=2.0)
    def calendar() -> str:
        return format_date(_AS_OF.get() or _local(read(), zone))

    return calendar


def _check_env() -> None:
    _zone(os.environ.get(TZ_ENV) or None)


@toolrun.tool(
    examples=EXAMPLES, name="Calendar", description=_DESCRIPTION, timeout=2.0, check=_check_env
)
def calendar() -> str:
    """Today's date from the system clock, in ``$TOOLRUN_TZ`` or local time."""
    fixed = _AS_OF.get()
    if fixed is not None:
        return format_date(fixed)
    zone = _zone(os.environ.get(TZ_ENV) or None)
    return format_date(_local(datetime.now(timezone.utc), zone))


def _local(now: datetime, zone: tzinfo | None) -> datetime:
    if now.tzinfo is None:
        return now
    return now.astimezone(zone) if zone is not None else now.astimezone()


def _zone(tz: Any) -> tzinfo | None:
    if tz is None or isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str) or not tz.strip():
        raise toolrun.ToolConfigError(f"timezone must be an IANA name or a tzinfo, got {tz!r}")
    try:
        return ZoneInfo(tz.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise toolrun.ToolConfigError(
            f"unknown timezone {tz!r} (from {TZ_ENV} or tz=); use an IANA name like 'Europe/Paris'"
        ) from exc
