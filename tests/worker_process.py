"""``dcp-worker`` run as a real subprocess against the scheduler double (fixture ``start_worker``)."""

from __future__ import annotations

import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from cli_run import isolated_environment, worker_command
from scheduler_double import SchedulerDouble

from dcp_worker.protocol.identity import Identity

PAYMENT = Identity(b"\x22" * 32).address
SQUARE = "function (x) { progress(); return x * x; }"
# About 0.3 s of work a slice, so that a signal or a command finds slices running and slices queued.
SLOW = "function (x) { progress(); const end = Date.now() + 300; while (Date.now() < end) {} return -x; }"


class WorkerProcess:
    """``python -m dcp_worker`` working for ``double``; its output is kept in a file."""

    def __init__(self, double: SchedulerDouble, home: Path, *options: str) -> None:
        self.identity = Identity.generate()
        self._output: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            worker_command(double.url, self.identity.private_key.hex(), PAYMENT, 2, *options),
            stdout=self._output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=isolated_environment(home),
            text=True,
        )

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def finish(self) -> None:
        """Stop the worker as an operator does (SIGINT) and check that it exits with status 0."""
        self.signal(signal.SIGINT)
        assert self.wait() == 0, self.output()

    def output(self) -> str:
        self._output.seek(0)
        return self._output.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._output.close()


@pytest.fixture
def start_worker(scheduler_double: SchedulerDouble, tmp_path: Path) -> Iterator[type[WorkerProcess]]:
    started: list[WorkerProcess] = []

    class Started(WorkerProcess):
        def __init__(self, double: SchedulerDouble, *options: str) -> None:
            super().__init__(double, tmp_path, *options)
            started.append(self)

    yield Started
    for worker in started:
        worker.stop()


def results(double: SchedulerDouble, job_id: str, count: int, timeout: float = 60) -> None:
    double.wait_events(lambda e: e.get("event") == "result" and e.get("jobId") == job_id, count, timeout)


def working_on(
    double: SchedulerDouble, start_worker: type[WorkerProcess], source: str, slices: int, per_task: int = 10
) -> tuple[str, WorkerProcess]:
    """A job of ``slices`` slices (data 1..slices), and a worker on it that has submitted a result."""
    job = double.add_job(source, list(range(1, slices + 1)), slices_per_task=per_task)
    worker = start_worker(double)
    results(double, job, 1)
    return job, worker
