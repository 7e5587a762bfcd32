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
from dcp_worker.supervisor.outcomes import BatchOutcome
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
    """Writes each batch once every slice before it is written. A batch is held as it came and
    rendered only when its turn comes, a value at a time into one buffer: holding thousands of
    small rendered values at once costs the allocator more than rendering them does."""

    def __init__(self, stream: IO[bytes], output_format: OutputFormat) -> None:
        self._stream = stream
        self._format = output_format
        self._waiting: dict[int, BatchOutcome] = {}
        self._next = 1

    @property
    def written(self) -> int:
        return self._next - 1

    def add(self, batch: BatchOutcome) -> None:
        numbers = batch.numbers
        if isinstance(numbers, range) and numbers.step == 1:
            if numbers:
                self._waiting[numbers.start] = batch
        else:
            for outcome in batch:
                self._waiting[outcome.number] = BatchOutcome.single(outcome)
        text = bytearray()
        while (ready := self._waiting.pop(self._next, None)) is not None:
            self._render(text, ready)
            self._next += len(ready)
        if text:
            self._stream.write(text)
            self._stream.flush()

    def _render(self, text: bytearray, batch: BatchOutcome) -> None:
        """Append each slice's entry, with the separator before it in ``json`` format."""
        details = batch.details
        for number, value in zip(batch.numbers, batch.values, strict=True):
            error: Any = None
            if details and (outcome := details.get(number)) is not None:
                value = outcome.value
                error = None if outcome.error is None else outcome.error.to_json()
            if self._format == "jsonl":
                if error is None:
                    text += b'{"slice":%d,"result":%b}\n' % (number, orjson.dumps(value))
                else:
                    text += b'{"slice":%d,"error":%b}\n' % (number, orjson.dumps(error))
            else:
                text += b",\n" if number > 1 else b"[\n"
                text += orjson.dumps(value if error is None else {TAG: "failed", "error": error})

    def close(self) -> None:
        """End the output; what is written is valid even when slices are missing."""
        if self._format == "json":
            self._stream.write(b"\n]\n" if self._next > 1 else b"[]\n")
        self._stream.flush()
