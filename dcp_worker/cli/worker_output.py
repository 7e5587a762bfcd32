"""Where the worker's log lines go (``--output``), and its status report (``--reportInterval``)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys
import time

from dcp_worker.errors import UsageError
from dcp_worker.worker.config import WorkerConfig
from dcp_worker.worker.status import WorkerStatus

__all__ = ["chosen_output", "log_handler", "status_report"]

RULE = "=" * 78
SYSLOG_SOCKET_TYPES = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM}


def chosen_output(config: WorkerConfig) -> str:
    """The output mode: ``detect`` is the dashboard on a terminal that shows UTF-8, else the console.

    dcp-worker's ``detect`` looks only at ``LANG``, and so picks the dashboard under systemd too.
    """
    if config.output == "dashboard" and not sys.stdout.isatty():
        raise UsageError("--output dashboard needs a terminal, and standard output is not one")
    if config.output != "detect":
        return config.output
    lang = os.environ.get("LC_ALL") or os.environ.get("LANG") or ""
    utf8 = "utf-8" in lang.lower() or "utf8" in lang.lower()
    return "dashboard" if utf8 and sys.stdout.isatty() and sys.stdin.isatty() else "console"


class LineSysLogHandler(logging.handlers.SysLogHandler):
    """Sends each line of a record as a message of its own, ``dcp-worker[pid]: line``, as
    dcp-worker's syslog output does."""

    _complained = False

    def handleError(self, record: logging.LogRecord) -> None:
        """Syslog went away mid-run: say so once on stderr, not with a traceback per line."""
        if not self._complained:
            self._complained = True
            print("dcp-worker: syslog is unreachable; log lines are being lost", file=sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        for line in text.splitlines() or [""]:
            single = logging.makeLogRecord({**record.__dict__, "msg": line, "args": None, "exc_info": None})
            super().emit(single)


def _probe_unix_socket(path: str) -> None:
    """Raise the ``OSError`` of connecting to ``path``, as a datagram socket or a stream one."""
    failure: OSError | None = None
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_UNIX, kind) as probe:
            try:
                probe.connect(path)
                return
            except OSError as error:
                failure = failure or error
    assert failure is not None
    raise failure


def _syslog_handler(config: WorkerConfig) -> logging.Handler:
    where = f"{config.syslog_transport} {config.syslog_address}"
    facility = logging.handlers.SysLogHandler.facility_names[config.syslog_facility]
    try:
        if config.syslog_transport == "unix":
            # The handler keeps quiet when it cannot connect; a worker that is starting should not.
            _probe_unix_socket(config.syslog_address)
            handler = LineSysLogHandler(address=config.syslog_address, facility=facility)
        else:
            where += f":{config.syslog_port}"
            handler = LineSysLogHandler(
                address=(config.syslog_address, config.syslog_port),
                facility=facility,
                socktype=SYSLOG_SOCKET_TYPES[config.syslog_transport],
            )
    except OSError as error:
        raise UsageError(
            f"--output syslog: cannot reach syslog at {where}: {error.strerror or error}"
        ) from None
    handler.ident = f"dcp-worker[{os.getpid()}]: "
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def log_handler(config: WorkerConfig, mode: str) -> logging.Handler:
    """The handler for ``mode`` (console, logfile or syslog); a bad destination is a ``UsageError``."""
    if mode == "logfile":
        try:
            handler: logging.Handler = logging.FileHandler(config.logfile)
        except OSError as error:
            raise UsageError(f"--logfile {config.logfile}: cannot open it: {error.strerror}") from None
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        return handler
    if mode == "syslog":
        return _syslog_handler(config)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def _elapsed(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"


def status_report(status: WorkerStatus, started: float) -> str:
    """The ``--reportInterval`` report: sandboxes, the jobs they work for, and slices."""
    lines = [
        RULE,
        time.strftime("%a %b %d %Y %H:%M:%S %Z"),
        "Sandboxes:",
        f"  Working:     {status.sandboxes}",
        f"  * ALL:       {status.sandboxes}",
        "Progress:",
    ]
    lines += [
        f" {job.job_id[:22]} {job.name[:34]:<34}  {job.sandboxes} sandbox(es), {job.held} slice(s) held"
        for job in status.jobs
        if job.held or job.sandboxes
    ]
    lines += [
        "Slices:",
        f"  working:     {status.working}",
        f"  queued:      {status.queued}",
        f"  submitted:   {status.submitted}",
        f"  returned:    {status.returned}",
        f"Worker: {status.state}, up {_elapsed(time.monotonic() - started)}",
        f"Governor: {status.governor}",
    ]
    return "\n".join(lines)
