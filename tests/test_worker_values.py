"""Job values in (data: URIs, HTTP bodies, allowed origins) and results out (resultV2)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from kvin_peer import KvinPeer
from loopback_http import serving

from dcp_worker import kvin
from dcp_worker.errors import ConnectError, JobValueError
from dcp_worker.jsvalues import Undefined
from dcp_worker.worker.artifacts import ArtifactFetcher, OriginPolicy
from dcp_worker.worker.services import discover
from dcp_worker.worker.values import decode_data_uri, result_v2


def encode_uri(text: str) -> str:
    """What JavaScript's encodeURI leaves alone, left alone."""
    return quote(text, safe=";,/?:@&=+$-_.!~*'()#")


@pytest.mark.parametrize(
    ("uri", "value"),
    [
        (
            "data:application/x-kvin," + encode_uri(kvin.serialize({"a": [1, 2.5, None], "s": "é %2C"})),
            {"a": [1, 2.5, None], "s": "é %2C"},
        ),
        ("data:application/json," + encode_uri('{"x": [1, "two"]}'), {"x": [1, "two"]}),
        ("data:,hello%20world", "hello world"),
        ("data:text/plain;charset=utf-8,caf%C3%A9", "café"),
        ("data:application/octet-stream;base64," + base64.b64encode(b"\x00\xff").decode(), b"\x00\xff"),
        ("data:application/json;base64," + base64.b64encode(b"[true]").decode(), [True]),
    ],
)
def test_data_uris(uri: str, value: Any) -> None:
    assert decode_data_uri(uri) == value


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("data:application/x-kvin,not%20kvin", "not KVIN"),
        ("data:application/json,%7B", "not JSON"),
        ("data:text/plain,%FF", "not UTF-8"),
        ("data:application/json;base64,!!!", "does not decode"),
        ("data:no-comma", "without a comma"),
    ],
)
def test_bad_data_uris_are_named(uri: str, words: str) -> None:
    with pytest.raises(JobValueError, match=words):
        decode_data_uri(uri)


def test_a_node_made_kvin_data_uri(kvin_peer: KvinPeer) -> None:
    text = kvin_peer.serialize("{ big: 12345678901234567890n, when: new Date(0), list: [1, , 3] }")
    value = decode_data_uri("data:application/x-kvin," + encode_uri(text))
    assert value["big"] == 12345678901234567890
    assert value["when"].timestamp() == 0


@pytest.mark.parametrize(
    ("value", "method", "inner"),
    [
        ("text", "json", '"text"'),
        (True, "json", "true"),
        (42, "kvin", None),
        (-0.0, "kvin", None),
        ({"a": [1, 2]}, "kvin", None),
        (Undefined, "kvin", None),
    ],
)
def test_result_v2_is_what_dcp_client_reads(
    kvin_peer: KvinPeer, value: Any, method: str, inner: str | None
) -> None:
    wire = result_v2(value)
    outer = kvin.deserialize(json.dumps(wire))
    assert outer["method"] == method
    assert outer["MIMEType"] == ("application/json" if method == "json" else "application/x-kvin")
    if inner is not None:
        assert outer["string"] == inner
    else:
        assert kvin.deserialize(outer["string"]) == value or value is Undefined
    # And node's kvin reads the outer envelope too.
    equal, _ = kvin_peer.deserialize_equals(
        json.dumps(wire),
        f"({{string: {json.dumps(outer['string'])}, method: {json.dumps(method)}, MIMEType: {json.dumps(outer['MIMEType'])}}})",
    )
    assert equal


def test_origin_policy() -> None:
    policy = OriginPolicy("https://scheduler.example/", ["http://localhost:1234"])
    assert policy.allows("https://scheduler.example/job/1", "fetchData")
    assert policy.allows("https://cdn.scheduler.example/x", "fetchArguments")
    assert not policy.allows("http://scheduler.example/x", "fetchData")  # another scheme
    assert not policy.allows("https://evil-scheduler.example/x", "fetchData")
    assert not policy.allows("https://scheduler.example/x", "workerFetch")
    assert policy.allows("http://LOCALHOST:1234/anything", "workerFetch")
    assert not policy.allows("https://data.example/x", "fetchData")
    policy.grant("https://data.example", "fetchData")
    assert policy.allows("https://data.example/x", "fetchData")
    assert not policy.allows("https://data.example/x", "fetchWorkFunctions")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def serving_routes(routes: dict[str, Handler]) -> AbstractAsyncContextManager[str]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    return serving(app)


def fetch_all(
    uris: list[tuple[str, str]], routes: dict[str, Handler], allowed: bool = True, max_bytes: int = 1 << 20
) -> list[Any]:
    async def scenario() -> list[Any]:
        async with serving_routes(routes) as base, aiohttp.ClientSession() as http:
            policy = OriginPolicy(base if allowed else "https://elsewhere.example/")
            fetcher = ArtifactFetcher(policy, http, timeout=1, max_bytes=max_bytes)
            outcomes: list[Any] = []
            for path, purpose in uris:
                try:
                    outcomes.append(await fetcher.fetch(base + path, purpose))
                except JobValueError as error:
                    outcomes.append(error)
            return outcomes

    return asyncio.run(scenario())


async def kvin_body(request: web.Request) -> web.Response:
    return web.Response(text=kvin.serialize([1, {"two": 2}]), content_type="application/x-kvin")


async def code(request: web.Request) -> web.Response:
    return web.Response(text="function (x) { return x; }", content_type="application/javascript")


async def missing(request: web.Request) -> web.Response:
    return web.Response(status=404)


async def huge(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * 4096, content_type="application/octet-stream")


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(10)
    return web.Response(text="late")


def test_fetching_over_http() -> None:
    routes = {"/value": kvin_body, "/code": code, "/missing": missing, "/huge": huge}
    value, source, absent, too_big = fetch_all(
        [
            ("/value", "fetchData"),
            ("/code", "fetchWorkFunctions"),
            ("/missing", "fetchArguments"),
            ("/huge", "fetchData"),
        ],
        routes,
        max_bytes=1024,
    )
    assert value == [1, {"two": 2}]
    assert source == "function (x) { return x; }"
    assert isinstance(absent, JobValueError) and "HTTP 404" in str(absent) and "fetchArguments" in str(absent)
    assert isinstance(too_big, JobValueError) and "larger than 1024 bytes" in str(too_big)


def test_a_disallowed_origin_is_refused_without_a_request() -> None:
    [refused] = fetch_all([("/value", "fetchData")], {"/value": kvin_body}, allowed=False)
    assert isinstance(refused, JobValueError) and "EPERM_ORIGIN" in str(refused)


def test_a_slow_server_times_out_with_a_clear_error() -> None:
    [late] = fetch_all([("/slow", "fetchData")], {"/slow": slow})
    assert isinstance(late, JobValueError) and "fetchData" in str(late)


def test_other_schemes_are_refused() -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            fetcher = ArtifactFetcher(OriginPolicy("https://s.example/"), http)
            with pytest.raises(JobValueError, match="only data:, http: and https:"):
                await fetcher.fetch("file:///etc/passwd", "fetchData")
            with pytest.raises(JobValueError, match="no URI"):
                await fetcher.fetch(None, "fetchData")

    asyncio.run(scenario())


def discover_from(config_text: str | None, status: int = 200) -> Any:
    async def config(request: web.Request) -> web.Response:
        return web.Response(status=status, text=config_text or "", content_type="application/x-kvin")

    async def scenario() -> Any:
        async with serving_routes({"/etc/dcp-config.kvin": config}) as base, aiohttp.ClientSession() as http:
            try:
                return await discover(http, base + "/")
            except ConnectError as error:
                return error

    return asyncio.run(scenario())


def test_services_come_from_the_scheduler_configuration(kvin_peer: KvinPeer) -> None:
    text = kvin_peer.serialize(
        "{scheduler: {compatibility: {minimum: {dcp: '^5.0.0'}}, services: {"
        "taskDistributor: {location: new URL('https://td.example/td/')},"
        "resultSubmitter: {location: {href: 'https://rs.example/'}}}}}"
    )
    services = discover_from(text)
    assert services.task_distributor == "https://td.example/td/"
    assert services.result_submitter == "https://rs.example/"
    assert services.event_router.startswith("http://127.0.0.1:")  # not named: the scheduler's own


@pytest.mark.parametrize(
    ("text", "status", "words"),
    [
        (None, 404, "HTTP 404"),
        ("not kvin", 200, "is not KVIN"),
        (
            '{"_serializeVerId":"v9","what":{"raw":{"scheduler":{"compatibility":{"minimum":{"dcp":"^6.0.0"}}}}}}',
            200,
            "needs DCP protocol ^6.0.0",
        ),
    ],
)
def test_an_unusable_scheduler_configuration_is_named(text: str | None, status: int, words: str) -> None:
    refused = discover_from(text, status)
    assert isinstance(refused, ConnectError) and words in str(refused)
