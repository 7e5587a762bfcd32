"""What localexec shows on stderr: work-function console lines, events, a live progress bar."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import orjson

from dcp_worker.localexec.console import console_lines
from dcp_worker.supervisor.outcomes import BatchOutcome, SliceOutcome

REDRAW_SECONDS = 0.1
BAR_WIDTH = 30


class SliceDisplay:
    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._live = stream.isatty()
        self._total = total
        self._done = 0
        self._failed = 0
        self._silent = 0
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._bar_shown = False

    def _clear_bar(self) -> None:
        if self._bar_shown:
            self._stream.write("\r\x1b[K")
            self._bar_shown = False

    def _draw_bar(self) -> None:
        filled = BAR_WIDTH * self._done // max(self._total, 1)
        rate = self._done / max(time.monotonic() - self._started, 1e-9)
        failed = f", {self._failed} failed" if self._failed else ""
        self._stream.write(
            f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self._done}/{self._total} slices"
            f" ({rate:.1f}/s{failed})"
        )
        self._stream.flush()
        self._bar_shown = True
        self._last_draw = time.monotonic()

    def line(self, text: str) -> None:
        self._clear_bar()
        self._stream.write(text + "\n")

    def slices_done(self, batch: BatchOutcome) -> None:
        for outcome in batch.details.values():
            self._show(outcome)
        self._done += len(batch)
        if self._live and (time.monotonic() - self._last_draw >= REDRAW_SECONDS or self._done == self._total):
            self._draw_bar()

    def _show(self, outcome: SliceOutcome) -> None:
        for level, text in outcome.console:
            for line in console_lines(outcome.number, level, text):
                self.line(line)
        for name, payload in outcome.events:
            self.line(f"[slice {outcome.number}] event {name}: {orjson.dumps(payload).decode()}")
        if outcome.error is not None:
            self._failed += 1
            self.line(f"[slice {outcome.number}] failed: {outcome.error.name}: {outcome.error.message}")
        elif not outcome.called_progress:
            self._silent += 1

    def finish(self) -> None:
        self._clear_bar()
        if self._silent:
            self._stream.write(
                f"warning: {self._silent} of {self._total} slices never called progress(); "
                "a DCP worker fails such slices (ENOPROGRESS)\n"
            )
        elapsed = time.monotonic() - self._started
        failed = f", {self._failed} failed" if self._failed else ""
        self._stream.write(f"{self._done} of {self._total} slices done in {elapsed:.2f} s{failed}\n")
        self._stream.flush()
