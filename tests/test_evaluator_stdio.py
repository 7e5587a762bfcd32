"""``dcp-worker evaluator --stdio`` driven from Python as dcp-client's supervisor drives an evaluator.

Each message type of the protocol is exercised; the common sequence is also run against dcp-client's
own ``evaluator-node.js`` with the same expectations, where that can run here.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_run import one_line_error, run_cli
from evaluator_peer import (
    ACK,
    MAP_BASIC,
    SLICE_ENDS,
    StdioEvaluator,
    assign,
    begin_slice,
    job,
    our_stdio_command,
    parse_line,
    reference_command,
    request_name,
    run_slice,
    sandbox_message,
    start,
    worker_message,
)
from official_worker import OfficialWorkerUnavailable

from dcp_worker.jsvalues import JSError, Undefined
from dcp_worker.supervisor.lockdown import probe

MODULE_SOURCE = (
    "module.declare([], function (require, exports, module) { exports.f = function (x) { return x * 7; }; });"
)
WORK = """function (datum, factor) {
  globalThis.calls = (globalThis.calls || 0) + 1;
  console.log('slice', datum);
  work.emit('seen', { datum: datum });
  progress(0.5);
  return { value: require('mypkg/mod').f(datum) * factor, calls: globalThis.calls, name: work.job.public.name };
}"""


@pytest.fixture
def ours() -> Iterator[StdioEvaluator]:
    with StdioEvaluator(our_stdio_command()) as evaluator:
        yield evaluator


@pytest.fixture(params=["ours", "reference"])
def evaluator(request: pytest.FixtureRequest) -> Iterator[StdioEvaluator]:
    if request.param == "ours":
        command = our_stdio_command()
    else:
        try:
            command = reference_command()
        except (OfficialWorkerUnavailable, FileNotFoundError) as why:
            pytest.skip(f"dcp-client's evaluator-node.js cannot run here: {why}")
    with StdioEvaluator(command) as started:
        yield started


def test_a_job_runs_through_the_whole_sequence(evaluator: StdioEvaluator) -> None:
    describe = start(evaluator)
    assert MAP_BASIC in describe["worktimes"]
    assert describe["capabilities"]["environment"]["webgpu"] is False
    assert describe["capabilities"]["useStrict"] is True

    ring, dependency = assign(
        evaluator, job(WORK, arguments=[2], dependencies=["mypkg/mod"], requirePath=["mypkg"])
    )
    assert (ring, dependency["request"], list(dependency["data"])) == (2, "dependency", ["mypkg/mod"])
    evaluator.request(
        {"request": "moduleGroup", "id": dependency["id"], "data": {"mypkg": {"mod": MODULE_SOURCE}}}
    )
    assert evaluator.reply("assigned")[0] == 2

    for calls, datum in enumerate((3, 5), start=1):
        messages = run_slice(evaluator, datum)
        assert all(ring == 3 for ring, _ in messages)
        requests = [value["request"] for _, value in messages]
        assert requests[-2:] == ["measurement", "complete"]
        assert {"console", "progress", "emitEvent"} <= set(requests[:-2])
        measurement = messages[-2][1]
        assert measurement["total"] >= measurement["CPU"] >= 0
        assert messages[-1][1]["result"] == {"value": datum * 7 * 2, "calls": calls, "name": "Test Job"}
        events = [value["payload"] for _, value in messages if value["request"] == "emitEvent"]
        assert events == [{"eventName": "custom", "customEvent": "seen", "data": {"datum": datum}}]
        consoles = [value["payload"] for _, value in messages if value["request"] == "console"]
        assert consoles[0]["level"] == "log" and "slice" in consoles[0]["message"][0]

    evaluator.request(
        {"request": "eval", "data": "Promise.resolve(6 * 7)", "filename": "probe.js", "msgId": "m1"}
    )
    assert evaluator.reply("evalResult::m1")[1]["data"] == 42
    evaluator.send({"type": "die"})
    assert evaluator.until(lambda line: line[0] in ("DIE", "EOF"))[-1][0] == "DIE"


def test_die_ends_the_evaluator(ours: StdioEvaluator) -> None:
    start(ours)
    ours.send({"type": "die"})
    kind, text = ours.line()
    assert kind == "DIE" and "GMT" in text
    assert ours.line() == ("EOF", "")
    assert ours.proc.wait(timeout=10) == 0


def test_describe_reports_only_what_this_engine_has(ours: StdioEvaluator) -> None:
    describe = start(ours)
    assert describe["worktimes"] == [MAP_BASIC]
    assert describe["capabilities"] == {
        "environment": {"webgpu": False, "offscreenCanvas": False, "fdlibm": True},
        "useStrict": True,
    }


def test_large_and_lone_surrogate_values_cross_both_ways(ours: StdioEvaluator) -> None:
    start(ours)
    assign(ours, job("function (x) { progress(); return [x.length, x.slice(-1) + '\\udc00']; }"))
    big = "y" * 5_000_000 + "\ud800"  # JSON carries a lone surrogate escaped, as JSON.stringify writes it
    assert run_slice(ours, big)[-1][1] == {"request": "complete", "result": [5_000_001, "\U00010000"]}
    assert run_slice(ours, "\udfff")[-1][1]["result"] == [1, "\udfff\udc00"]


def test_die_during_a_slice_ends_the_evaluator_at_once(ours: StdioEvaluator) -> None:
    start(ours)
    assign(ours, job("function (x) { progress(); for (;;); }"))
    begin_slice(ours, 1)
    assert ours.message() == ACK  # acknowledged while the slice runs
    ours.send({"type": "die"})
    assert ours.until(lambda line: line[0] in ("DIE", "EOF"), timeout=10)[-1][0] == "DIE"
    assert ours.proc.wait(timeout=15) == 0  # the busy host is killed after a short grace


def test_thrown_errors_are_work_errors_and_the_sandbox_stays(ours: StdioEvaluator) -> None:
    start(ours)
    assert (
        assign(
            ours, job("function (x) { progress(); if (x) throw new TypeError('boom ' + x); return 'ok'; }")
        )[1]["request"]
        == "assigned"
    )
    messages = run_slice(ours, 7)
    assert [value["request"] for _, value in messages][-2:] == ["measurement", "workError"]
    error = messages[-1][1]["error"]
    assert isinstance(error, JSError) and (error.name, error.message) == ("TypeError", "boom 7")
    assert run_slice(ours, 0)[-1][1] == {"request": "complete", "result": "ok"}


def test_work_reject_ends_the_sandbox(ours: StdioEvaluator) -> None:
    start(ours)
    assign(ours, job("function (x) { progress(); work.reject('not now'); }"))
    messages = run_slice(ours, 1)
    assert messages[-1] == (
        3,
        {"request": "workReject", "workRejectData": {"reason": "not now", "retries": 0}},
    )
    assert ours.line()[0] == "DIE"
    assert ours.proc.wait(timeout=10) == 0


@pytest.mark.parametrize(
    "allocation",
    [
        "new Array(1e9).fill(1.5)",  # the V8 heap
        "Array.from({length: 64}, () => new Uint8Array(16 << 20).fill(1))",  # ArrayBuffers
    ],
)
def test_a_slice_over_the_memory_cap_is_a_sandbox_error_and_ends_the_sandbox(allocation: str) -> None:
    with StdioEvaluator(our_stdio_command("--memory", "128")) as small:
        start(small)
        assign(small, job(f"function (x) {{ progress(); const kept = {allocation}; return kept.length; }}"))
        messages = run_slice(small, 1)
        assert [value["request"] for _, value in messages][-2:] == ["measurement", "sandboxError"]
        assert small.until(lambda line: line[0] in ("DIE", "EOF"))[-1][0] == "DIE"
        assert small.proc.wait(timeout=20) == 0


# Reports, then two seconds of work: the supervisor must hear them before the slice ends.
REPORTS_THEN_WORK = """function (x) {
  console.log('starting', x);
  work.emit('started', { x: x });
  progress(0.25);
  const end = Date.now() + 2000;
  while (Date.now() < end);
  progress();
  return x;
}"""


def messages_of(lines: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [sandbox_message(line)[1] for line in lines if request_name(line) is not None]


def test_a_slice_reports_while_it_runs(evaluator: StdioEvaluator) -> None:
    start(evaluator)
    assert assign(evaluator, job(REPORTS_THEN_WORK))[1]["request"] == "assigned"
    begin_slice(evaluator, 7)
    early = messages_of(evaluator.until(lambda line: request_name(line) == "progress"))
    heard = time.monotonic()
    rest = messages_of(evaluator.until(lambda line: request_name(line) in SLICE_ENDS))
    ended = time.monotonic()
    assert ended - heard > 1.0, "the reports came only when the slice had ended"
    assert [value["request"] for value in early if value["request"] != "measurement"] == [
        "console",
        "emitEvent",
        "progress",
    ]
    # Ours formats the arguments into one string; dcp-client's sends them as they are.
    assert early[0]["payload"]["message"] in (["starting 7"], ["starting", 7])
    assert early[1]["payload"] == {"eventName": "custom", "customEvent": "started", "data": {"x": 7}}
    assert {key: early[2][key] for key in ("progress", "value", "indeterminate")} == {
        "progress": 25,
        "value": 0.25,
        "indeterminate": 0,
    }
    assert [value["request"] for value in rest][-2:] == ["measurement", "complete"]
    assert rest[-1]["result"] == 7


PROGRESS_VALUES = """async function (x) {
  const pause = () => new Promise((resolve) => setTimeout(resolve, 150));
  progress('50%'); await pause();
  progress(2); await pause();
  progress(); await pause();
  progress(0.75); progress(0.8); await pause();
  progress(0.5);
  return x;
}"""


def test_live_progress_follows_dcps_rules(ours: StdioEvaluator) -> None:
    start(ours)
    assign(ours, job(PROGRESS_VALUES))
    messages = run_slice(ours, 1)
    reported = [
        (value["progress"], value["value"], value["indeterminate"], value["throttledReports"])
        for _, value in messages
        if value["request"] == "progress"
    ]
    assert reported == [
        (50, "50%", 0, 0),
        (50, 2, 1, 0),  # out of bounds: indeterminate, the last good value kept (and a warning)
        (50, Undefined, 0, 0),  # no value: the last one again
        (75, 0.75, 0, 0),  # 0.8 follows within 100 ms: throttled, counted in the next report
        (75, 0.5, 1, 1),  # backwards: the last value kept, indeterminate
    ]
    warnings = [value["payload"]["message"] for _, value in messages if value["request"] == "console"]
    assert warnings == [["progress(2): expected a number from 0 to 1, or nothing"]]


def test_a_job_that_rewrites_to_json_cannot_spoil_live_reports(ours: StdioEvaluator) -> None:
    start(ours)
    tampering = (
        "function (x) { Object.prototype.toJSON = () => 'spoiled'; Array.prototype.toJSON = () => 'spoiled';"
        " progress(0.5); console.log('still', x); work.emit('e', 1); return 7; }"
    )
    assign(ours, job(tampering))
    messages = [value for _, value in run_slice(ours, 3)]
    assert [value["request"] for value in messages] == [
        "progress",
        "console",
        "emitEvent",
        "measurement",
        "complete",
    ]
    assert messages[1]["payload"]["message"] == ["still 3"] and messages[-1]["result"] == 7


def test_reports_beyond_the_live_ring_come_at_the_end_in_order(ours: StdioEvaluator) -> None:
    start(ours)
    # 2,000 lines of 1,000 characters: twice what the ring holds, written faster than it drains.
    flood = "function (x) { progress(); for (let i = 0; i < 2000; i++) console.log(String(i).padEnd(1000, '.')); return x; }"
    assign(ours, job(flood))
    messages = run_slice(ours, 1)
    lines = [value["payload"]["message"][0] for _, value in messages if value["request"] == "console"]
    assert [int(line.rstrip(".")) for line in lines] == list(range(2000))
    assert messages[-1][1]["result"] == 1


FETCHES = """async function (x) {
  progress();
  const answer = await fetch('https://data.example/item/' + x, { method: 'post', body: 'ask', headers: { 'X-Job': 'j1' } });
  let refusal;
  try {
    await fetch('https://elsewhere.example/');
  } catch (error) {
    refusal = [error.name, error.message, error.code];
  }
  return [answer.status, answer.ok, answer.headers.get('content-type'), await answer.text(), refusal];
}"""


def test_a_work_function_fetches_through_the_supervisor(ours: StdioEvaluator) -> None:
    start(ours)
    assign(ours, job(FETCHES))
    begin_slice(ours, 7)
    ring, asked, _ = ours.reply("fetchRequest")
    assert ring == 2
    request = asked["data"]
    assert (request["url"], request["method"], request["headersEntries"]) == (
        "https://data.example/item/7",
        "POST",
        [["x-job", "j1"]],
    )
    assert bytes(request["bodyBuffer"]) == b"ask"  # a Uint8Array, as dcp-client's sandbox sends it
    body = "d\u00e9j\u00e0 vu ".encode() * 50_000  # 550 kB: more than the ring holds at once
    ours.request(
        {
            "request": "fetchResponse",
            "id": asked["id"],
            "data": {
                "url": request["url"],
                "status": 201,
                "statusText": "Created",
                "headersEntries": [["content-type", "text/plain"]],
                "bodyBuffer": body,
            },
        }
    )
    _, refused, _ = ours.reply("fetchRequest")
    assert refused["data"]["url"] == "https://elsewhere.example/" and refused["data"]["bodyBuffer"] is None
    denial = {"name": "DCPError", "message": "Not allowed to fetch from 'https://elsewhere.example/'"}
    ours.request({"request": "fetchError", "id": refused["id"], "error": {**denial, "code": "EPERM_ORIGIN"}})
    _, complete, _ = ours.reply("complete")
    assert complete["result"] == [201, True, "text/plain", body.decode(), [*denial.values(), "EPERM_ORIGIN"]]


def test_answers_nobody_awaits_do_not_hold_up_the_next_slice(ours: StdioEvaluator) -> None:
    start(ours)
    assign(ours, job("function (x) { progress(); if (x === 1) fetch('https://big.example/'); return x; }"))
    begin_slice(ours, 1)
    _, asked, _ = ours.reply("fetchRequest")
    assert ours.reply("complete")[1]["result"] == 1
    # Larger than the ring, for a slice that is over: the next slice must still run.
    late = {
        "url": "https://big.example/",
        "status": 200,
        "headersEntries": [],
        "bodyBuffer": b"x" * 3_000_000,
    }
    ours.request({"request": "fetchResponse", "id": asked["id"], "data": late})
    ours.request({"request": "fetchError", "id": 999, "error": {"name": "Error", "message": "no such fetch"}})
    for datum in (2, 3):
        assert run_slice(ours, datum)[-1][1]["result"] == datum


def test_fetch_exists_only_where_a_supervisor_answers(tmp_path: Path) -> None:
    inputs = tmp_path / "in.json"
    inputs.write_text("[1]")
    source = tmp_path / "probe.js"
    source.write_text("x => { progress(); return [typeof fetch, typeof Response, typeof Headers]; }")
    ran = run_cli(tmp_path, "localexec", str(source), str(inputs))
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == [["undefined", "undefined", "undefined"]]


def test_a_slice_without_progress_completes_for_the_supervisor_to_judge(ours: StdioEvaluator) -> None:
    start(ours)
    assign(ours, job("function (x) { return undefined; }"))
    messages = run_slice(ours, 1)
    assert [value["request"] for _, value in messages] == ["measurement", "complete"]
    assert messages[-1][1]["result"] is Undefined


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"workFunction": "function (x) { return x +; }"}, "SyntaxError"),
        ({"modulePath": ["lib"]}, "modulePath"),
        ({"worktime": {"name": "pyodide", "version": "0.28.0"}}, "pyodide@0.28.0"),
        ({"arguments": "not an array"}, "arguments"),
    ],
)
def test_a_job_that_cannot_be_assigned_is_rejected_not_crashed(
    ours: StdioEvaluator, fields: dict[str, Any], expected: str
) -> None:
    start(ours)
    ring, reply = assign(ours, job(WORK, **{"arguments": [2], **fields}))
    assert (ring, reply["request"]) == (2, "reject")
    error = reply["error"]
    assert expected in f"{error.name}: {error.message}"
    ours.request({"request": "describe"})
    assert ours.reply("describe")[0] == 2  # still serving


def test_modules_that_cannot_be_loaded_reject_the_assign(ours: StdioEvaluator) -> None:
    start(ours)
    ring, dependency = assign(ours, job(WORK, dependencies=["./lib/x", "other/../y"]))
    assert (ring, list(dependency["data"])) == (2, ["lib/x", "y"])  # normalised as BravoJS does
    ours.request({"request": "moduleGroup", "id": dependency["id"] + 1, "data": {}})  # not the one waited for
    ours.request({"request": "moduleGroupError", "id": dependency["id"], "stack": "Error: no such package"})
    ring, reply, _ = ours.reply("reject")
    assert ring == 2 and "no such package" in reply["error"].message


def test_main_before_assign_is_a_sandbox_error(ours: StdioEvaluator) -> None:
    start(ours)
    ours.request({"request": "main", "data": 1})
    lines = ours.until(lambda line: request_name(line) == "sandboxError")
    messages = [sandbox_message(line) for line in lines if request_name(line)]
    assert [(ring, value["request"]) for ring, value in messages] == [(3, "measurement"), (3, "sandboxError")]
    assert "before 'assign'" in messages[-1][1]["error"].message


def test_eval_errors_are_ring_two_errors(ours: StdioEvaluator) -> None:
    ours.request({"request": "eval", "data": "null.x", "filename": "bad.js", "msgId": "m2"})
    ring, reply, _ = ours.reply("error", timeout=60)
    assert ring == 2 and reply["error"].name == "TypeError"
    ours.request({"request": "eval", "data": "({a: [1, 2n]})", "filename": "ok.js", "msgId": "m3"})
    assert ours.reply("evalResult::m3")[1]["data"] == {"a": [1, 2]}


def test_hostile_lines_get_error_acks_and_the_evaluator_keeps_serving(ours: StdioEvaluator) -> None:
    ours.write_raw(b"{this is not json\n")
    kind, ack = ("MSG", ours.message(timeout=60))
    assert kind == "MSG" and ack["step"] == "parseInput::parse" and ack["success"] is False
    assert ack["exception"]["name"] == "SyntaxError"
    ours.send({"type": "bogus"})
    ack = ours.message()
    assert (ack["step"], ack["origin"], ack["exception"]["message"]) == (
        "bogus",
        "bogus",
        "Invalid message type 'bogus'",
    )
    ours.write_raw(b"[1, 2]\n\n")
    assert ours.message()["exception"]["message"] == "Invalid message type 'undefined'"
    ours.send({"type": "workerMessage", "message": {"_serializeVerId": "v1", "what": 1}})
    assert ours.message()["success"] is False
    ours.send(
        {"type": "workerMessage", "message": {"request": "describe"}}
    )  # not KVIN: dropped, as dcp-client does
    assert ours.message() == ACK
    ours.request({"request": "noSuchRequest"})
    assert ours.message() == ACK
    ours.send({"type": "newSerializer", "payload": "x"})
    assert ours.message() == ACK
    ours.request({"request": "describe"})
    lines = ours.until(lambda line: request_name(line) == "describe")
    assert [kind for kind, _ in lines].count("MSG") >= 2  # the ack and the reply; LOG lines may come between


def test_the_end_of_input_ends_the_evaluator(ours: StdioEvaluator) -> None:
    start(ours)
    assert ours.proc.stdin is not None
    ours.proc.stdin.close()
    assert ours.proc.wait(timeout=20) == 0


def test_require_lockdown_refuses_a_machine_without_every_wall(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "evaluator", "--stdio", "--require-lockdown")  # stdin: /dev/null
    if probe().complete:
        assert result.returncode == 0, result.stderr
    else:
        assert "lockdown is required and incomplete" in one_line_error(result)


def test_requests_before_the_end_of_a_file_on_stdin_are_answered(tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    lines = [{"request": "describe"}, {"request": "eval", "data": "1 + 1", "filename": "e.js", "msgId": "x"}]
    requests.write_text("".join(json.dumps(worker_message(line)) + "\n" for line in lines))
    with requests.open("rb") as stdin:
        done = subprocess.run(our_stdio_command(), stdin=stdin, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    names = [request_name(parse_line(raw)) for raw in done.stdout.splitlines(keepends=True)]
    assert [name for name in names if name] == ["describe", "evalResult::x"]
