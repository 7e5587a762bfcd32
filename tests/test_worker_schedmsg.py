"""The scheduler's commands (SchedMsg) to ``dcp-worker``, sent by the scheduler double as
``event`` requests over the session the worker subscribed with."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from scheduler_double import Message, SchedulerDouble, SchedulerDoubleError
from worker_process import SLOW, SQUARE, WorkerProcess, results, working_on

from dcp_worker.worker.schedmsg import EXIT_KILLED, EXIT_RELOAD, SCHEDMSG_EVENTS

EVENT_IDS = (f"event-{n}" for n in itertools.count())


def subscription(double: SchedulerDouble) -> Message:
    return double.wait_event(lambda e: e.get("event") == "subscribed", timeout=30)


def command(double: SchedulerDouble, name: str, payload: Any = None, *, event_id: str | None = None) -> Any:
    """Send ``name`` as a ``schedmsg::command`` event with the worker's own token."""
    subscribed = subscription(double)
    tokens = {pair["event"]: pair["token"] for pair in subscribed["tokens"]}
    event = {
        "eventId": event_id or next(EVENT_IDS),
        "data": {"eventName": "schedmsg::command", "command": name, "payload": payload or {}},
    }
    data = {"token": tokens["schedmsg::command"], "event": event}
    return double.request(subscribed["dcpsid"], "event", data)


def given_back(double: SchedulerDouble, job: str) -> None:
    """Wait until slices of ``job`` come back for a command's sake."""
    double.wait_event(
        lambda e: e.get("event") == "return" and job in e["slices"] and e["reason"] == "SchedMsg", timeout=30
    )


def assert_nothing_returned_after_its_result(double: SchedulerDouble) -> None:
    """No slice was given back once its result had reached the scheduler."""
    submitted: set[tuple[str, int]] = set()
    for event in double.events():
        if event.get("event") == "result":
            submitted.add((event["jobId"], event["sliceNumber"]))
        elif event.get("event") == "return":
            given_back = {(job, number) for job, numbers in event["slices"].items() for number in numbers}
            assert not given_back & submitted, event


def test_the_worker_subscribes_to_its_commands_as_dcp_client_does(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    job = scheduler_double.add_job(SQUARE, [1, 2])
    worker = start_worker(scheduler_double)
    results(scheduler_double, job, 2)
    subscribed = subscription(scheduler_double)
    worker_id = scheduler_double.task_requests()[0]["data"]["coreStats"]["worker"]
    assert subscribed["data"] == {
        "schedmsgEvents": list(SCHEDMSG_EVENTS),
        "options": {
            "filter": {"$or": [{"target": worker.identity.address}, {"target": worker_id}, {"broadcast": True}]}
        },
    }
    # A session of its own: not the one the worker's events go over.
    emits = {e["dcpsid"] for e in scheduler_double.events() if e.get("operation") == "workEmit"}
    assert subscribed["dcpsid"] not in emits
    worker.finish()


@pytest.mark.parametrize(("name", "status"), [("kill", EXIT_KILLED), ("reload", EXIT_RELOAD)])
def test_kill_and_reload_return_every_slice_and_exit_with_dcp_clients_status(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess], name: str, status: int
) -> None:
    job, worker = working_on(scheduler_double, start_worker, SLOW, 20)
    assert command(scheduler_double, name, {"temporary": True}) == "success"
    assert worker.wait() == status, worker.output()
    state = scheduler_double.job_status(job)
    assert state["held"] == []  # every slice given to the worker is done or back
    assert set(state["submissions"].values()) <= {1}
    assert_nothing_returned_after_its_result(scheduler_double)
    assert f"The scheduler sent {name}" in worker.output()


def test_a_lasting_kill_keeps_the_worker_from_starting_again(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess], tmp_path: Path
) -> None:
    job, worker = working_on(scheduler_double, start_worker, SLOW, 8)
    assert command(scheduler_double, "kill", {"temporary": False}) == "success"
    assert worker.wait() == EXIT_KILLED, worker.output()
    assert scheduler_double.job_status(job)["held"] == []
    mark = tmp_path / ".dcp" / "dcp-worker" / "disabled"
    again = start_worker(scheduler_double)
    assert again.wait() == 1
    assert "disabled by its scheduler (a kill command at " in again.output()
    assert f"remove {mark} to let it work again" in again.output()
    mark.unlink()
    restarted = start_worker(scheduler_double)
    scheduler_double.wait_job_done(job, timeout=60)
    restarted.finish()


def test_remove_returns_the_jobs_slices_and_the_worker_works_on(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    job, worker = working_on(scheduler_double, start_worker, SLOW, 12, per_task=12)
    assert command(scheduler_double, "remove", {"jobId": job}) == "success"
    given_back(scheduler_double, job)
    # Given back, the slices are pending again, and the double hands them out again.
    state = scheduler_double.wait_job_done(job, timeout=60)
    assert set(state["submissions"].values()) == {1}
    assert_nothing_returned_after_its_result(scheduler_double)
    worker.finish()


def test_priority_jobs_edit_the_jobs_asked_for(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    first, worker = working_on(scheduler_double, start_worker, SLOW, 30, per_task=4)
    second = scheduler_double.add_job(SQUARE, list(range(1, 4)))
    assert command(scheduler_double, "addPriorityJob", {"jobId": second, "immediate": True}) == "success"
    given_back(scheduler_double, first)
    results(scheduler_double, second, 3)
    assert [second] in [request["data"]["jobIds"] for request in scheduler_double.task_requests()]
    done_before = len(scheduler_double.job_status(first)["done"])
    assert command(scheduler_double, "removePriorityJob", {"jobId": second}) == "success"
    scheduler_double.wait_event(lambda e: e.get("event") == "taskRequest" and e["data"]["jobIds"] == [], timeout=5)
    results(scheduler_double, first, done_before + 1)
    assert_nothing_returned_after_its_result(scheduler_double)
    worker.finish()


def test_bad_events_are_refused_and_the_worker_works_on(
    scheduler_double: SchedulerDouble, start_worker: type[WorkerProcess]
) -> None:
    job, worker = working_on(scheduler_double, start_worker, SQUARE, 6, per_task=2)
    dcpsid = subscription(scheduler_double)["dcpsid"]
    hostile: list[Any] = [
        None,
        "event",
        {"token": "not ours", "event": {"eventId": "x", "data": {"eventName": "schedmsg::command"}}},
        {"event": {"data": {"eventName": "job::optionalEvent", "command": "kill"}}},
        {"event": {"data": ["schedmsg::command"]}},
    ]
    for data in hostile:
        with pytest.raises(SchedulerDoubleError):
            scheduler_double.request(dcpsid, "event", data)
    with pytest.raises(SchedulerDoubleError):
        scheduler_double.request(dcpsid, "notAnEvent", {})
    with pytest.raises(SchedulerDoubleError):
        command(scheduler_double, "remove", {"jobId": 7})
    assert command(scheduler_double, "announce", {"message": "maintenance\x1b[2J at noon\n"}, event_id="once")
    with pytest.raises(SchedulerDoubleError):  # the same event again
        command(scheduler_double, "kill", {}, event_id="once")
    assert command(scheduler_double, "selfDestruct") == "success"
    assert command(scheduler_double, "restart") == "success"
    results(scheduler_double, job, 6)
    worker.finish()
    output = worker.output()
    assert "💬 Broadcast message: maintenance [2J at noon " in output
    assert "a command this worker does not know: 'selfDestruct'" in output
    assert "restart, which DCP workers do not support" in output
