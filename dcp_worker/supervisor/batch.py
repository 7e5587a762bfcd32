"""A batch of slices on its way to a sandbox: their numbers and their data, in columns."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dcp_worker.json_dump import dump_json


@dataclass(frozen=True, slots=True)
class SliceBatch:
    """Slice ``numbers[i]`` runs on ``data[i]`` (tagged JSON). ``numbers`` is a range when the
    slices run on, as they mostly do, and ``data`` may be a range too (of integers JavaScript
    holds exactly), so that no per-slice number needs handling."""

    numbers: Sequence[int]
    data: Sequence[Any]

    def __len__(self) -> int:
        return len(self.numbers)

    def singles(self) -> Iterator[SliceBatch]:
        for index, number in enumerate(self.numbers):
            yield SliceBatch(range(number, number + 1), self.data[index : index + 1])

    def to_json(self) -> bytes:
        """The batch as runtime.js's runBatch reads it."""
        batch: dict[str, Any]
        if isinstance(self.numbers, range) and self.numbers.step == 1:
            batch = {"first": self.numbers.start}
        else:
            batch = {"numbers": list(self.numbers)}
        if isinstance(self.data, range):
            batch.update({"from": self.data.start, "step": self.data.step, "count": len(self.data)})
        else:
            batch["data"] = list(self.data)
        return dump_json(batch)
