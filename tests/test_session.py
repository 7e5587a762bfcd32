"""The DCP session layer against dcp-client's own protocol server (tests/scheduler/double.js)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from loopback_http import serving
from scheduler_double import SchedulerDouble, SchedulerDoubleError

from dcp_worker.errors import (
    ConnectError,
    NonceError,
    PeerIdentityError,
    RemoteError,
    SessionClosedError,
    SignatureError,
)
from dcp_worker.protocol.identity import Identity
from dcp_worker.protocol.identity_cache import IdentityCache
from dcp_worker.protocol.keystore import Keystore
from dcp_worker.protocol.sealed import seal
from dcp_worker.protocol.session import Session, SessionOptions, open_session, open_sessions

T = TypeVar("T")
SCHEDULER_KEY = Identity(bytes(range(1, 33)))


def run(coroutine: Awaitable[T], timeout: float = 60) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coroutine

    return asyncio.run(bounded())


async def echo_handler(operation: str, data: Any) -> Any:
    return {"operation": operation, "data": data}


@pytest.fixture
def known_scheduler(tmp_path: Path) -> Iterator[SchedulerDouble]:
    """A double whose identity key the test holds, so it can forge the scheduler's messages."""
    keystore = tmp_path / "scheduler.keystore"
    Keystore.create(SCHEDULER_KEY, "").write(keystore)
    with SchedulerDouble(keystore=keystore) as double:
        assert double.address == SCHEDULER_KEY.address
        yield double


def test_a_session_opens_exchanges_requests_and_closes(scheduler_double: SchedulerDouble) -> None:
    identity = Identity.generate()
    scheduler_double.handle("fixed", "value", value={"answer": [1, 2.5, "é"]})
    scheduler_double.handle("broken", "error", error={"message": "no such job", "code": "ENOJOB"})

    async def scenario() -> Session:
        async with open_session(scheduler_double.url, identity) as session:
            assert session.transport_name == "websocket"
            assert session.peer_address == scheduler_double.address
            assert await session.request("echo", {"a": [1, None, "\u2028"]}) == {"a": [1, None, "\u2028"]}
            assert await session.request("fixed") == {"answer": [1, 2.5, "é"]}
            with pytest.raises(RemoteError) as refused:
                await session.request("broken", 1)
            assert refused.value.code == "ENOJOB"
            assert "no such job" in str(refused.value)
            await session.keepalive()
        return session

    session = run(scenario())
    assert isinstance(session.closed.result(), SessionClosedError)
    with pytest.raises(SessionClosedError):
        run(session.request("echo", 1))
    [record] = [s for s in scheduler_double.sessions() if s["dcpsid"] == session.dcpsid]
    assert record["peerAddress"] == identity.address
    scheduler_double.wait_event(lambda e: e.get("event") == "closed" and e.get("dcpsid") == session.dcpsid)
    assert [r["operation"] for r in scheduler_double.received()] == ["echo", "fixed", "broken"]


def test_many_concurrent_requests_travel_in_batches_and_arrive_once(
    scheduler_double: SchedulerDouble,
) -> None:
    async def scenario() -> list[Any]:
        async with open_session(scheduler_double.url, Identity.generate()) as session:
            return await asyncio.gather(*(session.request("echo", {"n": n}) for n in range(200)))

    assert run(scenario()) == [{"n": n} for n in range(200)]
    received = scheduler_double.received()
    assert sorted(r["data"]["n"] for r in received) == list(range(200))
    assert len({r["messageId"] for r in received}) == 200


def test_long_polling_works_where_websockets_are_not_used(scheduler_double: SchedulerDouble) -> None:
    async def scenario() -> tuple[str | None, Any]:
        options = SessionOptions(transports=("polling",))
        async with open_session(scheduler_double.url, Identity.generate(), options=options) as session:
            return session.transport_name, await session.request("echo", "x" * 100_000)

    assert run(scenario()) == ("polling", "x" * 100_000)


@contextlib.asynccontextmanager
async def websocket_refusing_proxy(target: str) -> AsyncIterator[str]:
    """An HTTP proxy to ``target`` on a free loopback port that refuses websocket upgrades, as
    some corporate proxies do."""
    client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def forward(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return web.Response(status=400, text="no websockets here")
        headers = {key: value for key, value in request.headers.items() if key.lower() != "host"}
        url = target.rstrip("/") + request.path_qs
        try:
            async with client.request(
                request.method, url, data=await request.read(), headers=headers
            ) as answer:
                body = await answer.read()
                return web.Response(status=answer.status, body=body, content_type=answer.content_type)
        except (aiohttp.ClientError, RuntimeError):  # RuntimeError: the proxy is closing
            return web.Response(status=502)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    try:
        async with serving(app) as origin:
            try:
                yield origin + "/"
            finally:
                await client.close()  # ends forwards still waiting on a long poll, before the server stops
    finally:
        await client.close()


def test_where_websockets_are_refused_the_session_falls_back_to_long_polling(
    scheduler_double: SchedulerDouble,
) -> None:
    async def scenario() -> tuple[str | None, Any]:
        async with (
            websocket_refusing_proxy(scheduler_double.url) as url,
            open_session(url, Identity.generate()) as session,
        ):
            return session.transport_name, await session.request("echo", {"via": "polling"})

    assert run(scenario()) == ("polling", {"via": "polling"})


def test_large_messages_go_in_fragments_both_ways(scheduler_double: SchedulerDouble) -> None:
    # Past 300000 UTF-16 units a message must be fragmented; astral characters count twice.
    payload = {"text": "ab\U0001f600" * 150_000}

    async def scenario() -> Any:
        async with open_session(scheduler_double.url, Identity.generate()) as session:
            return await session.request("echo", payload)

    assert run(scenario()) == payload


def test_the_scheduler_can_call_the_worker(scheduler_double: SchedulerDouble) -> None:
    async def handler(operation: str, data: Any) -> Any:
        if operation == "fail":
            raise ValueError("cannot do that")
        return await echo_handler(operation, data)

    async def scenario() -> tuple[Any, str]:
        async with open_session(scheduler_double.url, Identity.generate(), handler) as session:
            assert session.dcpsid is not None
            answer = await asyncio.to_thread(scheduler_double.request, session.dcpsid, "ping", {"k": 1})
            with pytest.raises(SchedulerDoubleError) as failed:
                await asyncio.to_thread(scheduler_double.request, session.dcpsid, "fail", None)
            return answer, str(failed.value)

    answer, failure = run(scenario())
    assert answer == {"operation": "ping", "data": {"k": 1}}
    assert "cannot do that" in failure


def test_a_dropped_socket_mid_request_is_resumed_and_answered_exactly_once(
    scheduler_double: SchedulerDouble,
) -> None:
    scheduler_double.handle("flaky", "drop")

    async def scenario() -> list[Any]:
        async with open_session(scheduler_double.url, Identity.generate()) as session:
            first = await session.request("flaky", {"n": -1})
            rest = await asyncio.gather(
                *(session.request("flaky" if n % 3 == 0 else "echo", {"n": n}) for n in range(30))
            )
            return [first, *rest]

    answers = run(scenario())
    assert answers == [{"n": n} for n in range(-1, 30)]
    received = scheduler_double.received()
    assert sorted(r["data"]["n"] for r in received) == list(range(-1, 30))
    assert len({r["messageId"] for r in received}) == len(received)
    assert len({r["dcpsid"] for r in received}) == 1


def test_the_session_survives_the_scheduler_cutting_its_socket(scheduler_double: SchedulerDouble) -> None:
    async def scenario() -> list[Any]:
        async with open_session(scheduler_double.url, Identity.generate()) as session:
            assert session.dcpsid is not None
            answers = [await session.request("echo", 1)]
            for n in range(3):
                await asyncio.to_thread(scheduler_double.drop, session.dcpsid)
                answers.append(await session.request("echo", n + 2))
            return answers

    assert run(scenario()) == [1, 2, 3, 4]
    assert len({s["dcpsid"] for s in scheduler_double.sessions() if s["dcpsid"]}) == 1


def test_a_garbled_frame_costs_the_socket_not_the_session(scheduler_double: SchedulerDouble) -> None:
    async def scenario() -> Any:
        async with open_session(scheduler_double.url, Identity.generate()) as session:
            assert session.dcpsid is not None
            # Quiet first: dcp-client's Target cannot resume a session whose socket it lost while
            # signing an ack (it repeats that ack without a nonce and then refuses every message).
            await session.request("echo", "settled")
            await asyncio.to_thread(scheduler_double.inject, session.dcpsid, "Zthis is no DCP frame")
            return await session.request("echo", "still here")

    assert run(scenario()) == "still here"


def request_body(dcpsid: str, nonce: str) -> dict[str, Any]:
    now = time.time()
    return {
        "id": "9-9-injectedinjectedinjec",
        "type": "request",
        "payload": {
            "operation": "ping",
            "data": 1,
            "allow": [],
            "validity": {"stamp": "injectedstampinjected", "ttl": 120, "time": now},
        },
        "auth": {},
        "dcpsid": dcpsid,
        "time": now,
        "ackToken": "ATt9-injectedinjectedinjec",
        "nonce": nonce,
    }


def forged(kind: str, dcpsid: str) -> str:
    if kind == "signature":
        sealed = seal(SCHEDULER_KEY, request_body(dcpsid, "NNt1-whatever"))
        return sealed.replace('"data":1', '"data":2')
    if kind == "owner":
        return seal(Identity.generate(), request_body(dcpsid, "NNt1-whatever"))
    return seal(SCHEDULER_KEY, request_body(dcpsid, "NNt1-stalestalestalestalesta"))


@pytest.mark.parametrize(
    ("kind", "error", "words"),
    [
        ("signature", SignatureError, "signature is not"),
        ("owner", PeerIdentityError, "signed by"),
        ("nonce", NonceError, "nonce"),
    ],
)
def test_forged_messages_end_the_session_with_a_clear_error(
    known_scheduler: SchedulerDouble, kind: str, error: type[Exception], words: str
) -> None:
    known_scheduler.handle("never", "ignore")

    async def scenario() -> BaseException:
        async with open_session(known_scheduler.url, Identity.generate()) as session:
            assert session.dcpsid is not None
            waiting = asyncio.ensure_future(session.request("never"))
            await asyncio.to_thread(known_scheduler.inject, session.dcpsid, forged(kind, session.dcpsid))
            with pytest.raises(error) as refused:
                await waiting
            assert session.closed.result() is refused.value
            return refused.value

    refusal = run(scenario())
    assert words in str(refusal)
    assert "\n" not in str(refusal)


def test_a_scheduler_whose_address_changed_is_refused(
    scheduler_double: SchedulerDouble, tmp_path: Path
) -> None:
    cache = IdentityCache(tmp_path / "identity-cache.json")
    cache.learn(scheduler_double.url, Identity.generate().address)

    async def scenario() -> None:
        async with open_session(
            scheduler_double.url, Identity.generate(), options=SessionOptions(identity_cache=cache)
        ):
            pass

    with pytest.raises(PeerIdentityError, match="when first met"):
        run(scenario())


def test_the_identity_cache_remembers_the_first_address(
    scheduler_double: SchedulerDouble, tmp_path: Path
) -> None:
    path = tmp_path / "identity-cache.json"

    async def scenario() -> None:
        options = SessionOptions(identity_cache=IdentityCache(path))
        async with open_session(scheduler_double.url, Identity.generate(), options=options) as session:
            await session.request("echo", 1)

    run(scenario())
    run(scenario())
    assert IdentityCache(path).known(scheduler_double.url) == scheduler_double.address


def test_nothing_listening_is_a_connect_error() -> None:
    async def scenario() -> None:
        options = SessionOptions(connect_timeout=3)
        async with open_session("http://127.0.0.1:9/", Identity.generate(), options=options):
            pass

    with pytest.raises(ConnectError, match=r"127\.0\.0\.1:9"):
        run(scenario())


def test_sessions_opened_together_are_each_their_own(scheduler_double: SchedulerDouble) -> None:
    async def scenario() -> list[Session]:
        async with open_sessions([scheduler_double.url] * 3, Identity.generate()) as sessions:
            answers = await asyncio.gather(*(s.request("echo", n) for n, s in enumerate(sessions)))
            assert answers == [0, 1, 2]
        return sessions

    sessions = run(scenario())
    assert len({session.dcpsid for session in sessions}) == 3
    assert all(isinstance(session.closed.result(), SessionClosedError) for session in sessions)


def test_one_session_that_cannot_open_closes_the_others(scheduler_double: SchedulerDouble) -> None:
    # A listener that never answers: the double's session opens at once, this one times out.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        mute = f"http://127.0.0.1:{silent.getsockname()[1]}/"

        async def scenario() -> None:
            options = SessionOptions(connect_timeout=2)
            async with open_sessions([scheduler_double.url, mute], Identity.generate(), options):
                pass

        with pytest.raises(ConnectError, match=re.escape(mute)):
            run(scenario())
    # The session that did open was closed again: the double saw it end.
    [record] = scheduler_double.sessions()
    scheduler_double.wait_event(lambda e: e.get("event") == "closed" and e.get("dcpsid") == record["dcpsid"])


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:80", "http:///nohost"])
def test_bad_service_urls_are_refused(url: str) -> None:
    async def scenario() -> None:
        async with open_session(url, Identity.generate()):
            pass

    with pytest.raises(ConnectError, match="http"):
        run(scenario())


def test_the_scheduler_closing_the_session_fails_waiting_requests(scheduler_double: SchedulerDouble) -> None:
    scheduler_double.handle("never", "ignore")

    async def scenario() -> Session:
        async with open_session(scheduler_double.url, Identity.generate()) as session:
            assert session.dcpsid is not None
            waiting = asyncio.ensure_future(session.request("never"))
            await asyncio.to_thread(scheduler_double.close_session, session.dcpsid)
            with pytest.raises(SessionClosedError, match="closed the session"):
                await waiting
            await session.closed
        return session

    session = run(scenario())
    assert isinstance(session.closed.result(), SessionClosedError)
