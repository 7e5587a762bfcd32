"""Self-test of the scheduler double (tests/scheduler/double.js, dcp-client 5.6.1's Target in node).

The Python DCP session does not exist yet, so the peers here are dcp-client's own: a ``Connection`` in
the initiator role (tests/scheduler/client.js, over websocket and over long-polling only) and raw
engine.io requests for the long-polling handshake.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import scheduler_double as scheduler_double_module
from scheduler_double import (
    DcpNodeClient,
    JobFaults,
    Message,
    SchedulerDouble,
    SchedulerDoubleError,
)

from dcp_worker import kvin

# The scheduler_double fixture lives in tests/scheduler_double.py.
pytest_plugins = ["scheduler_double"]

ClientFactory = Callable[..., DcpNodeClient]

# The reference test vector (/work/shared/reference/dcp-scheduler-protocol.md §3.1): key 0x11 * 32.
KEY_11 = "0x" + "11" * 32
ADDRESS_11 = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
VECTOR_BODY = (
    '{"id":"1-1-abcdefghijklmnopqrstu","type":"request","payload":{"operation":"connect","data":'
    '{"version":"5.3.0","sid":"AAAAAAAAAAAAAAAAAAAAA"},"allow":[],"validity":{"stamp":"BBBBBBBBBBBBBBBBBBBBB",'
    '"ttl":120,"time":1732900000.123}},"auth":{},"time":1732900000.125,"ackToken":"ATi1-CCCCCCCCCCCCCCCCCCCCC",'
    '"nonce":null}'
)
VECTOR_SEALED = (
    '{"owner":"0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A","signature":{"r":{"type":"Buffer","data":'
    "[77,71,213,182,208,110,84,33,99,15,146,221,95,182,28,228,47,74,64,94,184,156,223,195,178,149,127,176,63,"
    '243,107,166]},"s":{"type":"Buffer","data":[23,254,29,41,220,4,139,136,117,201,53,224,83,14,96,107,111,13,'
    '128,172,89,49,75,112,122,254,68,15,183,237,104,71]},"v":28},"body":' + VECTOR_BODY + "}"
)

EIP55_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
POLLING = "dcp5/socketio/?EIO=4&transport=polling"


@pytest.fixture
def node_clients() -> Iterator[ClientFactory]:
    """Start dcp-client initiators (closed after the test): ``make(url, transports=(...))``."""
    made: list[DcpNodeClient] = []

    def make(url: str, transports: tuple[str, ...] = ("websocket", "polling")) -> DcpNodeClient:
        client = DcpNodeClient(url, transports)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            client.close()


@pytest.fixture(scope="module")
def wallet_double() -> Iterator[SchedulerDouble]:
    """One double for the tests that only use its wallet commands."""
    with SchedulerDouble() as double:
        yield double


def session_events(double: SchedulerDouble, kind: str) -> list[Message]:
    return [event for event in double.events() if event.get("event") == kind]


def assert_no_crash(double: SchedulerDouble) -> None:
    uncaught = [event for event in double.events() if event.get("uncaught")]
    assert uncaught == []
    stderr = double.stderr_text()
    assert "rogue listener" not in stderr
    assert "ERR_HTTP_HEADERS_SENT" not in stderr


def connect(
    double: SchedulerDouble, make: ClientFactory, transports: tuple[str, ...] = ("websocket", "polling")
) -> tuple[DcpNodeClient, str]:
    client = make(double.url, transports)
    info = client.connect()
    assert info["peerAddress"] == double.address
    return client, str(info["dcpsid"])


# -- start-up and HTTP ---------------------------------------------------------------------------


def test_double_starts_and_reports_its_port(scheduler_double: SchedulerDouble) -> None:
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/", scheduler_double.url)
    assert match is not None and 0 < int(match.group(1)) < 65536
    assert EIP55_ADDRESS.fullmatch(scheduler_double.address)
    assert scheduler_double.dcp_client_version == "5.6.1"
    assert scheduler_double.node_version.startswith("v")
    assert scheduler_double.startup_seconds < 5  # ~0.6 s measured; generous for noisy machines
    assert scheduler_double.sessions() == []
    assert scheduler_double.received() == []


def test_http_routes_work_so_the_buffer_ctor_is_set(scheduler_double: SchedulerDouble) -> None:
    # Without Target.setBufferCtor(Buffer) every PseudoExpress route answers 500.
    with urllib.request.urlopen(scheduler_double.url + "status", timeout=10) as response:
        assert response.status == 200
        assert "pid:" in response.read().decode()


def test_long_polling_handshake_and_a_waiting_poll_are_not_404(scheduler_double: SchedulerDouble) -> None:
    with urllib.request.urlopen(scheduler_double.url + POLLING, timeout=10) as response:
        assert response.status == 200
        body = response.read().decode()
    assert body.startswith("0{")  # engine.io open packet
    opened = json.loads(body[1:])
    assert opened["upgrades"] == ["websocket"]
    poll_url = f"{scheduler_double.url}{POLLING}&sid={opened['sid']}"

    def post(data: bytes) -> bytes:
        with urllib.request.urlopen(
            urllib.request.Request(poll_url, data=data, method="POST"), timeout=10
        ) as r:
            assert r.status == 200
            body: bytes = r.read()
            return body

    assert post(b"40") == b"ok"  # socket.io connect to namespace /
    with urllib.request.urlopen(poll_url, timeout=10) as response:
        first = response.read().decode()
    assert first.startswith("40{")  # namespace connected; the DCP announcement follows
    assert '42["message","E0000P{' in first

    # A poll with nothing to deliver must stay open (the router used to 404 it, then crash).
    outcome: dict[str, Any] = {}

    def wait_for_data() -> None:
        try:
            with urllib.request.urlopen(poll_url, timeout=20) as response:
                outcome["status"] = response.status
                outcome["body"] = response.read()
        except Exception as exc:
            outcome["error"] = exc

    waiter = threading.Thread(target=wait_for_data)
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and outcome == {}  # still waiting after half a second
    assert post(b"1") == b"ok"  # engine.io close: the waiting poll ends normally
    waiter.join(10)
    assert outcome.get("status") == 200, outcome
    assert scheduler_double.sessions() == []  # still answering
    assert_no_crash(scheduler_double)


def open_polling_socket(double: SchedulerDouble) -> Callable[[bytes], bytes]:
    """A raw engine.io long-polling socket.io connection to the double; returns a POST function."""
    with urllib.request.urlopen(double.url + POLLING, timeout=10) as response:
        sid = json.loads(response.read().decode()[1:])["sid"]
    poll_url = f"{double.url}{POLLING}&sid={sid}"

    def post(data: bytes) -> bytes:
        request = urllib.request.Request(poll_url, data=data, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            body: bytes = response.read()
            return body

    assert post(b"40") == b"ok"
    return post


def test_a_refused_message_is_reported_as_an_error_event(scheduler_double: SchedulerDouble) -> None:
    double = scheduler_double
    sealed = double.sign(KEY_11, json.loads(VECTOR_BODY))
    forged = sealed.replace('"sid":"AAAAAAAAAAAAAAAAAAAAA"', '"sid":"AAAAAAAAAAAAAAAAAAAAB"')
    assert forged != sealed
    post = open_polling_socket(double)
    assert post(b"42" + json.dumps(["message", forged]).encode()) == b"ok"
    refused = double.wait_event(lambda e: e.get("event") == "error" and e.get("shutdown"))
    assert refused["code"] == "EINVAL" and "signature" in refused["error"]
    assert double.received() == []
    assert [s["dcpsid"] for s in double.sessions()] == [None]  # a Connection, never a session
    assert_no_crash(double)


# -- sessions with dcp-client's own Connection -----------------------------------------------------


def test_websocket_session_echo_value_error_and_received(
    scheduler_double: SchedulerDouble, node_clients: ClientFactory
) -> None:
    double = scheduler_double
    client, dcpsid = connect(double, node_clients)
    assert client.state()["engineTransport"] == "websocket"
    session = double.wait_event("session")
    assert session == {"event": "session", "dcpsid": dcpsid, "peerAddress": client.address}

    data = {"list": [1, 2.5, None, True], "text": "ü €", "nested": {"a": {}}}
    assert client.request("hello", data) == {"success": True, "payload": data}

    double.handle("fetchValue", "value", value={"k": ["v"]})
    assert client.request("fetchValue", 1) == {"success": True, "payload": {"k": ["v"]}}

    double.handle("broken", "error", error={"message": "no such job", "code": "ENOJOB"})
    failed = client.request("broken", {"job": 1})
    assert failed["success"] is False
    assert failed["payload"]["message"] == "no such job"
    assert failed["payload"]["code"] == "ENOJOB"
    assert failed["payload"]["origin"] == double.address

    received = double.received()
    assert [r["operation"] for r in received] == ["hello", "fetchValue", "broken"]
    assert [r["data"] for r in received] == [data, 1, {"job": 1}]
    assert all(r["dcpsid"] == dcpsid and r["owner"] == client.address for r in received)
    ids = [r["messageId"] for r in received]
    assert len(set(ids)) == 3
    assert [e["messageId"] for e in session_events(double, "request")] == ids
    assert double.sessions() == [
        {"dcpsid": dcpsid, "peerAddress": client.address, "state": "established", "ready": True}
    ]
    assert_no_crash(double)


def test_delay_and_ignore(scheduler_double: SchedulerDouble, node_clients: ClientFactory) -> None:
    double = scheduler_double
    client, _ = connect(double, node_clients)
    double.handle("slow", "value", value="late", delay_ms=300)
    started = time.monotonic()
    assert client.request("slow") == {"success": True, "payload": "late"}
    assert time.monotonic() - started >= 0.3

    double.handle("never", "ignore")
    with pytest.raises(SchedulerDoubleError, match="did not answer"):
        client.request("never", {"n": 1}, timeout=0.5)
    # The unanswered request does not block the session.
    assert client.request("after", 2) == {"success": True, "payload": 2}
    assert [r["operation"] for r in double.received()] == ["slow", "never", "after"]


def test_long_polling_only_session(scheduler_double: SchedulerDouble, node_clients: ClientFactory) -> None:
    double = scheduler_double
    client, dcpsid = connect(double, node_clients, ("polling",))
    for n in range(3):
        assert client.request("poll", {"n": n}) == {"success": True, "payload": {"n": n}}
    assert double.request(dcpsid, "event", {"hello": "worker"}) == {
        "answeredBy": "node-client",
        "operation": "event",
        "data": {"hello": "worker"},
    }
    state = client.state()
    assert state["engineTransport"] == "polling"
    assert state["disconnects"] == 0
    assert len(double.received()) == 3
    assert_no_crash(double)


def test_server_request_is_answered_by_the_client(
    scheduler_double: SchedulerDouble, node_clients: ClientFactory
) -> None:
    double = scheduler_double
    client, dcpsid = connect(double, node_clients)
    response = double.request(dcpsid, "event", {"type": "job", "n": 1})
    assert response == {"answeredBy": "node-client", "operation": "event", "data": {"type": "job", "n": 1}}
    seen = client.wait_event("request")
    assert seen["operation"] == "event"
    with pytest.raises(SchedulerDoubleError, match="no session"):
        double.request("no-such-session", "event", 1)


def test_commands_are_thread_safe_and_replies_come_out_of_order(
    scheduler_double: SchedulerDouble, node_clients: ClientFactory
) -> None:
    double = scheduler_double
    _, dcpsid = connect(double, node_clients)
    finished: list[str] = []

    async def slow() -> Any:
        result = await asyncio.to_thread(double.request, dcpsid, "slow", {"delayMs": 500})
        finished.append("slow")
        return result

    async def quick(n: int) -> list[Message]:
        result = await asyncio.to_thread(double.sessions)
        finished.append(f"quick{n}")
        return result

    async def main() -> tuple[Any, ...]:
        return tuple(await asyncio.gather(slow(), *(quick(n) for n in range(8))))

    results = asyncio.run(main())
    assert results[0]["data"] == {"delayMs": 500}
    assert all(r[0]["dcpsid"] == dcpsid for r in results[1:])
    assert finished[-1] == "slow"  # the waiting request did not hold up the other commands


def test_drop_action_request_is_answered_exactly_once(
    scheduler_double: SchedulerDouble, node_clients: ClientFactory
) -> None:
    double = scheduler_double
    client, dcpsid = connect(double, node_clients)
    double.handle("result", "drop")
    assert client.request("result", {"slice": 7}) == {"success": True, "payload": {"slice": 7}}

    results = [r for r in double.received() if r["operation"] == "result"]
    assert len(results) == 1
    state = client.state()
    assert state["dcpsid"] == dcpsid  # the session was resumed, not replaced
    assert state["disconnects"] >= 1 and state["connects"] >= 2
    assert [s["dcpsid"] for s in double.sessions()] == [dcpsid]
    double.wait_event("disconnect")
    assert client.request("next", 1) == {"success": True, "payload": 1}
    assert len([e for e in session_events(double, "request") if e["operation"] == "result"]) == 1
    assert_no_crash(double)


def test_drop_before_the_ack_still_answers_once(
    scheduler_double: SchedulerDouble, node_clients: ClientFactory
) -> None:
    double = scheduler_double
    client, _ = connect(double, node_clients, ("polling",))
    double.handle("result", "drop", before_ack=True)
    assert client.request("result", {"slice": 8}) == {"success": True, "payload": {"slice": 8}}
    assert [r["operation"] for r in double.received()] == ["result"]
    # What happens to the session afterwards varies between two dcp-client peers (see handle()).
    assert_no_crash(double)


def test_drop_command_and_a_request_sent_meanwhile(
    scheduler_double: SchedulerDouble, node_clients: ClientFactory
) -> None:
    double = scheduler_double
    client, dcpsid = connect(double, node_clients, ("polling",))
    double.drop(dcpsid)
    client.wait_event("disconnect")
    assert client.request("during", {"n": 1}) == {"success": True, "payload": {"n": 1}}
    assert [r["operation"] for r in double.received()] == ["during"]
    state = client.state()
    assert state["dcpsid"] == dcpsid and state["connects"] >= 2
    assert double.request(dcpsid, "event", 2)["data"] == 2
    assert_no_crash(double)


def test_inject_writes_a_raw_frame(scheduler_double: SchedulerDouble, node_clients: ClientFactory) -> None:
    double = scheduler_double
    client, dcpsid = connect(double, node_clients)
    # Not a DCP frame: dcp-client's transport refuses it and drops the socket; the session resumes.
    double.inject(dcpsid, "X this is not a DCP frame")
    client.wait_event("disconnect")
    assert client.request("still", "here") == {"success": True, "payload": "here"}
    assert client.state()["dcpsid"] == dcpsid
    with pytest.raises(SchedulerDoubleError, match="no session"):
        double.inject("no-such-session", "{}")


def test_close_session_from_the_server(node_clients: ClientFactory) -> None:
    # dcp-client's initiator finalizes before its 'goodbye' goes out, so the server waits closeTimeout.
    with SchedulerDouble(close_timeout=1) as double:
        client, dcpsid = connect(double, node_clients)
        started = time.monotonic()
        double.close_session(dcpsid)
        assert time.monotonic() - started < 5
        client.wait_event("closed")
        assert double.wait_event("closed")["dcpsid"] == dcpsid
        assert double.sessions()[0]["state"] == "closed"


# -- wallet: sign / verify / keystores -------------------------------------------------------------


def test_sign_reproduces_the_reference_vector(wallet_double: SchedulerDouble) -> None:
    sealed = wallet_double.sign(KEY_11, json.loads(VECTOR_BODY))
    assert sealed == VECTOR_SEALED
    assert wallet_double.verify(sealed) == ADDRESS_11


@pytest.mark.parametrize(
    "body",
    [
        {"type": "ack", "token": "ATi1-x", "nonce": "NNt1-y", "messageId": "1-1-z"},
        {"payload": {"data": "ü €\u2028", "n": [1, 0.5, -3, 1e21]}, "time": 1732900000.125},
        [1, "two", {"3": 4}],
    ],
)
def test_sign_then_verify_round_trips(wallet_double: SchedulerDouble, body: Any) -> None:
    for key in (KEY_11, "22" * 32):
        sealed = wallet_double.sign(key, body)
        owner = json.loads(sealed)["owner"]
        assert wallet_double.verify(sealed) == owner
        if key == KEY_11:
            assert owner == ADDRESS_11


def test_verify_refuses_forgeries(wallet_double: SchedulerDouble) -> None:
    sealed = wallet_double.sign(KEY_11, {"operation": "result", "amount": 1})
    tampered = sealed.replace('"amount":1', '"amount":2')
    with pytest.raises(SchedulerDoubleError, match="does not match owner") as caught:
        wallet_double.verify(tampered)
    assert caught.value.reply is not None
    assert caught.value.reply["address"] != ADDRESS_11

    other = json.loads(wallet_double.sign("22" * 32, {"operation": "result", "amount": 1}))
    forged = json.dumps({"owner": ADDRESS_11, "signature": other["signature"], "body": other["body"]})
    with pytest.raises(SchedulerDoubleError, match="does not match owner"):
        wallet_double.verify(forged)

    for broken in ("not json", json.dumps({"owner": ADDRESS_11, "body": {}}), "{}"):
        with pytest.raises(SchedulerDoubleError):
            wallet_double.verify(broken)


def test_keystore_new_then_read(wallet_double: SchedulerDouble, tmp_path: Path) -> None:
    path = tmp_path / "id.keystore"
    address = wallet_double.keystore_new(path, "correct horse")
    assert EIP55_ADDRESS.fullmatch(address)
    stored = json.loads(path.read_text())
    assert stored["version"] == 3
    assert stored["address"] == address[2:].lower()
    assert stored["crypto"]["kdf"] == "scrypt"
    assert stored["crypto"]["kdfparams"]["n"] == 1024

    read = wallet_double.keystore_read(path, "correct horse")
    assert read["address"] == address
    assert read["privateKeyAddress"] == address

    with pytest.raises(SchedulerDoubleError, match="unlock"):
        wallet_double.keystore_read(path, "wrong horse")

    damaged = tmp_path / "damaged.keystore"
    stored["crypto"]["ciphertext"] = "00" * 32
    damaged.write_text(json.dumps(stored))
    with pytest.raises(SchedulerDoubleError):
        wallet_double.keystore_read(damaged, "correct horse")
    truncated = tmp_path / "truncated.keystore"
    truncated.write_text(path.read_text()[:40])
    with pytest.raises(SchedulerDoubleError):
        wallet_double.keystore_read(truncated, "correct horse")
    with pytest.raises(SchedulerDoubleError, match="ENOENT"):
        wallet_double.keystore_read(tmp_path / "missing.keystore", "")

    empty = tmp_path / "empty.keystore"
    empty_address = wallet_double.keystore_new(empty, "")
    assert wallet_double.keystore_read(empty, "")["privateKeyAddress"] == empty_address


def test_double_can_use_a_given_keystore(
    wallet_double: SchedulerDouble, node_clients: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "scheduler.keystore"
    address = wallet_double.keystore_new(path, "pw")
    with SchedulerDouble(keystore=path, passphrase="pw") as double:
        assert double.address == address
        client = node_clients(double.url)
        assert client.connect()["peerAddress"] == address
    with pytest.raises(SchedulerDoubleError, match="did not start"):
        SchedulerDouble(keystore=path, passphrase="wrong")


# -- control channel and lifetime ------------------------------------------------------------------


def test_bad_commands_are_errors(scheduler_double: SchedulerDouble) -> None:
    reply = scheduler_double.call("no-such-command")
    assert reply["ok"] is False and "unknown command" in reply["error"]
    with pytest.raises(SchedulerDoubleError, match="action must be"):
        scheduler_double.handle("x", "explode")
    with pytest.raises(SchedulerDoubleError, match="no session"):
        scheduler_double.drop("nope")
    with pytest.raises(SchedulerDoubleError, match="no session"):
        scheduler_double.close_session("nope")
    with pytest.raises(SchedulerDoubleError, match="beforeAck"):
        scheduler_double.handle("x", "echo", before_ack=True)


def test_missing_node_or_packages_name_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(SchedulerDoubleError, match=r"npm ci --prefix tests/node"):
        SchedulerDouble(node="no-such-node-binary")
    monkeypatch.setattr(scheduler_double_module, "NODE_DIR", tmp_path)
    with pytest.raises(SchedulerDoubleError, match=r"is missing; .*npm ci --prefix tests/node"):
        SchedulerDouble()


def test_close_and_end_of_input_exit_cleanly() -> None:
    double = SchedulerDouble()
    double.close()  # the shutdown command, then end of input
    assert double.returncode == 0
    with pytest.raises(SchedulerDoubleError, match="closed"):
        double.sessions()

    node = shutil.which("node")
    assert node is not None
    started = time.monotonic()
    finished = subprocess.run(
        [node, str(scheduler_double_module.DOUBLE_SCRIPT)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert time.monotonic() - started < 10
    lines = finished.stdout.decode().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["event"] == "ready"  # stdout holds protocol lines only


# -- serving jobs ------------------------------------------------------------------------------------

WORKER_ID = "W0rkerIdForTheDouble01"
SQUARE = "function (x) { progress(); return x * x; }"


def task_request(worker_id: str = WORKER_ID, fetch_state: int = 1, **extra: Any) -> dict[str, Any]:
    """requestTask@3 data shaped like dcp-client 5.6.1's (the fields the double reads, and a few more)."""
    return {
        "targetLoad": {"cpu": 1, "gpu": 0, "longSlices": 1},
        "coreStats": {"worker": worker_id, "lCores": 2, "pCores": 2, "sandbox": 1},
        "capabilities": 80,
        "paymentAddress": ADDRESS_11,
        "jobIds": [],
        "workerComputeGroups": [{"joinKey": "public", "joinHashHash": "eh1-00"}],
        "minimumWage": {"CPU": 0, "GPU": 0, "in": 0, "out": 0},
        "unresolvedJobs": [],
        "rejectedJobs": [],
        "fetchState": fetch_state,
        **extra,
    }


def fetch_task(client: DcpNodeClient, **request: Any) -> dict[str, Any]:
    reply = client.request("requestTask@3", task_request(**request))
    assert reply["success"] is True, reply
    payload: dict[str, Any] = reply["payload"]
    return payload


def authorization_of(payload: dict[str, Any]) -> dict[str, Any]:
    """What the supervisor keeps of a task: the payload without its body, verbatim."""
    return {key: value for key, value in payload.items() if key != "body"}


def result_v2(value: Any) -> dict[str, Any]:
    """resultV2 as dcp-client builds it for a KVIN-serialized value (KVIN in KVIN)."""
    inner = kvin.serialize(value)
    return {
        "_serializeVerId": "v9",
        "what": {"raw": {"string": inner, "method": "kvin", "MIMEType": "application/x-kvin"}},
    }


def submit(
    client: DcpNodeClient,
    job_id: str,
    n: int,
    value: Any,
    authorization: dict[str, Any],
    worker_id: str = WORKER_ID,
) -> dict[str, Any]:
    return client.request(
        "result",
        {
            "slice": n,
            "job": job_id,
            "worker": worker_id,
            "paymentAddress": ADDRESS_11,
            "metrics": {
                "CPUTime": 1,
                "GPUTime": 0,
                "CPUDensity": 1,
                "GPUDensity": 0,
                "InDataSize": 3,
                "OutDataSize": 3,
            },
            "authorizationMessage": authorization,
            "resultV2": result_v2(value),
        },
    )


def http_get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["content-type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["content-type"], error.read().decode()


def test_job_mode_is_off_until_turned_on(
    scheduler_double: SchedulerDouble, node_clients: ClientFactory
) -> None:
    double = scheduler_double
    client, _ = connect(double, node_clients)
    data = task_request()
    assert client.request("requestTask@3", data) == {"success": True, "payload": data}  # echo, as before
    double.serve_jobs()
    payload = fetch_task(client)
    # The no-work answer: a signed authorization for nothing, and a body without newJobs.
    assert payload["owner"] == double.address
    assert payload["auth"] == {"workerId": WORKER_ID, "authSlices": {}}
    assert payload["body"] == {}
    assert set(payload["signature"]) == {"r", "s", "v"}
    assert [r["data"] for r in double.task_requests()] == [data]


def test_add_job_refuses_bad_jobs(scheduler_double: SchedulerDouble) -> None:
    double = scheduler_double
    cases: list[tuple[dict[str, Any], str]] = [
        ({"work_function": "", "slices": [1]}, "workFunction"),
        ({"work_function": SQUARE, "slices": [1], "delivery": "ftp"}, "delivery"),
        ({"work_function": SQUARE, "slices": [1], "slices_per_task": 0}, "slicesPerTask"),
        ({"work_function": SQUARE, "slices": [1], "job_id": "has-a-dash"}, "jobId"),
        ({"work_function": SQUARE, "slices": [1], "faults": {"nope": True}}, "unknown fault"),
        ({"work_function": SQUARE, "slices": [1], "faults": {"badDatum": ["x"]}}, "slice numbers"),
        ({"work_function": SQUARE, "slices": [1], "faults": {"artifacts": {"x": {}}}}, "unknown artifact"),
    ]
    for bad, match in cases:
        with pytest.raises(SchedulerDoubleError, match=match):
            double.add_job(**bad)
    assert double.add_job(SQUARE, [1], job_id="fixed") == "fixed"
    with pytest.raises(SchedulerDoubleError, match="exists"):
        double.add_job(SQUARE, [1], job_id="fixed")
    with pytest.raises(SchedulerDoubleError, match="no job"):
        double.job_status("missing")


def test_tasks_hand_out_job_and_slice_messages(
    scheduler_double: SchedulerDouble, node_clients: ClientFactory
) -> None:
    double = scheduler_double
    arguments = [{"k": [1, 2]}, "text"]
    job_id = double.add_job(
        SQUARE, list(range(1, 26)), arguments=arguments, name="squares", slices_per_task=10
    )
    assert re.fullmatch(r"[0-9A-Za-z]{22}", job_id)
    client, _ = connect(double, node_clients)

    payload = fetch_task(client)
    assert set(payload) == {"owner", "signature", "auth", "body"}
    assert payload["owner"] == double.address
    assert payload["auth"] == {"workerId": WORKER_ID, "authSlices": {job_id: list(range(1, 11))}}
    body = payload["body"]
    assert set(body) == {"newJobs", "task", "computeGroupOrigins"}
    base = f"{double.url}job-{job_id}/"
    assert body["newJobs"] == {
        job_id: {
            "jobId": job_id,
            "jobCgId": f"{job_id}-doublePublicGroup",
            "codeLocation": base + "work-function.js",
            "argumentsLocation": [
                {"argIndex": 0, "value": base + "argument/0"},
                {"argIndex": 1, "value": base + "argument/1"},
            ],
            "useStrict": False,
            "dependencies": [],
            "requirePath": [],
            "modulePath": [],
            "public": {"name": "squares", "description": "a job served by the scheduler double", "link": ""},
            "needCapabilities": 64,
            "worktime": {"name": "map-basic", "version": "^1.0.0"},
            "metrics": {
                "sliceCPUTime": 0,
                "sliceGPUTime": 0,
                "sliceCPUDensity": 1,
                "sliceGPUDensity": 0,
                "sliceInDataSize": 0,
                "sliceOutDataSize": 0,
                "lastSliceNumber": 0,
                "measuredSlices": 0,
                "alpha": 0.5,
            },
            "workerConsole": False,
            "almostDone": False,
            "localExec": False,
            "discrete": False,
        }
    }
    assert body["task"][job_id][0] == {
        "sliceNumber": 1,
        "jobId": job_id,
        "datumUri": base + "slice/1",
        "isEstimationSlice": False,
        "isLongSlice": False,
        "resultStorageType": "values",
    }
    assert [m["sliceNumber"] for m in body["task"][job_id]] == list(range(1, 11))
    assert body["computeGroupOrigins"] == {}

    # Every task carries the job's message again; slices go out once each.
    second, third = fetch_task(client), fetch_task(client)
    assert second["auth"]["authSlices"] == {job_id: list(range(11, 21))}
    assert third["auth"]["authSlices"] == {job_id: list(range(21, 26))}
    assert set(second["body"]["newJobs"]) == {job_id}
    assert fetch_task(client)["body"] == {}
    status = double.job_status(job_id)
    assert status["pending"] == [] and status["held"] == list(range(1, 26))
    assert set(status["holders"].values()) == {WORKER_ID}
    assert len(status["taskRequests"]) == 4 and status["taskRequests"][0] == task_request()

    # The artifacts, over HTTP from the double's own origin.
    assert http_get(base + "work-function.js") == (200, "application/javascript", SQUARE)
    code, content_type, text = http_get(base + "argument/0")
    assert (code, content_type, kvin.deserialize(text)) == (200, "application/x-kvin", {"k": [1, 2]})
    assert kvin.deserialize(http_get(base + "argument/1")[2]) == "text"
    assert kvin.deserialize(http_get(base + "slice/25")[2]) == 25
    assert http_get(base + "slice/26")[0] == 404
    assert double.job_status(job_id)["fetches"] == {
        "work-function.js": 1,
        "argument/0": 1,
        "argument/1": 1,
        "slice/25": 1,
    }
    assert_no_crash(double)


def test_data_delivery_encodes_like_encode_uri(
    scheduler_double: SchedulerDouble, node_clients: ClientFactory
) -> None:
    double = scheduler_double
    datum = "100% #;,/?:@&=+$ ü € \u2028 {x}"
    job_id = double.add_job(SQUARE, [datum, [1.5, None]], arguments=[{"a": "b c"}], delivery="data")
    client, _ = connect(double, node_clients)
    body = fetch_task(client)["body"]
    job = body["newJobs"][job_id]
    code_uri = job["codeLocation"]
    assert code_uri.startswith("data:text/plain;charset=utf-8,")
    assert urllib.parse.unquote(code_uri.split(",", 1)[1]) == SQUARE
    argument_uri = job["argumentsLocation"][0]["value"]
    assert argument_uri.startswith("data:application/x-kvin,")
    assert kvin.deserialize(urllib.parse.unquote(argument_uri.split(",", 1)[1])) == {"a": "b c"}
    first, second = (m["datumUri"] for m in body["task"][job_id])
    # encodeURI escapes "%", quotes, braces, spaces and non-ASCII; it leaves the reserved characters.
    assert "%25" in first and "#;,/?:@&=+$" in first and " " not in first
    assert kvin.deserialize(urllib.parse.unquote(first.split(",", 1)[1])) == datum
    assert kvin.deserialize(urllib.parse.unquote(second.split(",", 1)[1])) == [1.5, None]
    assert double.job_status(job_id)["fetches"] == {}


def test_results_begins_returns_and_emits_are_recorded(
    scheduler_double: SchedulerDouble, node_clients: ClientFactory
) -> None:
    double = scheduler_double
    job_id = double.add_job(SQUARE, [1, 2, 3, 4])
    client, _ = connect(double, node_clients)
    payload = fetch_task(client)
    authorization = authorization_of(payload)

    begin = {"sliceNumbers": [1], "job": job_id, "authorizationMessage": authorization, "status": "begin"}
    assert client.request("status", {"worker": WORKER_ID, "slices": [begin]}) == {
        "success": True,
        "payload": {},
    }
    accepted = submit(client, job_id, 1, 1, authorization)
    assert accepted["success"] is True
    assert accepted["payload"]["slicePaymentAmount"] == "0.000001"
    assert {"sliceCPUTime", "sliceCPUDensity", "sliceGPUTime", "sliceGPUDensity"} <= set(
        accepted["payload"]["metrics"]
    )
    assert submit(client, job_id, 1, 1, authorization)["success"] is True  # a duplicate is counted
    assert submit(client, job_id, 2, {"x": [4, "four"]}, authorization)["success"] is True
    tampered = json.loads(json.dumps(authorization))
    tampered["auth"]["authSlices"][job_id].append(99)
    assert submit(client, job_id, 3, 9, tampered)["success"] is True

    returned = {
        "sliceNumbers": [4],
        "job": job_id,
        "authorizationMessage": authorization,
        "status": "return",
        "reason": "EFETCH",
        "isEstimationSlice": False,
    }
    assert client.request("status", {"worker": WORKER_ID, "slices": [returned]})["success"] is True
    emit = {
        "eventName": "console",
        "payload": {"level": "log", "message": "hi"},
        "job": job_id,
        "slice": 2,
        "worker": WORKER_ID,
        "authorizationMessage": authorization,
    }
    assert client.request("workEmit", emit) == {"success": True, "payload": {}}
    unknown = submit(client, job_id, 7, 49, authorization)
    assert unknown["success"] is False and unknown["payload"]["code"] == "ENOSLICE"

    status = double.job_status(job_id)
    assert status["done"] == {1: 1, 2: {"x": [4, "four"]}, 3: 9}
    assert kvin.deserialize(status["doneKvin"][2]) == {"x": [4, "four"]}
    assert status["submissions"] == {1: 2, 2: 1, 3: 1}
    assert status["begins"] == {1: 1}
    assert status["pending"] == [4] and status["held"] == []
    assert status["returns"] == [{"sliceNumber": 4, "reason": "EFETCH", "workerId": WORKER_ID}]
    assert [(e["eventName"], e["sliceNumber"], e["authorizationOk"]) for e in status["emits"]] == [
        ("console", 2, True)
    ]
    records = status["results"]
    assert [(r["sliceNumber"], r["count"], r["authorizationOk"]) for r in records] == [
        (1, 1, True),
        (1, 2, True),
        (2, 1, True),
        (3, 1, False),
    ]
    assert records[3]["authorizationError"] == "not issued by this scheduler (or altered)"
    assert records[0]["workerId"] == WORKER_ID and records[0]["paymentAddress"] == ADDRESS_11
    assert records[0]["metrics"]["InDataSize"] == 3
    assert [t["operation"] for t in double.unknown_job_traffic()] == ["result"]
    assert [e["sliceNumber"] for e in session_events(double, "result")] == [1, 1, 2, 3]


def test_job_ids_and_returning_all_slices(
    scheduler_double: SchedulerDouble, node_clients: ClientFactory
) -> None:
    double = scheduler_double
    first = double.add_job(SQUARE, [1, 2, 3], slices_per_task=2)
    second = double.add_job(SQUARE, [4, 5, 6], slices_per_task=2)
    client, _ = connect(double, node_clients)
    assert fetch_task(client, jobIds=[second])["auth"]["authSlices"] == {second: [1, 2]}
    assert fetch_task(client, unresolvedJobs=[first])["auth"]["authSlices"] == {second: [3]}
    both = fetch_task(client, worker_id="AnotherWorker000000000")
    assert both["auth"] == {"workerId": "AnotherWorker000000000", "authSlices": {first: [1, 2]}}

    # Shutdown: requestTask@3 with fetchState 16 and the worker's sealed {id}; its slices come back.
    sealed = double.sign(KEY_11, {"id": WORKER_ID})
    reply = client.request(
        "requestTask@3", {"paymentAddress": ADDRESS_11, "fetchState": 16, "returnAllSlices": sealed}
    )
    assert reply["success"] is True and reply["payload"]["body"] == {}
    assert double.job_status(second)["pending"] == [1, 2, 3]
    assert double.job_status(first)["held"] == [1, 2]  # the other worker's
    assert [r["reason"] for r in double.job_status(second)["returns"]] == ["returnAllSlices"] * 3
    returned = double.wait_event(lambda e: e.get("event") == "return")
    assert returned["slices"] == {second: [1, 2, 3]} and returned["workerId"] == WORKER_ID


def test_an_explicit_handle_overrides_the_job_logic(
    scheduler_double: SchedulerDouble, node_clients: ClientFactory
) -> None:
    double = scheduler_double
    job_id = double.add_job(SQUARE, [1])
    client, _ = connect(double, node_clients)
    double.handle("requestTask@3", "error", error={"message": "overloaded", "code": "EBUSY"})
    refused = client.request("requestTask@3", task_request())
    assert refused["success"] is False and refused["payload"]["code"] == "EBUSY"
    assert double.job_status(job_id)["pending"] == [1]
    assert double.task_requests() == []


def test_faults_in_slice_messages_data_and_signatures(
    scheduler_double: SchedulerDouble, node_clients: ClientFactory
) -> None:
    double = scheduler_double
    faults: JobFaults = {
        "badDatum": [1],
        "missingDatumUri": [2],
        "missingSliceNumber": [3],
        "badSignature": True,
    }
    job_id = double.add_job(SQUARE, [1, 2, 3, 4], faults=faults)
    data_job = double.add_job(SQUARE, [1], delivery="data", faults={"badDatum": [1]})
    client, _ = connect(double, node_clients)
    payload = fetch_task(client)
    messages = payload["body"]["task"][job_id]
    assert http_get(messages[0]["datumUri"])[0] == 200
    with pytest.raises(kvin.KVINError):
        kvin.deserialize(http_get(messages[0]["datumUri"])[2])
    with pytest.raises(kvin.KVINError):
        kvin.deserialize(
            urllib.parse.unquote(payload["body"]["task"][data_job][0]["datumUri"].split(",", 1)[1])
        )
    assert "datumUri" not in messages[1] and messages[1]["sliceNumber"] == 2
    assert "sliceNumber" not in messages[2] and "datumUri" in messages[2]
    assert payload["auth"]["authSlices"] == {job_id: [1, 2, 3, 4], data_job: [1]}  # still listed

    # A garbage signature: well-formed, but not the scheduler's.
    assert submit(client, job_id, 4, 16, authorization_of(payload))["success"] is True
    record = double.job_status(job_id)["results"][0]
    assert record["authorizationOk"] is False and record["authorizationError"] == "bad signature"

    assert double.fault(job_id, badSignature=None, badDatum=None) == {
        "missingDatumUri": [2],
        "missingSliceNumber": [3],
    }
    with pytest.raises(SchedulerDoubleError, match="unknown fault"):
        double.fault(job_id, explode=True)


def test_artifact_faults_answer_with_status_and_delay(scheduler_double: SchedulerDouble) -> None:
    double = scheduler_double
    artifacts: dict[str, dict[str, int | float]] = {
        "work-function.js": {"status": 404, "times": 1},
        "slice/1": {"delayMs": 300},
        "argument/0": {"status": 500},
    }
    job_id = double.add_job(SQUARE, [1], arguments=[2], faults={"artifacts": artifacts})
    base = f"{double.url}job-{job_id}/"
    assert http_get(base + "work-function.js")[0] == 404
    assert http_get(base + "work-function.js") == (200, "application/javascript", SQUARE)  # only once
    assert http_get(base + "argument/0")[0] == 500
    assert http_get(base + "argument/0")[0] == 500
    started = time.monotonic()
    assert http_get(base + "slice/1")[0] == 200
    assert time.monotonic() - started >= 0.3
    assert double.job_status(job_id)["fetches"] == {"work-function.js": 2, "argument/0": 2, "slice/1": 1}


def test_drop_on_first_result_still_answers_it_once(
    scheduler_double: SchedulerDouble, node_clients: ClientFactory
) -> None:
    double = scheduler_double
    job_id = double.add_job(SQUARE, [1, 2], faults={"dropOnFirstResult": True})
    client, dcpsid = connect(double, node_clients)
    authorization = authorization_of(fetch_task(client))
    assert submit(client, job_id, 1, 1, authorization)["success"] is True
    client.wait_event("disconnect")
    assert submit(client, job_id, 2, 4, authorization)["success"] is True  # no second drop
    status = double.job_status(job_id)
    assert status["submissions"] == {1: 1, 2: 1}
    assert client.state()["dcpsid"] == dcpsid  # the session was resumed
    assert len([e for e in double.events() if e.get("event") == "disconnect"]) == 1
    assert_no_crash(double)


def test_the_web_config_names_the_double_for_every_service(scheduler_double: SchedulerDouble) -> None:
    double = scheduler_double
    code, content_type, text = http_get(double.url + "etc/dcp-config.kvin?ver=2.1.0")
    assert (code, content_type) == (200, "application/x-kvin")
    prepared = json.loads(text)
    assert prepared["_serializeVerId"] == "v9"

    def plain(po: Any) -> Any:
        """The prepared KVIN objects of this file, read: plain objects, raw values, DcpURLs as text."""
        if "raw" in po:
            return po["raw"]
        if po.get("ctr") == "dcpUrl$$DcpURL":
            return po["arg"]
        return {key: plain(value) for key, value in po["ps"].items()}

    config = plain(prepared["what"])
    here = {"location": double.url}
    assert config["scheduler"]["location"] == double.url
    assert config["scheduler"]["compatibility"]["minimum"]["dcp"] == "^5.0.0"
    for service in ("taskDistributor", "resultSubmitter", "eventRouter"):
        assert config["scheduler"]["services"][service] == here
    assert config["packageManager"] == here
