"""What became of slices: the supervisor's reading of a sandbox's batch report."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dcp_worker.errors import MemoryLimitError, SliceError, WorkFunctionException, WorkRejectedError

REPORT_ERRORS: dict[str, type[SliceError]] = {
    "error": WorkFunctionException,
    "memory": MemoryLimitError,
    "reject": WorkRejectedError,
}


@dataclass(slots=True)
class SliceOutcome:
    """What became of one slice. ``value`` is tagged JSON (see ``dcp_worker.tagged_json``)."""

    number: int
    value: Any = None
    error: SliceError | None = None
    console: Sequence[tuple[str, str]] = ()
    events: Sequence[tuple[str, Any]] = ()
    called_progress: bool = True


@dataclass(slots=True)
class BatchOutcome:
    """The outcomes of a batch of slices, in columns, so that fast slices cost little each.

    Slice ``numbers[i]`` succeeded with ``values[i]`` (tagged JSON) and called ``progress()``,
    unless ``details`` holds an outcome for it, which then tells all (console output, events,
    an error, no progress). ``tagged`` is false when every value is a JSON primitive, which
    ``from_json`` would return unchanged. ``retire`` says that a slice ended its sandbox
    (``work.reject()`` or the memory cap). ``seconds`` is how long the sandbox took over the
    batch, when it ran one.
    """

    numbers: Sequence[int]
    values: list[Any]
    details: dict[int, SliceOutcome] = field(default_factory=dict)
    tagged: bool = True
    retire: bool = False
    seconds: float = 0.0

    @classmethod
    def single(cls, outcome: SliceOutcome) -> BatchOutcome:
        return cls([outcome.number], [outcome.value], {outcome.number: outcome})

    def __len__(self) -> int:
        return len(self.numbers)

    def __iter__(self) -> Iterator[SliceOutcome]:
        """Each slice's outcome, in batch order."""
        for number, value in zip(self.numbers, self.values, strict=True):
            yield self.details.get(number) or SliceOutcome(number, value)

    @property
    def failures(self) -> list[SliceOutcome]:
        return [outcome for outcome in self.details.values() if outcome.error is not None]


OutcomesHandler = Callable[[BatchOutcome], None]


def memory_limit_message(memory_mb: int, detail: str) -> str:
    return f"the slice exceeded the sandbox memory limit of {memory_mb} MB ({detail})"


def slice_details(details: dict[str, Any], memory_mb: int) -> SliceOutcome:
    number = details["n"]
    outcome = SliceOutcome(
        number=number,
        console=[(level, text) for level, text in details.get("console", ())],
        events=[(name, payload) for name, payload in details.get("events", ())],
        called_progress=details["progress"] > 0,
    )
    if details["ok"]:
        outcome.value = details["value"]
        return outcome
    error = details["error"]
    kind = REPORT_ERRORS.get(details.get("kind", "error"), WorkFunctionException)
    name, message = error["name"], error["message"]
    if kind is MemoryLimitError:
        name, message = "MemoryLimitError", memory_limit_message(memory_mb, f"{name}: {message}")
    outcome.error = kind(number, name, message, error.get("stack"))
    return outcome


def batch_outcome(
    numbers: Sequence[int], report: dict[str, Any], memory_mb: int, seconds: float = 0.0
) -> BatchOutcome:
    """A batch's outcome from the report runtime.js made of it (see ``newReport`` there)."""
    details = {}
    for entry in report["details"]:
        outcome = slice_details(entry, memory_mb)
        details[outcome.number] = outcome
    return BatchOutcome(numbers, report["values"], details, report["tagged"], report["retire"], seconds)
