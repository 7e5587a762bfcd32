"""What localexec shows on stderr: work-function console lines, events, a live progress bar."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import orjson

from dcp_worker.localexec.console import console_lines
from dcp_worker.supervisor.live_reports import LiveConsole, LiveEvent, LiveReport
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

    def live(self, reports: list[LiveReport]) -> None:
        """What a slow slice says while it runs."""
        for report in reports:
            if isinstance(report, LiveConsole):
                self._console(report.number, report.level, report.text)
            elif isinstance(report, LiveEvent):
                self._event(report.number, report.name, report.data)

    def _console(self, number: int, level: str, text: str) -> None:
        for line in console_lines(number, level, text):
            self.line(line)

    def _event(self, number: int, name: str, payload: Any) -> None:
        self.line(f"[slice {number}] event {name}: {orjson.dumps(payload).decode()}")

    def _show(self, outcome: SliceOutcome) -> None:
        for level, text in outcome.console:
            self._console(outcome.number, level, text)
        for name, payload in outcome.events:
            self._event(outcome.number, name, payload)
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
