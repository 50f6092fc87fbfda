"""The Calendar: the paper's sentence, an injectable clock and timezone, env configuration."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

import toolrun
from toolrun.testing import ScriptedModel
from toolrun.tools.calendar_tool import TZ_ENV, as_of, calendar, format_date, make_calendar

# 2023-01-31 03:00 UTC is still Monday, January 30 in New York.
INSTANT = datetime(2023, 1, 31, 3, 0, tzinfo=timezone.utc)


def test_the_papers_sentence() -> None:
    assert format_date(datetime(2023, 1, 30)) == "Today is Monday, January 30, 2023."


def test_clock_and_timezone_are_injected() -> None:
    assert make_calendar(lambda: INSTANT, tz="UTC")() == "Today is Tuesday, January 31, 2023."
    new_york = make_calendar(lambda: INSTANT, tz="America/New_York")
    assert new_york() == "Today is Monday, January 30, 2023."
    fixed = make_calendar(lambda: INSTANT, tz=timezone(timedelta(hours=-5)))
    assert fixed() == "Today is Monday, January 30, 2023."


def test_a_naive_clock_is_taken_as_local_to_the_timezone() -> None:
    tool = make_calendar(lambda: datetime(2024, 2, 29, 23, 59), tz="Asia/Tokyo")
    assert tool() == "Today is Thursday, February 29, 2024."


def test_unknown_timezone_is_a_config_error() -> None:
    with pytest.raises(toolrun.ToolConfigError, match="unknown timezone 'Mars/Olympus'"):
        make_calendar(tz="Mars/Olympus")


def test_entry_point_reads_the_timezone_at_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TZ_ENV, "Not/AZone")
    with pytest.raises(toolrun.ToolConfigError, match="TOOLRUN_TZ"):
        toolrun.ToolRegistry(["calendar"])
    monkeypatch.setenv(TZ_ENV, "Pacific/Kiritimati")  # UTC+14: always a day ahead of UTC-10
    ahead = calendar()
    monkeypatch.setenv(TZ_ENV, "Pacific/Honolulu")
    assert calendar() != ahead
    assert calendar().startswith("Today is ")


def test_end_to_end_through_generate() -> None:
    tool = make_calendar(lambda: datetime(2023, 1, 30, 9, 0), tz="Europe/Paris")
    model = ScriptedModel(["Q: what day is it? A: [Calendar() →", " so Monday."])
    out = toolrun.generate("Q:", model=model, tools=[tool])
    assert out.text == (
        "Q: what day is it? A: [Calendar() → Today is Monday, January 30, 2023.] so Monday."
    )
    assert out.calls[0].name == "Calendar" and out.calls[0].error is None


def test_arguments_are_refused_clearly() -> None:
    model = ScriptedModel(["[Calendar(tomorrow) →", " x"])
    out = toolrun.generate("Q:", model=model, tools=["calendar"])
    assert "takes 0 argument(s), 1 given" in (out.calls[0].error or "")


def test_as_of_fixes_the_day_for_every_calendar_then_lets_go() -> None:
    clocked = make_calendar(lambda: INSTANT, tz="UTC")
    with as_of(date(2031, 3, 14)):
        assert calendar() == "Today is Friday, March 14, 2031."
        assert clocked() == "Today is Friday, March 14, 2031."
        with as_of(datetime(2000, 2, 29, 23, 0)):
            assert clocked() == "Today is Tuesday, February 29, 2000."
        assert clocked() == "Today is Friday, March 14, 2031."
    assert clocked() == "Today is Tuesday, January 31, 2023."
    text: Any = "2031-03-14"
    with pytest.raises(toolrun.ToolConfigError, match="takes a datetime"), as_of(text):
        pass


def test_as_of_reaches_the_tool_threads_of_generate_and_generate_batch() -> None:
    script = ["A: [Calendar() →", " ok."]
    day = date(2031, 3, 14)
    with as_of(day):
        one = toolrun.generate("Q:", model=ScriptedModel(script), tools=["calendar"])
        many = toolrun.generate_batch(
            ["Q1:", "Q2:"], model=ScriptedModel(script), tools=["calendar"]
        )

    async def inside_a_running_loop() -> list[toolrun.Generation]:
        # generate_batch called from async code runs on its own thread: the day goes along.
        with as_of(day):
            return toolrun.generate_batch(["Q:"], model=ScriptedModel(script), tools=["calendar"])

    nested = asyncio.run(inside_a_running_loop())
    for out in [one, *many, *nested]:
        assert out.calls[0].result == "Today is Friday, March 14, 2031.", out.text
