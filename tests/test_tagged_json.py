"""Tagged JSON on the Python side: to_json and from_json."""

from __future__ import annotations

import array
import datetime
import math
from typing import Any

import pytest

from dcp_worker.jsvalues import JSError, JSFunction, JSRegExp, JSSymbol, Undefined
from dcp_worker.tagged_json import from_json, to_json


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -17,
        2**53 - 1,
        2**53,
        -(2**80),
        1.5,
        math.inf,
        -math.inf,
        "text with \x00 and \U0001f600",
        Undefined,
        [1, [2, [3]]],
        {"a": {"b": [None, Undefined]}},
        {"$dcp": "not a tag", "other": 1},
        array.array("d", [1.5, -2.25]),
        array.array("b", [-1, 2]),
        array.array("H", [65535]),
        array.array("q", [-(2**62)]),
        array.array("Q", [2**63]),
        datetime.datetime(2021, 5, 6, 7, 8, 9, 123000, tzinfo=datetime.UTC),
        JSRegExp("a|b", "gu"),
        JSError("TypeError", "bad", "TypeError: bad\n    at x"),
        JSSymbol("s"),
        {1, 2, 3},
    ],
    ids=repr,
)
def test_round_trip(value: Any) -> None:
    assert from_json(to_json(value)) == value


def test_nan_and_negative_zero_round_trip() -> None:
    assert math.isnan(from_json(to_json(math.nan)))
    negative_zero = from_json(to_json(-0.0))
    assert negative_zero == 0 and math.copysign(1, negative_zero) == -1


def test_bytes_like_values_become_uint8_arrays() -> None:
    for value in (b"\x00\xff", bytearray(b"\x00\xff"), memoryview(b"\x00\xff")):
        assert to_json(value) == {"$dcp": "Uint8Array", "base64": "AP8="}


def test_tuples_and_frozensets() -> None:
    assert to_json((1, (2,))) == [1, [2]]
    assert from_json(to_json(frozenset({"a"}))) == {"a"}


def test_naive_datetimes_are_utc() -> None:
    assert to_json(datetime.datetime(2000, 1, 1)) == {"$dcp": "Date", "value": "2000-01-01T00:00:00.000Z"}


def test_integers_beyond_doubles_become_bigints() -> None:
    assert to_json(2**53) == {"$dcp": "bigint", "value": str(2**53)}
    assert to_json(2**53 - 1) == 2**53 - 1


def test_decoding_every_javascript_only_form() -> None:
    assert from_json({"$dcp": "ArrayBuffer", "base64": "AQI="}) == b"\x01\x02"
    assert from_json({"$dcp": "DataView", "base64": "AQI="}) == b"\x01\x02"
    assert from_json({"$dcp": "Float16Array", "base64": "ADw="}) == [1.0]
    assert from_json({"$dcp": "Uint8ClampedArray", "base64": "/w=="}) == array.array("B", [255])
    assert from_json({"$dcp": "Date", "value": None}) is None
    assert from_json({"$dcp": "Function", "name": "f"}) == JSFunction("f")
    assert from_json({"$dcp": "Map", "entries": [[[1], 2]]}) == [([1], 2)]
    assert from_json({"$dcp": "Set", "values": [[1]]}) == [[1]]


@pytest.mark.parametrize(
    "value",
    [object(), {1: "non-string key"}, array.array("u", "x"), 1j],
    ids=["object", "int-key", "unicode-array", "complex"],
)
def test_values_javascript_cannot_receive(value: Any) -> None:
    with pytest.raises(TypeError):
        to_json(value)


def test_a_value_that_contains_itself_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(TypeError, match="contains itself"):
        to_json(loop)


def test_repeated_but_acyclic_values_are_fine() -> None:
    shared = [1]
    assert to_json([shared, shared]) == [[1], [1]]


def test_unknown_tags_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        from_json({"$dcp": "Nonsense"})


def test_undefined_is_a_falsy_singleton() -> None:
    assert not Undefined
    assert repr(Undefined) == "Undefined"
    assert type(Undefined)() is Undefined
