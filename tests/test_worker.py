"""``dcp-worker`` against the scheduler double serving real jobs, run as a real subprocess."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest
from cli_run import one_line_error, run_cli
from process_tree import sandbox_hosts
from scheduler_double import SchedulerDouble
from worker_process import PAYMENT, SLOW, SQUARE, WorkerProcess, results, working_on

from dcp_worker.worker.compute_groups import PUBLIC_GROUP, eh1
from dcp_worker.worker.result_lanes import MAX_LANES


def test_a_job_completes_with_every_slice_submitted_once(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    job = scheduler_double.add_job(SQUARE, list(range(1, 31)), slices_per_task=8)
    worker = start_worker(scheduler_double)
    results(scheduler_double, job, 30)
    worker.finish()
    assert_squares_submitted_once(scheduler_double, job, 30, worker)
    assert len(result_sessions(scheduler_double)) == 1  # too few results at once for a second lane


def assert_squares_submitted_once(double: SchedulerDouble, job: str, count: int, worker: WorkerProcess) -> None:
    status = double.job_status(job)
    assert status["done"] == {n: n * n for n in range(1, count + 1)}
    assert set(status["submissions"].values()) == {1}
    assert status["held"] == [] and status["pending"] == []
    assert f"Worker has stopped: {count} slices submitted, 0 returned" in worker.output()


def test_a_second_job_gets_the_places_of_the_first_jobs_idle_sandboxes(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    first = scheduler_double.add_job(SLOW, list(range(1, 5)))
    worker = start_worker(scheduler_double)
    scheduler_double.wait_job_done(first, timeout=60)
    # The first job's two hosts stand idle, warm; the second job's must take their places.
    second = scheduler_double.add_job(SLOW, list(range(1, 5)))
    state = scheduler_double.wait_job_done(second, timeout=60)
    assert state["done"] == {n: -n for n in range(1, 5)}
    assert len(sandbox_hosts(worker.proc.pid)) <= 2  # --maxSandboxes 2, over both jobs
    worker.finish()


def result_sessions(double: SchedulerDouble) -> set[str]:
    """The sessions over which the double was sent results."""
    return {
        str(event["dcpsid"])
        for event in double.events()
        if event.get("event") == "request" and event.get("operation") == "result"
    }


def test_results_faster_than_one_session_answers_take_a_second_session(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    # Tasks of 200 trivial slices finish within milliseconds, far faster than one session's answers.
    job = scheduler_double.add_job(SQUARE, list(range(1, 601)), slices_per_task=200, delivery="data")
    worker = start_worker(scheduler_double)
    results(scheduler_double, job, 600)
    worker.finish()
    assert_squares_submitted_once(scheduler_double, job, 600, worker)
    assert len(result_sessions(scheduler_double)) == MAX_LANES


def test_data_uris_and_arguments(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    job = scheduler_double.add_job(
        "function (x, scale, label) { progress(); return {label, value: x * scale}; }",
        [1, 2, 3],
        arguments=[10, "é"],
        delivery="data",
    )
    worker = start_worker(scheduler_double)
    results(scheduler_double, job, 3)
    worker.finish()
    assert scheduler_double.job_status(job)["done"] == {n: {"label": "é", "value": n * 10} for n in (1, 2, 3)}


def test_the_task_request_carries_groups_jobs_and_wage(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    job = scheduler_double.add_job(SQUARE, [1, 2])
    worker = start_worker(scheduler_double, "--join", "scott,tiger", "-j", job, "--config", "/dev/null")
    results(scheduler_double, job, 2)
    worker.finish()
    request = scheduler_double.task_requests()[0]
    data, dcpsid = request["data"], request["dcpsid"]
    assert data["jobIds"] == [job]
    assert data["workerComputeGroups"] == [
        {"joinKey": "scott", "joinHashHash": eh1(dcpsid + eh1("scott tiger"))},
        {"joinKey": "public", "joinHashHash": eh1(dcpsid + PUBLIC_GROUP.join_hash)},
    ]
    assert data["minimumWage"] == {"CPU": 0, "GPU": 0, "in": 0, "out": 0}
    assert data["paymentAddress"] == PAYMENT
    assert data["capabilities"] & 64  # KVIN v9
    assert data["worktimes"] == [{"name": "map-basic", "version": "1.0.0"}]
    assert data["fetchState"] & 1


def test_a_bad_datum_costs_only_its_slice(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    job = scheduler_double.add_job(SQUARE, [1, 2, 3, 4], faults={"badDatum": [2]})
    worker = start_worker(scheduler_double)
    results(scheduler_double, job, 3)
    scheduler_double.wait_event(lambda e: e.get("event") == "return")
    worker.finish()
    status = scheduler_double.job_status(job)
    assert status["done"] == {1: 1, 3: 9, 4: 16}
    # The double hands a returned slice out again, and the worker refuses it again each time.
    assert {r["sliceNumber"] for r in status["returns"]} == {2}
    assert status["submissions"].get(2) is None
    assert "Slice 2" in worker.output() and "not KVIN" in worker.output()


@pytest.mark.parametrize(("signum", "soft"), [(signal.SIGINT, True), (signal.SIGQUIT, False)])
def test_a_stop_signal_leaves_every_slice_submitted_or_returned_once(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess], signum: int, soft: bool
) -> None:
    job, worker = working_on(scheduler_double, start_worker, SLOW, 40, per_task=40)
    worker.signal(signum)
    assert worker.wait() == 0, worker.output()
    status = scheduler_double.job_status(job)
    done, returned = set(status["done"]), {r["sliceNumber"] for r in status["returns"]}
    assert status["held"] == []
    assert done | returned == set(range(1, 41))
    assert set(status["submissions"].values()) == {1}
    if soft:
        assert done.isdisjoint(returned)
    assert len(done) < 40  # the signal did stop the work


@pytest.mark.parametrize(
    ("args", "words", "status"),
    [
        ((), "id.keystore: no such keystore", 5),  # dcp-worker's status for an unreadable keystore
        (("--identityKey", "11" * 32), "no payment address: give --paymentAddress", 1),
        (("--identityKey", "zz"), "64 hexadecimal digits", 5),
        (("--maxSandboxes", "-1"), "maxSandboxes: expected a whole number of at least 0", 1),
        (("--paymentAddress", "0x12"), "paymentAddress: not an Ethereum address", 1),
        (("--join", "nosecret"), "join: expected joinKey,joinSecret", 1),
        (("--output", "dashboard", "--identityKey", "11" * 32), "--output dashboard needs a terminal", 1),
        (("--output", "syslog", "--syslogTransport", "unix", "--syslogAddress", "/nonexistent/log"),
         "cannot reach syslog at unix /nonexistent/log", 1),
        (("--output", "syslog", "--syslogTransport", "tcp", "--syslogAddress", "127.0.0.1", "--syslogPort", "9"),
         "cannot reach syslog at tcp 127.0.0.1:9", 1),
        (("--showConfig", "nonsense"), "no setting 'nonsense'", 1),
        (("--config", "/nonexistent.toml"), "no such configuration file", 1),
    ],
)
def test_bad_starts_are_one_line_errors(tmp_path: Path, args: tuple[str, ...], words: str, status: int) -> None:
    assert words in one_line_error(run_cli(tmp_path, *args), status)


def test_show_and_dump_config(tmp_path: Path) -> None:
    (tmp_path / "etc" / "dcp-worker").mkdir(parents=True)
    (tmp_path / "etc" / "dcp-worker" / "config.toml").write_text("maxSandboxes = 3\n")
    shown = run_cli(tmp_path, "--showConfig", "maxSandboxes")
    assert shown.returncode == 0
    assert shown.stdout.strip() == f"maxSandboxes = 3  # {tmp_path / 'etc' / 'dcp-worker' / 'config.toml'}"
    dumped = run_cli(tmp_path, "--dumpConfig", "-c", "2,1", "-j", "a", "-j", "b")
    settings = json.loads(dumped.stdout)
    assert settings["cores"] == {"cpu": 2.0, "gpu": 1.0} and settings["jobIds"] == ["a", "b"]
    assert settings["maxSandboxes"] == 3


def test_a_connection_dropped_mid_result_loses_and_repeats_nothing(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    job = scheduler_double.add_job(
        SQUARE, list(range(1, 21)), slices_per_task=5, faults={"dropOnFirstResult": True}
    )
    worker = start_worker(scheduler_double)
    results(scheduler_double, job, 20)
    worker.finish()
    status = scheduler_double.job_status(job)
    assert status["done"] == {n: n * n for n in range(1, 21)}
    assert set(status["submissions"].values()) == {1}
    assert scheduler_double.wait_event("disconnect")


def test_slow_artifacts_are_waited_for(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    job = scheduler_double.add_job(
        SQUARE,
        [1, 2, 3],
        faults={"artifacts": {"work-function.js": {"delayMs": 1500}, "slice/2": {"delayMs": 1000}}},
    )
    worker = start_worker(scheduler_double)
    results(scheduler_double, job, 3)
    worker.finish()
    assert scheduler_double.job_status(job)["done"] == {1: 1, 2: 4, 3: 9}


def test_a_missing_work_function_returns_the_jobs_slices(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    job = scheduler_double.add_job(
        SQUARE, [1, 2], faults={"artifacts": {"work-function.js": {"status": 404}}}
    )
    worker = start_worker(scheduler_double)
    scheduler_double.wait_events(lambda e: e.get("event") == "return", 1, timeout=30)
    worker.finish()
    status = scheduler_double.job_status(job)
    assert status["held"] == [] and status["done"] == {}
    assert all("EJOBFETCH" in str(r["reason"]) for r in status["returns"])
    assert "HTTP 404" in worker.output()


def test_help_lists_the_official_options_with_their_defaults(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--help")
    assert result.returncode == 0
    # One entry an option, its wrapped help lines joined.
    entries = [" ".join(entry.split()) for entry in re.split(r"\n  (?=-)", result.stdout)]
    without_default = {
        "--join",
        "--allowedOrigins",
        "--identityKey",
        "--reportInterval",
        "--showConfig",
        "--dumpConfig",
    }
    for option in (
        "--paymentAddress", "--cores", "--utilization", "--maxSandboxes", "--verbose", "--output", "--join",
        "--leavePublicGroup", "--publicGroupFallback", "--job-id", "--allowedOrigins", "--identityKey",
        "--identityKeystore", "--reportInterval", "--logfile", "--syslogAddress", "--syslogFacility",
        "--syslogTransport", "--syslogPort", "--pidFile", "--showConfig", "--dumpConfig", "--scheduler",
    ):  # fmt: skip
        [entry] = [entry for entry in entries if re.match(rf"(-\w, )?{option}\b", entry)]
        assert option in without_default or "[default:" in entry, entry


def test_the_pid_file_is_held_for_the_run(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess], tmp_path: Path
) -> None:
    pid_file = tmp_path / "worker.pid"
    job = scheduler_double.add_job(SQUARE, [1])
    worker = start_worker(scheduler_double, "--pidFile", str(pid_file))
    results(scheduler_double, job, 1)
    assert pid_file.read_text() == f"{worker.proc.pid}\n"
    refused = run_cli(
        tmp_path, "--pidFile", str(pid_file), "--identityKey", "11" * 32, "--paymentAddress", PAYMENT
    )
    assert f"process {worker.proc.pid} is still running" in one_line_error(refused, 1)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert not pid_file.exists()


def test_sighup_reopens_the_log_file(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess], tmp_path: Path
) -> None:
    log_file, rotated = tmp_path / "worker.log", tmp_path / "worker.log.1"
    job = scheduler_double.add_job(SQUARE, [1])
    worker = start_worker(scheduler_double, "--output", "logfile", "--logfile", str(log_file))
    results(scheduler_double, job, 1)
    log_file.rename(rotated)
    worker.signal(signal.SIGHUP)  # delivered before the SIGINT: lower signals first
    worker.finish()
    assert "Starting DCP Worker" in rotated.read_text()
    reopened = log_file.read_text()
    assert "reopened" in reopened and "Worker has stopped: 1 slices submitted" in reopened


def test_an_unreachable_scheduler_is_one_line_after_the_banner(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path,
        "--scheduler",
        "http://127.0.0.1:9/",
        "--identityKey",
        "11" * 32,
        "--paymentAddress",
        PAYMENT,
    )
    assert result.returncode == 1  # dcp-worker's status when the scheduler's configuration cannot be had
    assert "Starting DCP Worker" in result.stdout
    assert " . Sandbox lockdown: " in result.stdout  # the walls this machine gives sandbox hosts
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "dcp-worker: error: cannot fetch the scheduler's configuration at http://127.0.0.1:9/etc/"
    )


def test_required_lockdown_refuses_to_start_without_it(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path,
        "--require-lockdown",
        "--identityKey",
        "11" * 32,
        "--paymentAddress",
        PAYMENT,
        DCP_WORKER_NO_LOCKDOWN="1",
    )
    assert "lockdown" in one_line_error(result, 1)
