"""A batch of slices on its way to a sandbox: their numbers and their data, in columns."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dcp_worker.json_dump import dump_json


@dataclass(frozen=True, slots=True)
class SliceBatch:
    """Slice ``numbers[i]`` runs on ``data[i]`` (tagged JSON). ``numbers`` is a range when the
    slices run on, as they mostly do, so that no per-slice number needs handling."""

    numbers: Sequence[int]
    data: Sequence[Any]

    def __len__(self) -> int:
        return len(self.numbers)

    def singles(self) -> Iterator[SliceBatch]:
        for index, number in enumerate(self.numbers):
            yield SliceBatch(range(number, number + 1), self.data[index : index + 1])

    def to_json(self) -> bytes:
        """The batch as runtime.js's runBatch reads it."""
        data = list(self.data)
        if isinstance(self.numbers, range) and self.numbers.step == 1:
            return dump_json({"first": self.numbers.start, "data": data})
        return dump_json({"numbers": list(self.numbers), "data": data})
