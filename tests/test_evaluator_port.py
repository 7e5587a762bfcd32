"""``dcp-worker evaluator --port``: dcp-client 5.6.1's own worker runs jobs on it, over its standalone
(TCP) evaluator connection, against the scheduler double, with the results it gets from its own
node evaluator (``evaluator-node.js``); and the server outlives what its connections do.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_run import one_line_error, run_cli
from evaluator_peer import ACK, PortEvaluator, SocketPeer, assign, begin_slice, job, request_name, start
from official_worker import WorkerFactory
from process_tree import sandbox_hosts
from scheduler_double import JobStatus, SchedulerDouble

from dcp_worker import kvin
from dcp_worker.jsvalues import JSError

JOBS: dict[str, tuple[str, list[Any], list[Any] | None]] = {
    "square": ("function (x) { progress(); return x * x; }", list(range(1, 9)), None),
    "arguments": (
        "function (x, k) { progress(0.5); console.log('x is', x); return { sum: x + k, parts: [x, k], half: x / 2 }; }",
        [1, 2, 3],
        [100],
    ),
    "async": (
        "async function (x) { progress(); await new Promise((r) => setTimeout(r, 5)); return String(x).repeat(2); }",
        ["a", "b"],
        None,
    ),
    "throws": (
        "function (x) { progress(); if (x === 2) throw new TypeError('two ' + x); return x; }",
        [1, 2, 3],
        None,
    ),
    "emits": ("function (x) { progress(); work.emit('hit', { x: x }); return -x; }", [1, 2], None),
    # The official worker allows no origin for a work function's fetch: the supervisor refuses it.
    "fetch": (
        "async function (x) { progress(); try { await fetch('http://127.0.0.1:9/' + x); return 'fetched'; }"
        " catch (e) { return [e.name, e.code, e.message]; } }",
        [1],
        None,
    ),
}
BUSY = "function (x) { progress(); const end = Date.now() + x; while (Date.now() < end); return x; }"


@pytest.fixture
def evaluator() -> Iterator[PortEvaluator]:
    with PortEvaluator() as started:
        yield started


def summary(event: dict[str, Any]) -> str:
    payload = event["payload"]
    if event["eventName"] == "console":
        return str(payload["level"])
    return repr({key: value for key, value in payload.items() if key != "jobName"})


def outcome(status: JobStatus) -> dict[str, Any]:
    """What a job's owner sees: each slice's result (an error as name, message and code), and the
    events emitted to it (console output by slice and level, other events whole)."""
    results = {}
    for number, value in status["done"].items():
        text = status["doneKvin"].get(number)
        error = kvin.deserialize(text) if text else None
        results[number] = (
            (error.name, error.message, error.props.get("errorCode")) if isinstance(error, JSError) else value
        )
    events = sorted(
        (event["sliceNumber"], event["eventName"], summary(event))
        for event in status["emits"]
        if event["eventName"] != "error"  # an error's stack names the evaluator's files
    )
    return {"results": results, "events": events}


def run_jobs(double: SchedulerDouble, worker_factory: WorkerFactory, **options: Any) -> dict[str, Any]:
    """Every job of JOBS run by one official worker; each job's ``outcome``."""
    ids = {
        name: double.add_job(source, data, arguments=arguments, slices_per_task=len(data))
        for name, (source, data, arguments) in JOBS.items()
    }
    worker = worker_factory(double.url, cores=2, job_ids=list(ids.values()), **options)
    for job_id in ids.values():
        double.wait_job_done(job_id, timeout=120)
    worker.stop()
    assert [e for e in worker.events() if e.get("event") == "error"] == []
    return {name: outcome(double.job_status(job_id)) for name, job_id in ids.items()}


def test_the_official_worker_gets_the_same_results_from_us_as_from_its_own_evaluator(
    scheduler_double: SchedulerDouble, official_workers: WorkerFactory, evaluator: PortEvaluator
) -> None:
    ours = run_jobs(scheduler_double, official_workers, evaluator=evaluator.address)
    assert ours["square"]["results"] == {n: n * n for n in range(1, 9)}
    assert ours["arguments"]["results"][3] == {"sum": 103, "parts": [3, 100], "half": 1.5}
    assert ours["async"]["results"] == {1: "aa", 2: "bb"}
    assert ours["throws"]["results"][2] == ("TypeError", "two 2", "EUNCAUGHT")
    assert ours["fetch"]["results"][1][:2] == ["DCPError", "EPERM_ORIGIN"]
    reference = run_jobs(scheduler_double, official_workers)
    assert ours == reference
    assert evaluator.proc.poll() is None


def test_the_official_worker_loads_a_jobs_modules_through_our_evaluator(
    scheduler_double: SchedulerDouble, official_workers: WorkerFactory, evaluator: PortEvaluator
) -> None:
    """The dependency/moduleGroup exchange, with dcp-client's supervisor fetching the modules
    (fetchModuleURL). dcp-client's own sandbox cannot run this job: the double serves plain
    CommonJS by job, where it expects BravoJS module.declare sources by package."""
    double = scheduler_double
    job_id = double.add_job(
        "function (x) { progress(); return require('mymod').f(x); }",
        [1, 2],
        modules={"mymod": "exports.f = function (x) { return x * 7; };"},
    )
    official_workers(double.url, job_ids=[job_id], evaluator=evaluator.address)
    assert double.wait_job_done(job_id, timeout=60)["done"] == {1: 7, 2: 14}


def test_connections_beyond_the_limit_are_refused() -> None:
    with PortEvaluator("--max-connections", "1") as evaluator, SocketPeer(evaluator.port) as first:
        start(first)  # the one sandbox is in use
        with SocketPeer(evaluator.port) as second:
            assert second.line(timeout=30) == ("EOF", "")
        start(first)  # unaffected
        first.close()
        deadline = time.monotonic() + 30
        while True:  # the first connection's session ends on its own schedule; retry until it has
            with SocketPeer(evaluator.port) as third:
                third.request({"request": "describe"})
                if third.line(timeout=30) != ("EOF", ""):
                    break
            assert time.monotonic() < deadline, "the freed slot was never reused"
        assert any("refused a connection" in line for line in evaluator.stderr_lines)


def test_the_governor_refuses_sandboxes_while_paused_and_gives_running_ones_back(tmp_path: Path) -> None:
    config = tmp_path / "governor.toml"
    config.write_text("governorInterval = 0.2\nresumeWithin = 1\n")
    with (
        PortEvaluator("--config", str(config), home=tmp_path) as evaluator,
        SocketPeer(evaluator.port) as running,
    ):
        start(running)
        assert assign(running, job(BUSY))[1]["request"] == "assigned"
        begin_slice(running, 60_000)
        assert running.message() == ACK  # the slice runs, for a minute
        paused = run_cli(tmp_path, "pause", "--json")
        assert paused.returncode == 0, paused.stderr
        answer = json.loads(paused.stdout)
        assert answer["governor"]["paused"] is True
        assert answer["evaluator"] == {
            "connections": 1,
            "maxConnections": 16,
            "accepting": False,
            "refused": 0,
        }
        with SocketPeer(evaluator.port) as refused:
            assert refused.line(timeout=30) == ("EOF", "")
        # Paused for longer than resumeWithin: the connection is closed, and its supervisor
        # returns the slice it had running there.
        closed = running.until(lambda line: line[0] == "EOF")
        assert closed[-1] == ("EOF", "")
        assert [request_name(line) for line in closed if request_name(line)] == ["progress"]  # no end
        resumed = run_cli(tmp_path, "resume", "--json")
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["governor"]["paused"] is False
        with SocketPeer(evaluator.port) as accepted:
            start(accepted)
        assert evaluator.proc.poll() is None
    said = "".join(evaluator.stderr_lines)
    assert "refused a connection: the governor says to take no work now" in said
    assert "closed a connection: the governor gives work back" in said


def test_a_supervisor_leaving_mid_slice_does_not_take_the_evaluator_with_it(evaluator: PortEvaluator) -> None:
    with SocketPeer(evaluator.port) as leaving:
        start(leaving)
        assert assign(leaving, job(BUSY))[1]["request"] == "assigned"
        begin_slice(leaving, 60_000)
        assert leaving.message() == ACK  # the slice is running, and will for a minute
    with SocketPeer(evaluator.port) as staying:
        start(staying)
        assert assign(staying, job(BUSY))[1]["request"] == "assigned"
        begin_slice(staying, 1)
        lines = staying.until(lambda line: request_name(line) == "complete", timeout=30)
        assert request_name(lines[-1]) == "complete"
    assert evaluator.proc.poll() is None
    # Both sessions' hosts end (the busy one killed after a short grace); the spare remains.
    deadline = time.monotonic() + 30
    while len(sandbox_hosts(evaluator.proc.pid)) > 1:
        assert time.monotonic() < deadline, sandbox_hosts(evaluator.proc.pid)
        time.sleep(0.1)


def test_hostile_lines_over_tcp_leave_the_connection_serving(evaluator: PortEvaluator) -> None:
    with SocketPeer(evaluator.port) as peer:
        peer.write_raw(b"\xff\xfe not json\n")
        assert peer.message(timeout=60)["step"] == "parseInput::parse"
        peer.send({"type": "unknownType"})
        assert peer.message()["exception"]["message"] == "Invalid message type 'unknownType'"
        start(peer)


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_cli(tmp_path, "evaluator", "--port", str(port), "--listen", "127.0.0.1")
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(busy)
    assert "exclusive" in one_line_error(run_cli(tmp_path, "evaluator", "--stdio", "--port", "9000"))
    assert "--max-connections" in one_line_error(
        run_cli(tmp_path, "evaluator", "--port", "0", "--max-connections", "0")
    )
    assert "--port" in one_line_error(run_cli(tmp_path, "evaluator", "--port", "70000"))
    assert "--config goes with --port" in one_line_error(
        run_cli(tmp_path, "evaluator", "--stdio", "--config", str(tmp_path / "x.toml"))
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("maxLoad = 'lots'\n")
    assert "maxLoad" in one_line_error(run_cli(tmp_path, "evaluator", "--port", "0", "--config", str(bad)))
