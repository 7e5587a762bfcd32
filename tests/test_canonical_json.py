"""The JS-canonical JSON writer against node's JSON.stringify, byte for byte."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kvin_peer import KvinPeer

from dcp_worker.json_parse import parse_json
from dcp_worker.jsvalues import Undefined
from dcp_worker.protocol.canonical_json import Verbatim, format_number, stringify


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"b": 1, "10": 2, "2": 3, "a": 4}, '{"2":3,"10":2,"b":1,"a":4}'),
        (
            {"01": 1, "4294967295": 2, "4294967294": 3, "-1": 4},
            '{"4294967294":3,"01":1,"4294967295":2,"-1":4}',
        ),
        (
            [5.0, -0.0, 1e21, 1e-7, 0.000001, 1e16, 0.5, 123.456],
            "[5,0,1e+21,1e-7,0.000001,10000000000000000,0.5,123.456]",
        ),
        ([math.nan, math.inf, -math.inf], "[null,null,null]"),
        ([2**53, 2**60, -(2**64)], "[9007199254740992,1152921504606847000,-18446744073709552000]"),
        ({"a": Undefined, "b": [Undefined]}, '{"b":[null]}'),
        ('"\\/\x00\x08\x1f\x7f\u2028é', '"\\"\\\\/\\u0000\\b\\u001f\x7f\u2028é"'),
        ("\ud800x\udfff", '"\\ud800x\\udfff"'),
        ("\ud83d\ude00", '"\U0001f600"'),
        ((True, False, None), "[true,false,null]"),
        # What the orjson fast path must leave to the slow one: nested index keys and floats.
        ({"a": {"b": 1, "3": 2}, "c": [1.0, {"d": -0.0}]}, '{"a":{"3":2,"b":1},"c":[1,{"d":0}]}'),
        ({"v": Verbatim({"z": 1.5, "1": 2}), "w": "x:1.5,"}, '{"v":{"1":2,"z":1.5},"w":"x:1.5,"}'),
    ],
)
def test_known_forms(value: Any, text: str) -> None:
    assert stringify(value) == text


@pytest.mark.parametrize("value", [Undefined, b"bytes", {1: "int key"}, {"a": object()}, {1.5}])
def test_values_json_cannot_carry_are_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        stringify(value)


def test_node_texts_are_fixed_points(kvin_peer: KvinPeer) -> None:
    # What node writes, parsed and written again here, is the same text.
    texts = kvin_peer.json_corpus(seed=20261129, count=2000)
    mismatches = [(text, stringify(parse_json(text))) for text in texts]
    mismatches = [pair for pair in mismatches if pair[0] != pair[1]]
    assert mismatches == []


def test_random_doubles_format_as_node_does(kvin_peer: KvinPeer) -> None:
    # Every bit pattern: subnormals, the extremes, exponent boundaries of the decimal forms.
    import random

    generator = random.Random(7)
    numbers = [struct.unpack("<d", generator.randbytes(8))[0] for _ in range(3000)]
    numbers += [float(f"{m}e{e}") for m in (1, 1.5, 9.999999999999999) for e in range(-330, 310)]
    numbers = [n for n in numbers if math.isfinite(n)]
    texts = [stringify(numbers[i : i + 500]) for i in range(0, len(numbers), 500)]
    assert kvin_peer.restringify(texts) == texts
    assert [float(format_number(n)) for n in numbers] == numbers


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(codec=None)),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=4) | st.integers(0, 2**33).map(str), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(json_values, min_size=1, max_size=20))
def test_python_texts_are_what_node_writes(kvin_peer: KvinPeer, values: list[Any]) -> None:
    texts = [stringify(value) for value in values]
    assert kvin_peer.restringify(texts) == texts
