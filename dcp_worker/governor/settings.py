"""The governor's settings: one ``GovernorSettings``, every condition off or permissive by default.

Each setting has an official-style camelCase option name (``maxLoad``, ``cpuCap``, ``hours``...).
``parse_option(name, value)`` reads one from the command line, the environment or a TOML file
(a string or TOML's own type) and raises ``ValueError`` saying what was expected;
``GovernorSettings.from_options`` reads several and names the bad one in a ``UsageError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from dcp_worker.errors import UsageError

__all__ = [
    "OPTION_FIELDS",
    "OPTION_HELP",
    "OPTION_NAMES",
    "GovernorSettings",
    "HoursWindow",
    "parse_hours",
    "parse_option",
]

DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
LOAD_PERIODS = (1, 5, 15)
_TIME = re.compile(r"(\d{1,2}):(\d{2})")


@dataclass(frozen=True, slots=True)
class HoursWindow:
    """Minutes after midnight from ``start`` to ``end`` (past midnight when ``end <= start``),
    starting on ``days`` (0 = Monday; empty: every day)."""

    start: int
    end: int
    days: frozenset[int] = frozenset()

    def _starts_on(self, day: datetime) -> bool:
        return not self.days or day.weekday() in self.days

    def _spans(self, moment: datetime) -> list[tuple[datetime, datetime]]:
        """The spans of this window that could hold ``moment``: those starting yesterday or today."""
        midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        length = (self.end - self.start) % (24 * 60) or 24 * 60
        spans = []
        for back in (1, 0):
            day = midnight - timedelta(days=back)
            if self._starts_on(day):
                opens = day + timedelta(minutes=self.start)
                spans.append((opens, opens + timedelta(minutes=length)))
        return spans

    def contains(self, moment: datetime) -> bool:
        return any(opens <= moment < closes for opens, closes in self._spans(moment))

    def next_opening(self, moment: datetime) -> datetime:
        """The first time after ``moment`` that this window opens (within the coming week)."""
        midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        for ahead in range(8):
            day = midnight + timedelta(days=ahead)
            opens = day + timedelta(minutes=self.start)
            if opens > moment and self._starts_on(day):
                return opens
        raise AssertionError("a window opens at least once a week")  # pragma: no cover

    def __str__(self) -> str:
        days = " ".join(DAY_NAMES[day][:3].capitalize() for day in sorted(self.days))
        span = f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"
        return f"{days} {span}" if days else span


def _minutes(text: str, *, end: bool) -> int:
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"expected a time HH:MM, not {text!r}")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise ValueError(f"{text!r} is not a time of day")
    return hours * 60 + minutes


def _day(name: str, token: str) -> int:
    """``Mon``, ``mon``, ``Monday``... (three letters or more of a day's English name)."""
    for number, full in enumerate(DAY_NAMES):
        if len(name) >= 3 and full.startswith(name.lower()):
            return number
    raise ValueError(f"expected a day such as Mon or a range such as Mon-Fri, not {token!r}")


def _days(tokens: list[str]) -> frozenset[int]:
    days: set[int] = set()
    for token in tokens:
        first, _, last = token.partition("-")
        start = _day(first, token)
        stop = _day(last, token) if last else start
        days.update((start + step) % 7 for step in range((stop - start) % 7 + 1))
    return frozenset(days)


def parse_hours(text: str) -> tuple[HoursWindow, ...]:
    """``"22:00-07:00"``, ``"Mon-Fri 18:00-08:00, Sat Sun 00:00-24:00"``: windows separated by
    commas, each a time range preceded by optional days or day ranges (the day a window starts)."""
    windows = []
    for part in text.split(","):
        tokens = part.split()
        if not tokens:
            raise ValueError(f"expected windows such as 'Mon-Fri 22:00-07:00', not {text!r}")
        start, separator, end = tokens[-1].partition("-")
        if not separator:
            raise ValueError(f"expected a time range HH:MM-HH:MM, not {tokens[-1]!r}")
        window = HoursWindow(_minutes(start, end=False), _minutes(end, end=True), _days(tokens[:-1]))
        if window.start == window.end:
            raise ValueError(f"{tokens[-1]!r} is an empty window (use 00:00-24:00 for a whole day)")
        windows.append(window)
    return tuple(windows)


def _number(value: object, what: str, low: float, high: float = math.inf, *, above: bool = False) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"expected {what}, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected {what}, not {value!r}")
    if value < low or (above and value == low) or value > high:
        raise ValueError(f"expected {what}, not {value:g}")
    return float(value)


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {value!r}")


def _hours(value: object) -> tuple[HoursWindow, ...]:
    if isinstance(value, list | tuple):
        return tuple(window for item in value for window in _hours(item))
    if not isinstance(value, str):
        raise ValueError(f"expected windows such as 'Mon-Fri 22:00-07:00', not {value!r}")
    return parse_hours(value) if value.strip() else ()


def _load_period(value: object) -> int:
    period = _number(value, "1, 5 or 15 (minutes)", 1, 15)
    if period not in LOAD_PERIODS:
        raise ValueError(f"expected 1, 5 or 15 (minutes), not {period:g}")
    return int(period)


# Option name -> (field, parser). Each parser raises ValueError saying what it expected.
_OPTIONS: dict[str, tuple[str, Callable[[object], Any]]] = {
    "maxLoad": ("max_load", lambda v: _number(v, "a load average above 0", 0, above=True)),
    "loadPeriod": ("load_period", _load_period),
    "maxOtherCpu": ("max_other_cpu", lambda v: _number(v, "a percentage from 0 to 100", 0, 100)),
    "cpuCap": ("cpu_cap", lambda v: _number(v, "a percentage above 0, at most 100", 0, 100, above=True)),
    "hours": ("hours", _hours),
    "maxMemoryShare": (
        "max_memory_share",
        lambda v: _number(v, "a fraction of RAM above 0, at most 1", 0, 1, above=True),
    ),
    "pauseOnBattery": ("pause_on_battery", _flag),
    "pauseWhenUserActive": (
        "pause_when_user_active",
        lambda v: _number(v, "seconds of idleness above 0", 0, above=True),
    ),
    "resumeWithin": ("resume_within", lambda v: _number(v, "seconds, 0 or more", 0)),
    "resumeAfter": ("resume_after", lambda v: _number(v, "seconds, 0 or more", 0)),
    "governorInterval": (
        "poll_interval",
        lambda v: _number(v, "seconds from 0.1 to 3600", 0.1, 3600),
    ),
}
OPTION_NAMES = tuple(_OPTIONS)
OPTION_FIELDS = {name: field for name, (field, _) in _OPTIONS.items()}
# For the command line: option name -> (metavar or None for a flag, help with its default).
OPTION_HELP: dict[str, tuple[str | None, str]] = {
    "maxLoad": ("N", "Pause while the load average is above N [default: off]."),
    "loadPeriod": ("MINUTES", "The load average --maxLoad reads: 1, 5 or 15 [default: 1]."),
    "maxOtherCpu": ("PERCENT", "Pause while other programs use more of all CPUs [default: off]."),
    "cpuCap": ("PERCENT", "Run sandboxes this share of the time, stopped the rest [default: 100]."),
    "hours": ("WINDOWS", "Work only within these hours, e.g. 'Mon-Fri 18:00-08:00' [default: always]."),
    "maxMemoryShare": ("FRACTION", "Keep the worker's memory within this share of RAM [default: off]."),
    "pauseOnBattery": (None, "Pause while the machine runs on battery [default: false]."),
    "pauseWhenUserActive": ("SECONDS", "Pause until the user has been idle this long [default: off]."),
    "resumeWithin": ("SECONDS", "Return held slices when a pause lasts longer [default: 120]."),
    "resumeAfter": ("SECONDS", "Resume once the conditions have been clear this long [default: 30]."),
    "governorInterval": ("SECONDS", "How often the conditions are read [default: 5]."),
}
# Settings that may be left unset (None: the condition is off).
_OPTIONAL = frozenset({"max_load", "max_other_cpu", "max_memory_share", "pause_when_user_active"})


def parse_option(name: str, value: object) -> dict[str, Any]:
    """``{field: parsed value}`` for the option ``name``; ``ValueError`` if the value is bad,
    ``KeyError`` if ``name`` is not a governor option."""
    field, parse = _OPTIONS[name]
    return {field: parse(value)}


@dataclass(frozen=True, slots=True)
class GovernorSettings:
    """Everything off or permissive by default: the governor then never limits the worker."""

    max_load: float | None = None  # pause while the load average is above this
    load_period: int = 1  # minutes of the load average: 1, 5 or 15
    max_other_cpu: float | None = None  # pause while other processes use more than this % of all CPUs
    cpu_cap: float = 100.0  # % of the time sandboxes may run (the rest they are stopped)
    hours: tuple[HoursWindow, ...] = ()  # work only within these windows (empty: always)
    max_memory_share: float | None = None  # the worker's memory at most this share of RAM
    pause_on_battery: bool = False
    pause_when_user_active: float | None = None  # pause until the user has been idle this long
    resume_within: float = 120.0  # give slices back when a pause lasts (or will last) longer
    resume_after: float = 30.0  # a condition must stay clear this long before work resumes
    poll_interval: float = 5.0

    def __post_init__(self) -> None:
        by_field = {field: (name, parse) for name, (field, parse) in _OPTIONS.items()}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None and item.name in _OPTIONAL:
                continue
            name, parse = by_field[item.name]
            if item.name == "hours":
                if not all(isinstance(window, HoursWindow) for window in value):
                    raise UsageError(f"{name}: expected HoursWindow values")
                continue
            try:
                parse(value)
            except ValueError as error:
                raise UsageError(f"{name}: {error}") from None

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> GovernorSettings:
        """Settings from option names and raw values (``{"maxLoad": "3", "hours": "22:00-07:00"}``);
        a ``UsageError`` names an unknown option or a bad value."""
        values: dict[str, Any] = {}
        for name, value in options.items():
            try:
                values.update(parse_option(name, value))
            except KeyError:
                raise UsageError(f"unknown governor option {name!r}") from None
            except ValueError as error:
                raise UsageError(f"{name}: {error}") from None
        return cls(**values)

    def as_options(self) -> dict[str, Any]:
        """The settings by option name, as plain values (for status and --dumpConfig)."""
        shown: dict[str, Any] = {}
        for name, (field, _) in _OPTIONS.items():
            value = getattr(self, field)
            shown[name] = ", ".join(map(str, value)) if field == "hours" else value
        return shown
