"""Where the worker's output goes: syslog (udp, tcp, unix), the status report, the dashboard; and
what a fatal error inside the worker leaves behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_run import isolated_environment, worker_command
from scheduler_double import SchedulerDouble
from worker_process import PAYMENT, SLOW, SQUARE, WorkerProcess, results

from dcp_worker.protocol.identity import Identity
from dcp_worker.worker.config import WorkerConfig
from dcp_worker.worker.runner import StopControl, WorkerRun

LOCAL7_INFO = f"<{23 * 8 + 6}>"


class SyslogServer:
    """Collects what arrives on a syslog socket (udp, tcp or unix datagrams), in a thread."""

    def __init__(self, transport: str, path: Path) -> None:
        self.messages: list[str] = []
        self._done = threading.Event()
        if transport == "unix":
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.bind(str(path))
            self.options = ["--syslogAddress", str(path)]
        else:
            kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
            self._socket = socket.socket(socket.AF_INET, kind)
            self._socket.bind(("127.0.0.1", 0))
            self.options = ["--syslogAddress", "127.0.0.1", "--syslogPort", str(self._socket.getsockname()[1])]
        self.options += ["--syslogTransport", transport]
        if transport == "tcp":
            self._socket.listen(1)
        self._thread = threading.Thread(target=self._collect, args=(transport == "tcp",), daemon=True)
        self._thread.start()

    def _collect(self, stream: bool) -> None:
        if stream:
            connection, _ = self._socket.accept()
            buffer = b""
            while chunk := connection.recv(65536):
                buffer += chunk
            connection.close()
            self.messages = [part.decode() for part in buffer.split(b"\0") if part]
        else:
            while True:
                datagram = self._socket.recv(65536)
                if datagram == b"END":
                    break
                self.messages.append(datagram.rstrip(b"\0").decode())
        self._done.set()

    def finish(self, timeout: float = 10) -> list[str]:
        if self._socket.type == socket.SOCK_DGRAM:
            self._socket.sendto(b"END", self._socket.getsockname())
        assert self._done.wait(timeout)
        self._socket.close()
        return self.messages


@pytest.mark.parametrize("transport", ["udp", "tcp", "unix"])
def test_syslog_gets_each_line(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess], tmp_path: Path, transport: str
) -> None:
    server = SyslogServer(transport, tmp_path / "log.sock")
    job = scheduler_double.add_job(SQUARE, [1, 2, 3])
    worker = start_worker(scheduler_double, "--output", "syslog", *server.options)
    results(scheduler_double, job, 3)
    worker.finish()
    assert worker.output() == ""  # everything went to syslog
    messages = server.finish()
    prefix = f"{LOCAL7_INFO}dcp-worker[{worker.proc.pid}]: "
    assert all(message.startswith(("<", prefix)) for message in messages)
    texts = [message.removeprefix(prefix) for message in messages]
    assert texts[0].startswith(" * Starting DCP Worker")
    assert " . Output mode: syslog" in texts
    assert sum(text.startswith(" * Slice Completed") for text in texts) == 3
    assert texts[-1] == " * Worker has stopped: 3 slices submitted, 0 returned"


def test_report_interval_prints_status_reports(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    job = scheduler_double.add_job(SLOW, list(range(1, 9)), slices_per_task=8)
    worker = start_worker(scheduler_double, "--reportInterval", "0.5")
    results(scheduler_double, job, 8)
    worker.finish()
    output = worker.output()
    reports = output.split("=" * 78)[1:]
    assert len(reports) >= 2
    assert all("Sandboxes:" in report and "Slices:" in report and "queued:" in report for report in reports)
    assert any("working:     " in report and "Worker: Working" in report for report in reports)


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    controller, terminal_side = pty.openpty()
    yield controller, terminal_side
    for descriptor in (controller, terminal_side):
        with contextlib.suppress(OSError):
            os.close(descriptor)


def test_the_dashboard_is_the_default_on_a_utf8_terminal(
    scheduler_double: SchedulerDouble, tmp_path: Path, terminal: tuple[int, int]
) -> None:
    controller, terminal_side = terminal
    job = scheduler_double.add_job(SLOW, list(range(1, 7)), slices_per_task=6)
    identity = Identity.generate()
    environment = {**isolated_environment(tmp_path), "LANG": "C.UTF-8", "TERM": "xterm-256color"}
    proc = subprocess.Popen(
        worker_command(scheduler_double.url, identity.private_key.hex(), PAYMENT, 2),
        stdin=terminal_side,
        stdout=terminal_side,
        stderr=terminal_side,
        env=environment,
        start_new_session=True,
    )
    os.close(terminal_side)
    screen = bytearray()
    seen = threading.Event()

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                return
            if not chunk:
                return
            screen.extend(chunk)
            if b"Worker Status [" in screen and b"Sandboxes (" in screen:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert seen.wait(30), bytes(screen)[-2000:]
        results(scheduler_double, job, 6)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    text = screen.decode(errors="replace")
    assert "DCCs Earned" in text and "Worker Log" in text and "Output mode: dashboard" in text
    # Once the screen is gone, the log's last lines stay on the terminal.
    assert "Worker has stopped: 6 slices submitted" in text.rsplit("\x1b[?1049l", 1)[-1]


def test_a_fatal_error_returns_every_slice_it_holds(scheduler_double: SchedulerDouble) -> None:
    double = scheduler_double
    job = double.add_job(SLOW, list(range(1, 11)), slices_per_task=10)

    class Broken(WorkerRun):
        async def _submit(self, *args: object) -> None:
            raise RuntimeError("a bug in submitting")

    config = WorkerConfig(scheduler=double.url, max_sandboxes=2)
    worker = Broken(config, Identity.generate(), PAYMENT, "brokenworker0000000001")
    with pytest.raises(Exception) as raised:
        asyncio.run(worker.run(StopControl()))
    error = raised.value
    while isinstance(error, ExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, RuntimeError) and str(error) == "a bug in submitting"
    status = double.job_status(job)
    assert status["held"] == [] and status["done"] == {}
    assert sorted(status["pending"]) == list(range(1, 11))
