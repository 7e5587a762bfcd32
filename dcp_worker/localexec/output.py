"""Writing localexec results, in slice order, as soon as each prefix of slices is complete.

``json`` writes one JSON array: each element is a slice's result, or for a failed slice
``{"$dcp": "failed", "error": {"name": ..., "message": ...}}``. ``jsonl`` writes one line per
slice: ``{"slice": N, "result": VALUE}`` or ``{"slice": N, "error": {...}}``. Values use tagged
JSON (see ``dcp_worker.tagged_json``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from dcp_worker.errors import JobError, UsageError
from dcp_worker.supervisor.outcomes import BatchOutcome, SliceOutcome
from dcp_worker.tagged_json import TAG

OutputFormat = Literal["json", "jsonl"]


@contextlib.contextmanager
def result_stream(path: Path | None) -> Iterator[IO[bytes]]:
    """Standard output, or ``path`` opened before any work runs so that a bad path costs nothing."""
    if path is None:
        yield sys.stdout.buffer
        return
    existed = path.exists()
    try:
        stream = path.open("wb")
    except OSError as error:
        raise UsageError(f"--out {path}: {error.strerror}") from None
    with stream:
        try:
            yield stream
        except JobError:
            # The job never ran; don't leave an empty results file behind.
            if not existed:
                path.unlink(missing_ok=True)
            raise


class ResultWriter:
    def __init__(self, stream: IO[bytes], output_format: OutputFormat) -> None:
        self._stream = stream
        self._started = False
        self._format = output_format
        self._waiting: dict[int, bytes] = {}
        self._next = 1

    @property
    def written(self) -> int:
        return self._next - 1

    def _write(self, data: bytes) -> None:
        if not self._started and self._format == "json":
            self._stream.write(b"[")
        self._started = True
        self._stream.write(data)

    def _encode(self, outcome: SliceOutcome) -> bytes:
        """The slice's entry, without the separator that precedes it in ``json`` format."""
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
        return orjson.dumps(value)

    def add(self, batch: BatchOutcome) -> None:
        for outcome in batch:
            self._waiting[outcome.number] = self._encode(outcome)
        separator = b",\n" if self._format == "json" else b""
        while self._next in self._waiting:
            entry = self._waiting.pop(self._next)
            self._write((b"\n" if self._next == 1 and separator else separator) + entry)
            self._next += 1
        self._stream.flush()

    def close(self) -> None:
        """End the output; what is written is valid even when slices are missing."""
        if self._format == "json":
            self._write(b"\n]\n" if self._next > 1 else b"]\n")
        self._stream.flush()
