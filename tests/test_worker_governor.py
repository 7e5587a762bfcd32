"""The governor inside a working worker: a pause holds the sandboxes and gives the slices back,
a resume fetches again, and nothing is lost or done twice."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from cli_run import run_cli
from scheduler_double import SchedulerDouble
from worker_process import WorkerProcess, results

# A second a slice, so that a pause finds slices running and slices waiting.
SLOW = "function (x) { progress(); const end = Date.now() + 1000; while (Date.now() < end) {} return -x; }"


def control(home: Path, command: str) -> dict[str, object]:
    answer = run_cli(home, command, "--json")
    assert answer.returncode == 0, answer.stderr
    loaded: dict[str, object] = json.loads(answer.stdout)
    return loaded


def test_a_pause_gives_slices_back_and_a_resume_finishes_the_job(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess], tmp_path: Path
) -> None:
    double = scheduler_double
    job = double.add_job(SLOW, list(range(1, 21)), slices_per_task=10)
    worker = start_worker(double, "--resumeWithin", "1", "--governorInterval", "0.2")
    results(double, job, 2)
    paused = control(tmp_path, "pause")
    governor = paused["governor"]
    assert isinstance(governor, dict) and governor["paused"] and governor["fetch"] is False
    given_back = double.wait_event(
        lambda e: e.get("event") == "return" and e["reason"] == "Worker paused", timeout=30
    )
    assert given_back["slices"][job]
    done_while_paused = len(double.job_status(job)["done"])
    resumed = control(tmp_path, "resume")
    assert resumed["governor"]["paused"] is False
    results(double, job, 20, timeout=120)
    worker.finish()
    status = double.job_status(job)
    assert status["done"] == {n: -n for n in range(1, 21)}
    assert set(status["submissions"].values()) == {1}
    assert done_while_paused < 20
    paused_returns = {r["sliceNumber"] for r in status["returns"] if r["reason"] == "Worker paused"}
    assert paused_returns  # given back, then done once each after the resume
    assert " * Governor: paused: paused by its owner (dcp-worker pause)" in worker.output()


def test_sigusr1_pauses_and_sigusr2_resumes(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess], tmp_path: Path
) -> None:
    double = scheduler_double
    job = double.add_job(SLOW, list(range(1, 7)), slices_per_task=3)
    worker = start_worker(double, "--governorInterval", "0.2")
    results(double, job, 1)
    worker.signal(signal.SIGUSR1)
    status = control(tmp_path, "status")
    assert status["governor"]["paused"] is True
    worker.signal(signal.SIGUSR2)
    results(double, job, 6, timeout=60)
    worker.finish()
    assert double.job_status(job)["done"] == {n: -n for n in range(1, 7)}


def test_stopping_a_paused_worker_returns_its_slices_at_once(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess], tmp_path: Path
) -> None:
    double = scheduler_double
    job = double.add_job(SLOW, list(range(1, 11)), slices_per_task=10)
    worker = start_worker(double, "--governorInterval", "0.2")
    results(double, job, 1)
    assert control(tmp_path, "pause")["governor"]["paused"] is True
    worker.signal(signal.SIGINT)  # slices in stopped sandboxes would never finish
    assert worker.wait(timeout=30) == 0, worker.output()
    status = double.job_status(job)
    assert status["held"] == []
    assert sorted([*status["done"], *status["pending"]]) == list(range(1, 11))
    assert set(status["submissions"].values()) == {1}
    assert "The governor holds sandboxes stopped; returning their slices now" in worker.output()
