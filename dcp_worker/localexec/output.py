"""Writing localexec results, in slice order, as soon as each prefix of slices is complete.

``json`` writes one JSON array: each element is a slice's result, or for a failed slice
``{"$dcp": "failed", "error": {"name": ..., "message": ...}}``. ``jsonl`` writes one line per
slice: ``{"slice": N, "result": VALUE}`` or ``{"slice": N, "error": {...}}``. Values use tagged
JSON (see ``dcp_worker.jsvalues``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any, Literal

import orjson

from dcp_worker.jsvalues import TAG
from dcp_worker.supervisor.pool import SliceOutcome

OutputFormat = Literal["json", "jsonl"]


class ResultWriter:
    def __init__(self, open_stream: Callable[[], IO[bytes]], output_format: OutputFormat) -> None:
        self._open_stream = open_stream
        self._stream: IO[bytes] | None = None
        self._format = output_format
        self._waiting: dict[int, SliceOutcome] = {}
        self._next = 1

    @property
    def written(self) -> int:
        return self._next - 1

    def _write(self, data: bytes) -> None:
        if self._stream is None:
            self._stream = self._open_stream()
            if self._format == "json":
                self._stream.write(b"[")
        self._stream.write(data)

    def _encode(self, outcome: SliceOutcome) -> bytes:
        error: Any = None if outcome.error is None else outcome.error.to_json()
        if self._format == "jsonl":
            line = (
                {"slice": outcome.number, "result": outcome.value}
                if error is None
                else {
                    "slice": outcome.number,
                    "error": error,
                }
            )
            return orjson.dumps(line) + b"\n"
        value = outcome.value if error is None else {TAG: "failed", "error": error}
        return (b"\n" if outcome.number == 1 else b",\n") + orjson.dumps(value)

    def add(self, outcome: SliceOutcome) -> None:
        self._waiting[outcome.number] = outcome
        while self._next in self._waiting:
            self._write(self._encode(self._waiting.pop(self._next)))
            self._next += 1
        if self._stream is not None:
            self._stream.flush()

    def close(self) -> None:
        """End the output; what is written is valid even when slices are missing."""
        if self._format == "json":
            self._write(b"\n]\n" if self._next > 1 else b"]\n")
        elif self._stream is None:
            self._stream = self._open_stream()
        assert self._stream is not None
        self._stream.flush()
