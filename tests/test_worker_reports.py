"""What the worker reports about slices besides results: errors, console output, events,
metrics, held slices (Soteria); and what tasks may change: granted origins, the public group."""

from __future__ import annotations

import json
from typing import Any

from scheduler_double import SchedulerDouble
from worker_process import WorkerProcess, results

from dcp_worker import kvin
from dcp_worker.jsvalues import JSError
from dcp_worker.worker.compute_groups import PUBLIC_GROUP, eh1


def unmarshal(envelope: Any) -> Any:
    return kvin.deserialize(json.dumps(envelope))


def emits_of(double: SchedulerDouble, job_id: str, event: str) -> list[dict[str, Any]]:
    return [emit for emit in double.job_status(job_id)["emits"] if emit["eventName"] == event]


def stop(worker: WorkerProcess) -> None:
    worker.finish()


def test_a_work_function_that_throws_has_its_error_as_result(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    double = scheduler_double
    job = double.add_job(
        "function (x) { progress(); if (x === 2) throw new TypeError('two ' + x); return x; }", [1, 2, 3]
    )
    worker = start_worker(double)
    results(double, job, 3)
    worker.finish()
    status = double.job_status(job)
    assert status["submissions"] == {1: 1, 2: 1, 3: 1} and status["returns"] == []
    error = kvin.deserialize(status["doneKvin"][2] or "")
    assert isinstance(error, JSError)
    assert (error.name, error.message, error.props["errorCode"]) == ("TypeError", "two 2", "EUNCAUGHT")
    (emitted,) = emits_of(double, job, "error")
    payload = emitted["payload"]
    assert isinstance(payload, dict) and emitted["sliceNumber"] == 2
    assert payload["name"] == "TypeError" and payload["message"] == "two 2"
    assert payload["code"] == "EUNCAUGHT" and "TypeError" in payload["stack"]
    assert payload["jobName"].startswith("scheduler double job")
    assert "threw TypeError: two 2" in worker.output()


def test_console_output_and_custom_events_are_emitted(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    double = scheduler_double
    job = double.add_job(
        "function (x) { progress(); console.log('a', x); console.log('a', x); console.warn({x});"
        " work.emit('half', {x, half: x / 2}); work.emit('bytes', new Uint8Array([x])); return x; }",
        [4],
    )
    worker = start_worker(double)
    results(double, job, 1)
    worker.finish()
    consoles = emits_of(double, job, "console")
    assert [(e["payload"]["level"], e["payload"]["same"]) for e in consoles] == [("log", 2), ("warn", 1)]
    assert unmarshal(consoles[0]["payload"]["message"]) == ["a 4"]
    custom = emits_of(double, job, "custom")
    assert [e["payload"]["customEvent"] for e in custom] == ["half", "bytes"]
    assert custom[0]["payload"]["data"] == {"x": 4, "half": 2}
    assert list(unmarshal(custom[1]["payload"]["data"])) == [4]  # a Uint8Array
    assert double.job_status(job)["done"] == {1: 4}


def test_a_slice_that_never_calls_progress_is_returned(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    double = scheduler_double
    job = double.add_job("function (x) { if (x !== 2) progress(); return x; }", [1, 2, 3])
    worker = start_worker(double)
    results(double, job, 2)
    double.wait_event(lambda e: e.get("event") == "return" and e["slices"] == {job: [2]})
    worker.finish()
    status = double.job_status(job)
    assert status["done"] == {1: 1, 3: 3}
    assert (status["returns"][0]["sliceNumber"], status["returns"][0]["reason"]) == (2, "ENOPROGRESS")
    assert [e["payload"]["code"] for e in emits_of(double, job, "error")] == ["ENOPROGRESS"]
    assert len(emits_of(double, job, "noProgress")) == 1


def test_work_reject_gives_the_job_back_and_asks_for_it_no_more(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    double = scheduler_double
    job = double.add_job(
        "function (x) { progress(); if (x === 3) work.reject('not here'); return x; }",
        list(range(1, 11)),
        slices_per_task=10,
    )
    other = double.add_job("function (x) { progress(); return -x; }", [1, 2])
    worker = start_worker(double, "--maxSandboxes", "1")
    double.wait_event(
        lambda e: e.get("event") == "return" and job in e["slices"] and e["reason"] == "EWORKREJECT"
    )
    results(double, other, 2)
    double.wait_event(
        lambda e: e.get("event") == "taskRequest" and job in e["data"].get("rejectedJobs", []), timeout=30
    )
    worker.finish()
    status = double.job_status(job)
    assert status["held"] == []
    assert 3 not in status["done"] and {r["reason"] for r in status["returns"]} <= {
        "EWORKREJECT",
        "returnAllSlices",
    }
    assert "rejected by its work function: not here" in worker.output()


def test_results_carry_measured_metrics(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    double = scheduler_double
    job = double.add_job(
        "function (s) { progress(); const end = Date.now() + 50; while (Date.now() < end) {} return s + s; }",
        ["x" * 1000],
    )
    worker = start_worker(double)
    results(double, job, 1)
    worker.finish()
    (record,) = double.job_status(job)["results"]
    measured = record["metrics"]
    assert measured["CPUTime"] >= 40
    assert measured["InDataSize"] > 1000 and measured["OutDataSize"] > 2000
    assert (measured["GPUTime"], measured["CPUDensity"]) == (0, 1)


def test_held_slices_are_told_to_soteria_every_period(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    double = scheduler_double
    job = double.add_job(
        "function (x) { progress(); const end = Date.now() + 400; while (Date.now() < end) {} return x; }",
        list(range(1, 7)),
        slices_per_task=6,
        scheduler_config={"shared": {"frequencyMs": 200}},
    )
    worker = start_worker(double, "--maxSandboxes", "1")
    notice = double.wait_event(
        lambda e: e.get("event") == "taskRequest" and e["data"].get("fetchState", 0) & 2, timeout=30
    )
    soteria = notice["data"]["soteriaJobs"]
    assert list(soteria) == [job] and soteria[job] and set(soteria[job]) <= set(range(1, 7))
    assert notice["data"]["overdueSlices"] is None
    results(double, job, 6)
    worker.finish()


def test_a_task_grants_its_compute_groups_origins(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    double = scheduler_double
    elsewhere = double.url.replace("127.0.0.1", "localhost")
    refused = double.add_job("function (x) { progress(); return x; }", [1], artifact_host="localhost")
    worker = start_worker(double)
    double.wait_event(lambda e: e.get("event") == "return" and refused in e["slices"])
    assert double.job_status(refused)["fetches"] == {}  # not even asked for
    granted = double.add_job(
        "function (x) { progress(); return x + 1; }",
        [1, 2],
        artifact_host="localhost",
        origins={"fetchWorkFunctions": [elsewhere], "fetchData": [elsewhere]},
    )
    results(double, granted, 2)
    worker.finish()
    assert double.job_status(granted)["done"] == {1: 2, 2: 3}
    assert "origin http://localhost" in worker.output() and "EPERM_ORIGIN" in worker.output()


def test_public_group_fallback_asks_for_the_public_group_only_when_idle(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    double = scheduler_double
    job = double.add_job("function (x) { progress(); return x; }", [1, 2], slices_per_task=2)
    worker = start_worker(double, "--join", "scott,tiger", "--publicGroupFallback")
    results(double, job, 2)
    double.wait_events(lambda e: e.get("event") == "taskRequest" and e["data"].get("fetchState", 0) & 1, 3)
    worker.finish()
    requests = [r for r in double.task_requests() if r["data"].get("fetchState", 0) & 1]
    keys = [[group["joinKey"] for group in r["data"]["workerComputeGroups"]] for r in requests]
    assert keys[0] == ["scott", "public"]  # nothing fetched yet: every group
    assert keys[1] == ["scott"]  # after a task with work: one's own groups first
    assert keys[2] == ["scott", "public"]  # after an empty one: the public group again
    first = requests[0]
    assert first["data"]["workerComputeGroups"][1]["joinHashHash"] == eh1(
        first["dcpsid"] + PUBLIC_GROUP.join_hash
    )


def test_modules_come_from_the_package_manager(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    double = scheduler_double
    job = double.add_job(
        "function (x) { progress(); return require('triple').triple(x) + require('one').one; }",
        [1, 2],
        modules={"triple": "exports.triple = (x) => 3 * x;", "one": "module.exports = { one: 1 };"},
    )
    missing = double.add_job(
        "function (x) { progress(); return require('nowhere'); }", [1], modules={"nowhere": None}
    )
    worker = start_worker(double)
    results(double, job, 2)
    double.wait_event(lambda e: e.get("event") == "return" and missing in e["slices"])
    worker.finish()
    assert double.job_status(job)["done"] == {1: 4, 2: 7}
    returned = double.job_status(missing)["returns"]
    assert returned and all(
        r["reason"].startswith("ENOMODULE") for r in returned if r["reason"] != "returnAllSlices"
    )
    assert "the scheduler double has no module nowhere" in worker.output()
