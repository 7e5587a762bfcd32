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
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import scheduler_double as scheduler_double_module
from scheduler_double import (
    DcpNodeClient,
    Message,
    SchedulerDouble,
    SchedulerDoubleError,
)

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
