"""``--output dashboard``: a full-screen live view of the worker, drawn with rich.

Three panes, as dcp-worker's dashboard has them: the sandboxes at work (by job), the worker's log,
and the worker's status. Keys are the terminal's own: Ctrl-C stops softly, Ctrl-\\ at once.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Mapping

from rich.console import Console, Group
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dcp_worker.worker.status import WorkerStatus

__all__ = ["Dashboard"]

LOG_LINES_KEPT = 1000
LINES_LEFT_ON_CLOSE = 20  # the log's last lines, printed once the screen is gone


class _LogPane(logging.Handler):
    """Keeps the last log lines for the log pane."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: collections.deque[Text] = collections.deque(maxlen=LOG_LINES_KEPT)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        style = (
            "red"
            if record.levelno >= logging.ERROR
            else "yellow"
            if record.levelno >= logging.WARNING
            else ""
        )
        for line in self.format(record).splitlines():
            self.lines.append(Text(line, style=style))


class Dashboard:
    """The screen. ``handler`` takes the log; ``update`` redraws; ``close`` gives the terminal back."""

    def __init__(self, facts: Mapping[str, str], console: Console | None = None) -> None:
        self._facts = dict(facts)
        self._log = _LogPane()
        self._console = console or Console()
        self._live = Live(console=self._console, screen=True, auto_refresh=False, transient=False)
        self._live.start()

    @property
    def handler(self) -> logging.Handler:
        return self._log

    def update(self, status: WorkerStatus) -> None:
        self._live.update(self._render(status), refresh=True)

    def close(self) -> None:
        self._live.stop()
        for line in list(self._log.lines)[-LINES_LEFT_ON_CLOSE:]:
            self._console.print(line)

    def _render(self, status: WorkerStatus) -> Layout:
        height = self._console.size.height
        log_rows = max(height * 2 // 3 - 2, 1)
        top = Layout(name="top", ratio=2)
        top.split_row(
            Layout(Panel(self._sandboxes(status), title=f"Sandboxes ({status.sandboxes})"), name="sandboxes"),
            Layout(Panel(Group(*list(self._log.lines)[-log_rows:]), title="Worker Log"), name="log"),
        )
        screen = Layout()
        screen.split_column(
            top, Layout(Panel(self._status(status), title=f"Worker Status [{status.state}]"), name="status")
        )
        return screen

    @staticmethod
    def _sandboxes(status: WorkerStatus) -> Table:
        table = Table(expand=True, box=None)
        for column in ("Job", "Sandboxes", "Working", "Queued"):
            table.add_column(column)
        for job in status.jobs:
            if job.sandboxes or job.held:
                working = job.held - job.waiting
                table.add_row(
                    f"{job.name} {job.job_id[:8]}", str(job.sandboxes), str(working), str(job.waiting)
                )
        return table

    def _status(self, status: WorkerStatus) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        last = time.strftime("%H:%M:%S", time.gmtime(status.last_task_at)) if status.last_task_at else "never"
        rows = {
            "DCCs Earned": f"{status.earned:.3f} ⊇",
            **self._facts,
            "Current Time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "Last Task Request": last,
            "Governor": status.governor,
            "Slices in task": str(status.last_task_slices),
            "Jobs in task": str(status.last_task_jobs),
            "Slices": f"{status.working} working, {status.queued} queued, "
            f"{status.submitted} submitted, {status.returned} returned",
        }
        for name, value in rows.items():
            table.add_row(name, value)
        return table
