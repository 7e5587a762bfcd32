"""dcp-client 5.6.1's own worker (tests/scheduler/official_worker.js) against the scheduler double.

This is the proof that the double serves jobs as a DCP scheduler does: the reference worker fetches
tasks from it, fetches the work function, arguments and data it names, submits results it accepts.
The official worker runs as an unprivileged user when the tests run as root (its node evaluator
refuses root); the tests skip, saying why, when no such user can be had.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from official_worker import (
    OFFICIAL_WORKER_SCRIPT,
    OfficialWorker,
    OfficialWorkerUnavailable,
    WorkerFactory,
    check_readable,
    describe,
    ensure_unprivileged_user,
)
from scheduler_double import Delivery, SchedulerDouble

from dcp_worker import kvin
from dcp_worker.jsvalues import JSError

SQUARE = "function (x) { progress(); return x * x; }"


def report(what: str, worker: OfficialWorker, slices: int) -> None:
    """Print the run's timings (shown with pytest -s; the numbers go in reports)."""
    summary = describe(worker)
    first, last = worker.seconds_to("result"), worker.seconds_to("result", slices)
    rate = (slices - 1) / (last - first) if first is not None and last is not None and last > first else 0.0
    print(
        f"\n{what}: ready after {summary['startup_seconds']:.2f} s, first result after "
        f"{summary['first_result_seconds']:.2f} s, {rate:.1f} slices/s after that, "
        f"peak RSS {summary['peak_rss_mib']:.0f} MiB",
        file=sys.stderr,
    )


@pytest.mark.parametrize("delivery", ["http", "data"])
def test_official_worker_completes_a_job(
    scheduler_double: SchedulerDouble, official_workers: WorkerFactory, delivery: Delivery
) -> None:
    double = scheduler_double
    job_id = double.add_job(SQUARE, list(range(1, 21)), delivery=delivery, slices_per_task=20)
    worker = official_workers(double.url, cores=2)  # two sandboxes: the worker's own delays overlap
    results = worker.wait_results(20, timeout=90)
    assert sorted(event["sliceNumber"] for event in results) == list(range(1, 21))
    assert {event["jobId"] for event in results} == {job_id}

    status = double.wait_job_done(job_id, timeout=10)
    assert status["done"] == {n: n * n for n in range(1, 21)}
    assert status["submissions"] == dict.fromkeys(range(1, 21), 1)  # every slice exactly once
    assert status["begins"] == dict.fromkeys(range(1, 21), 1)
    assert status["pending"] == [] and status["held"] == [] and status["returns"] == []
    for record in status["results"]:
        assert record["authorizationOk"], record
        assert record["workerId"] == worker.worker_id
        assert record["paymentAddress"] == worker.payment_address
        assert record["decodeError"] is None
    if delivery == "http":
        assert status["fetches"]["work-function.js"] >= 1
        assert all(status["fetches"][f"slice/{n}"] == 1 for n in range(1, 21))
    else:
        assert status["fetches"] == {}  # data: URIs only, nothing fetched over HTTP

    first = status["taskRequests"][0]
    assert first["fetchState"] & 1  # a normal fetch (the first also has startupCheck, 4)
    assert first["capabilities"] & 64  # KVINv9
    assert first["paymentAddress"] == worker.payment_address
    assert first["jobIds"] == []
    assert first["coreStats"]["worker"] == worker.worker_id
    assert first["workerComputeGroups"][0]["joinKey"] == "public"
    assert {"CPU", "GPU", "in", "out"} <= set(first["minimumWage"])
    assert {"cpu", "gpu", "longSlices"} <= set(first["targetLoad"])

    payments = [event for event in worker.events() if event.get("event") == "payment"]
    assert len(payments) == 20 and all(p["amount"] == "0.000001" for p in payments)
    report(f"official worker, delivery {delivery}", worker, 20)
    worker.stop()
    assert worker.wait_event("end")["event"] == "end"
    assert [e for e in worker.events() if e.get("event") == "error"] == []


def test_official_worker_options_identity_payment_address_and_job_ids(
    scheduler_double: SchedulerDouble, official_workers: WorkerFactory, tmp_path: Path
) -> None:
    double = scheduler_double
    keystore = tmp_path / "worker.keystore"
    identity = double.keystore_new(keystore, "worker passphrase")
    payment_address = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
    other = double.add_job(SQUARE, [1, 2])
    wanted = double.add_job("function (x, k) { progress(); return x + k; }", [1, 2, 3], arguments=[100])
    worker = official_workers(
        double.url,
        identity_keystore=keystore,
        passphrase="worker passphrase",
        payment_address=payment_address,
        job_ids=[wanted],
    )
    assert (worker.identity, worker.payment_address) == (identity, payment_address)
    assert double.wait_job_done(wanted, timeout=60)["done"] == {1: 101, 2: 102, 3: 103}
    worker.stop()
    assert double.job_status(other)["pending"] == [1, 2]  # never handed out
    requests = double.task_requests()
    assert all(r["data"]["jobIds"] == [wanted] for r in requests if r["data"]["fetchState"] & 1)
    assert {r["owner"] for r in requests} == {identity}  # the sessions are the worker identity's
    assert {r["paymentAddress"] for r in double.job_status(wanted)["results"]} == {payment_address}


def test_official_worker_returns_what_it_holds_when_stopped(
    scheduler_double: SchedulerDouble, official_workers: WorkerFactory
) -> None:
    double = scheduler_double
    job_id = double.add_job(SQUARE, list(range(1, 21)), slices_per_task=20)
    worker = official_workers(double.url)
    worker.wait_results(2, timeout=60)
    worker.stop()  # graceful: finish what is being worked on, return the rest (fetchState 16)
    status = double.job_status(job_id)
    assert status["held"] == []
    assert sorted([*status["pending"], *status["done"]]) == list(range(1, 21))  # nothing lost
    assert set(status["submissions"].values()) == {1}
    assert status["pending"] and {r["reason"] for r in status["returns"]} == {"returnAllSlices"}
    assert status["taskRequests"][-1]["fetchState"] == 16


def test_official_worker_resumes_after_the_socket_drops_under_a_result(
    scheduler_double: SchedulerDouble, official_workers: WorkerFactory
) -> None:
    double = scheduler_double
    job_id = double.add_job(SQUARE, list(range(1, 9)), slices_per_task=8, faults={"dropOnFirstResult": True})
    worker = official_workers(double.url, cores=2)
    worker.wait_results(8, timeout=60)
    status = double.wait_job_done(job_id, timeout=10)
    assert status["submissions"] == dict.fromkeys(range(1, 9), 1)
    assert status["done"] == {n: n * n for n in range(1, 9)}
    assert double.wait_event("disconnect")  # the drop happened


def test_official_worker_returns_a_slice_whose_datum_is_not_kvin(
    scheduler_double: SchedulerDouble, official_workers: WorkerFactory
) -> None:
    double = scheduler_double
    job_id = double.add_job(SQUARE, list(range(1, 6)), slices_per_task=5, faults={"badDatum": [3]})
    worker = official_workers(double.url, cores=2)
    returned = double.wait_event(
        lambda e: e.get("event") == "return" and e["slices"] == {job_id: [3]}, timeout=60
    )
    assert returned["reason"] == "EFETCH"
    # Served again and again, the slice fails again and again; in one CI run that churn ended with
    # dcp-client's in-process evaluator dying of an assign-time error it cannot report (a reference
    # bug, dcp-evaluator-protocol.md §4.2). So the datum is good from now on.
    double.fault(job_id, badDatum=None)
    status = double.wait_job_done(job_id, timeout=60)
    worker.stop()
    assert status["done"] == {n: n * n for n in range(1, 6)}
    assert status["submissions"] == dict.fromkeys(range(1, 6), 1)
    assert status["pending"] == [] and status["held"] == []
    error = next(e for e in status["emits"] if e["eventName"] == "error")
    assert error["sliceNumber"] == 3 and error["payload"]["code"] == "EFETCH"


# -- running as root -----------------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root needs (and can make) another user")


@needs_root
def test_the_runner_refuses_root_with_a_reason() -> None:
    node = shutil.which("node")
    assert node is not None
    finished = subprocess.run(
        [node, str(OFFICIAL_WORKER_SCRIPT), "http://127.0.0.1:9/"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert finished.returncode == 3
    fatal = json.loads(finished.stdout.decode().splitlines()[0])
    assert fatal["event"] == "fatal" and "refuses to run as root" in fatal["error"]


@needs_root
def test_without_useradd_a_missing_user_is_a_reason_to_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(OfficialWorkerUnavailable, match="useradd is not available"):
        ensure_unprivileged_user("dcp-no-such-user")


@needs_root
def test_an_unreadable_path_is_a_reason_to_skip() -> None:
    try:
        account = ensure_unprivileged_user()
    except OfficialWorkerUnavailable as exc:
        pytest.skip(str(exc))
    assert account is not None and account.pw_uid != 0
    base = Path(tempfile.mkdtemp(prefix="dcp-readable-"))  # under /tmp: every component traversable
    base.chmod(0o711)
    try:
        check_private_paths(account, base)
    finally:
        shutil.rmtree(base)


def check_private_paths(account: pwd.struct_passwd, base: Path) -> None:
    private = base / "private"
    private.mkdir(mode=0o700)
    (private / "file.js").write_text("1")
    with pytest.raises(OfficialWorkerUnavailable, match="cannot enter"):
        check_readable(account, [private / "file.js"])
    private.chmod(0o711)
    (private / "file.js").chmod(0o600)
    with pytest.raises(OfficialWorkerUnavailable, match="cannot read"):
        check_readable(account, [private / "file.js"])
    (private / "file.js").chmod(0o644)
    check_readable(account, [private / "file.js"])


def test_official_worker_submits_a_thrown_error_as_the_result(
    scheduler_double: SchedulerDouble, official_workers: WorkerFactory
) -> None:
    """What this worker does too (tests/test_worker_reports.py): errors as results, and a workEmit."""
    double = scheduler_double
    job_id = double.add_job(
        "function (x) { progress(); if (x === 2) throw new TypeError('two ' + x); return x; }",
        [1, 2, 3],
        slices_per_task=3,
    )
    worker = official_workers(double.url, cores=2)
    worker.wait_results(3, timeout=90)
    worker.stop()
    status = double.job_status(job_id)
    assert status["submissions"] == {1: 1, 2: 1, 3: 1}
    error = kvin.deserialize(status["doneKvin"][2] or "")
    assert isinstance(error, JSError)
    assert (error.name, error.message, error.props.get("errorCode")) == ("TypeError", "two 2", "EUNCAUGHT")
    emitted = next(e for e in status["emits"] if e["eventName"] == "error")
    assert emitted["sliceNumber"] == 2 and emitted["payload"]["code"] == "EUNCAUGHT"
    assert emitted["payload"]["name"] == "TypeError" and emitted["payload"]["message"] == "two 2"
