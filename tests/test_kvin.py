"""dcp_worker.kvin without a JavaScript peer: kvin@9's forms, round trips, and bad input."""

from __future__ import annotations

import array
import datetime
import importlib
import json
import math
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kvin_implementations import codec, implementations

from dcp_worker import kvin
from dcp_worker.errors import KVINError
from dcp_worker.jsvalues import (
    BigInt,
    DataView,
    Hole,
    JSArray,
    JSBoxed,
    JSError,
    JSFunction,
    JSMap,
    JSObject,
    JSRegExp,
    JSSet,
    JSSparseArray,
    JSSymbol,
    NodeBuffer,
    Uint8ClampedArray,
    Undefined,
)

__all__ = ["codec"]


def envelope(what: Any) -> str:
    return json.dumps({"_serializeVerId": "v9", "what": what}, separators=(",", ":"))


# (prepared value as kvin@9 writes it, the Python value it stands for)
KVIN_FORMS: list[tuple[str, Any, Any]] = [
    ("string", {"raw": "héllo \U0001f600"}, "héllo \U0001f600"),
    ("bare number", 1.5, 1.5),
    ("integer", {"raw": 42}, 42),
    ("big double", {"raw": 18446744073709552000}, 18446744073709552000.0),
    ("null", {"raw": None}, None),
    ("undefined", {"undefined": True}, Undefined),
    ("true", {"raw": True}, True),
    ("NaN", {"number": "NaN"}, math.nan),
    ("-Infinity", {"number": "-Infinity"}, -math.inf),
    ("negative zero", {"json": "-0"}, -0.0),
    ("bigint", {"bigint": "123456789012345678901234567890"}, BigInt(123456789012345678901234567890)),
    ("plain object", {"raw": {"a": 1, "ctr": "x", "arr": [1]}}, {"a": 1, "ctr": "x", "arr": [1]}),
    ("array", {"arr": [1, "two", {"raw": None}, {"undefined": True}]}, [1, "two", None, Undefined]),
    ("array runs", {"arr": [7, {"lst": 3}, "x", {"lst": 1}]}, [7, 7, 7, 7, "x", "x"]),
    ("sparse array", {"arr": [1], "ps": {"0": 1, "4": 5}, "len": 6}, [1, Hole, Hole, Hole, 5, Hole]),
    (
        "sparse islands",
        {
            "arr": [],
            "isl": [{"@": 2, "arr": [1, 2]}, {"@": 10, "arr": {"arr": [3, 4, 5, 6, 7, 8, 9, 10]}}],
            "len": 20,
        },
        [Hole, Hole, 1, 2] + [Hole] * 6 + [3, 4, 5, 6, 7, 8, 9, 10] + [Hole] * 2,
    ),
    ("array with a property", {"arr": [1, 2], "ps": {"note": {"raw": "x"}}}, JSArray([1, 2], {"note": "x"})),
    ("Float64Array", {"ctr": 9, "ab8": "\u0000\u0000\u0000\u0000\u0000\u0000ø?"}, array.array("d", [1.5])),
    (
        "mostly-zero Int32Array",
        {"ctr": 6, "isl8": [{"0": "\u0001", "@": 8}], "len": 16},
        array.array("i", [0, 0, 1, 0]),
    ),
    ("Uint8ClampedArray", {"ctr": 3, "ab8": "ÿ\u0001"}, Uint8ClampedArray([255, 1])),
    ("BigInt64Array", {"ctr": "BigInt64Array", "ab8": "ÿÿÿÿÿÿÿÿ"}, array.array("q", [-1])),
    ("Buffer", {"ctr": "Buffer", "ab8": "hi"}, NodeBuffer(b"hi")),
    ("DataView", {"ctr": "DataView", "ab8": "\u0001\u0002"}, DataView(b"\x01\x02")),
    ("ab16 with an odd byte", {"ctr": 2, "ab16": "\u0201", "eb": 3}, array.array("B", [1, 2, 3])),
    ("naive typed array", {"ctr": 8, "arg": [0.5, 2]}, array.array("f", [0.5, 2])),
    (
        "Date",
        {"ctr": 19, "arg": "2020-02-03T04:05:06.789Z"},
        datetime.datetime(2020, 2, 3, 4, 5, 6, 789000, tzinfo=datetime.UTC),
    ),
    ("RegExp", {"ctr": 10, "args": ["a+b", "gi"]}, JSRegExp("a+b", "gi")),
    (
        "Map",
        {"mapKeys": {"arr": [{"raw": {"k": 1}}, "s"]}, "mapVals": {"arr": [1, {"raw": None}]}},
        JSMap([({"k": 1}, 1), ("s", None)]),
    ),
    ("Set", {"set": {"arr": [1, "a"]}}, JSSet([1, "a"])),
    ("boxed Number", {"ctr": 11, "arg": "1.5"}, JSBoxed(1.5)),
    ("boxed String", {"ctr": 12, "arg": "s"}, JSBoxed("s")),
    ("boxed false (as kvin writes it)", {"ctr": 13, "arg": "false"}, JSBoxed(False)),
    (
        "TypeError (kvin writes every error as Error)",
        {
            "ctr": "Error",
            "ps": {"stack": "TypeError: bad\n    at <anonymous>:1:7", "code": "E1"},
            "arg": "bad",
        },
        JSError("TypeError", "bad", "TypeError: bad\n    at <anonymous>:1:7", {"code": "E1"}),
    ),
    ("symbol", {"symbol": "tag"}, JSSymbol("tag")),
    (
        "function",
        {"ctr": 15, "ps": {}, "fnName": "f", "arg": "function f() {}"},
        JSFunction("f", "function f() {}"),
    ),
    ("class instance", {"ctr": "Point", "ps": {"x": 1}}, JSObject("Point", {"x": 1})),
    ("object with undefined", {"ctr": 0, "ps": {"u": {"undefined": True}, "n": 1}}, {"u": Undefined, "n": 1}),
]


@pytest.mark.parametrize(
    ("what", "expected"),
    [(what, value) for _, what, value in KVIN_FORMS],
    ids=[name for name, *_ in KVIN_FORMS],
)
def test_reads_kvins_forms(codec: ModuleType, what: Any, expected: Any) -> None:
    value = kvin.deserialize(envelope(what))
    assert same(value, expected)


def same(left: Any, right: Any) -> bool:
    """Equality that also tells NaN, -0.0, types and array properties apart."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        return (math.isnan(left) and math.isnan(right)) or (
            left == right and math.copysign(1, left) == math.copysign(1, right)
        )
    if isinstance(left, list | tuple):
        return (
            len(left) == len(right)
            and all(same(a, b) for a, b in zip(left, right, strict=True))
            and getattr(left, "props", None) == getattr(right, "props", None)
        )
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[key], right[key]) for key in left)
    if isinstance(left, array.array):
        return left.typecode == right.typecode and left.tobytes() == right.tobytes()
    return bool(left == right)


def test_references_and_cycles_come_back_as_shared_objects(codec: ModuleType) -> None:
    # {a: shared, b: shared, self: <the object>}, as kvin's encoder counts objects.
    what = {
        "ctr": 0,
        "ps": {"a": {"ctr": 0, "ps": {"u": {"undefined": True}}}, "b": {"seen": 1}, "self": {"seen": 0}},
    }
    value = kvin.deserialize(envelope(what))
    assert value["a"] is value["b"]
    assert value["self"] is value


def test_a_reference_after_a_map_counts_as_kvins_encoder_does(codec: ModuleType) -> None:
    # kvin's encoder gives the Map one place; its decoder would give it three.
    what = {
        "arr": [
            {"mapKeys": {"arr": [1]}, "mapVals": {"arr": [2]}},
            {"ctr": 0, "ps": {"u": {"undefined": True}}},
            {"seen": 2},
        ]
    }
    value = kvin.deserialize(envelope(what))
    assert value[1] is value[2]


VALUES: list[tuple[str, Any]] = [
    ("nested", {"list": [1, [2, [3, {"deep": True}]]], "text": "x\u0000y\U0010ffff", "none": None}),
    ("numbers", [0, -0.0, 1.5, -(2**53 - 1), 2**53 - 1, math.inf, -math.inf, 1e300, 5e-324]),
    ("bigints", [BigInt(1), BigInt(-(2**100)), BigInt(0)]),
    ("holes", [Hole, 1, Hole, Hole, Undefined, None, Hole]),
    ("array props", JSArray([1, Hole, 3], {"name": "n", "nested": {"u": Undefined}})),
    ("typed", [array.array(code, [1, 2]) for code in "bBhHiIqQfd"] + [Uint8ClampedArray([9])]),
    ("byte views", [NodeBuffer(b"buf"), DataView(b"dv")]),
    ("dates", [datetime.datetime(1999, 12, 31, 23, 59, 59, 999000, tzinfo=datetime.UTC)]),
    ("map", JSMap([({"k": [1]}, JSSet([1, 2])), (BigInt(5), Undefined), (math.nan, -0.0)])),
    (
        "errors",
        [JSError("RangeError", "r", None, {"code": "E"}), JSError("MyError", "m"), JSError("Error", "")],
    ),
    ("boxed", [JSBoxed(True), JSBoxed(False), JSBoxed(-0.0), JSBoxed(7), JSBoxed("")]),
    (
        "misc",
        [JSRegExp("^a$", "m"), JSSymbol(None), JSFunction("f", "() => 1"), JSObject("URL", {}, "https://x/")],
    ),
    ("keys", {"0": 1, "10": 2, "2": 3, "ctr": 4, "raw": 5, "arr": 6, "seen": 7, "lst": 8, "": 9}),
]


@pytest.mark.parametrize("value", [value for _, value in VALUES], ids=[name for name, _ in VALUES])
def test_python_values_round_trip(codec: ModuleType, value: Any) -> None:
    assert same(kvin.deserialize(kvin.serialize(value)), value)


def test_natural_python_values_take_their_javascript_forms(codec: ModuleType) -> None:
    natural = {
        "t": (1, 2), "s": {3}, "f": frozenset({4}), "b": b"\x00", "ba": bytearray(b"\x01"),
        "mv": memoryview(b"\x02"), "long": array.array("l", [-1]), "big": 2**53, "huge": -(2**70),
    }  # fmt: skip
    value = kvin.deserialize(kvin.serialize(natural))
    assert same(value, {
        "t": [1, 2], "s": JSSet([3]), "f": JSSet([4]), "b": array.array("B", [0]), "ba": array.array("B", [1]),
        "mv": array.array("B", [2]), "long": array.array("q", [-1]), "big": BigInt(2**53), "huge": BigInt(-(2**70)),
    })  # fmt: skip
    naive = kvin.deserialize(kvin.serialize(datetime.datetime(2000, 1, 1)))
    assert naive == datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)


def test_shared_and_cyclic_python_values(codec: ModuleType) -> None:
    shared = {"n": [1, Undefined]}
    cyclic: dict[str, Any] = {"m": JSMap([("k", shared)]), "a": shared, "b": shared}
    cyclic["self"] = cyclic
    value = kvin.deserialize(kvin.serialize(cyclic))
    assert value["self"] is value
    assert value["a"] is value["b"] is value["m"][0][1]
    loop: list[Any] = [1]
    loop.append(loop)
    round_tripped = kvin.deserialize(kvin.serialize(loop))
    assert round_tripped[1] is round_tripped


def test_a_set_that_contains_itself_cannot_be_written(codec: ModuleType) -> None:
    members: JSSet = JSSet()
    members.append({"back": members})
    with pytest.raises(KVINError, match="contains itself through a Set"):
        kvin.serialize(members)


@pytest.mark.parametrize(
    "value",
    [object(), {1: "int key"}, array.array("u", "x"), 1j, {"ok": [object()]}],
    ids=["object", "int-key", "unicode-array", "complex", "nested"],
)
def test_values_without_a_javascript_form(codec: ModuleType, value: Any) -> None:
    with pytest.raises(KVINError, match="cannot write KVIN at top"):
        kvin.serialize(value)


LONG_STRING_TEXT = '{"_serializeVerId":"v9","what":"' + "\u00e9" * 5000 + '"}'
BAD_TEXTS = [
    ("empty", "", "invalid JSON"),
    ("truncated", envelope({"arr": [1, 2]})[:-5], "invalid JSON"),
    ("not an object", "[1]", "not KVIN"),
    ("no version", '{"what": 1}', "not KVIN"),
    ("future version", '{"_serializeVerId": "v10", "what": 1}', 'version "v10"'),
    ("old version", '{"_serializeVerId": "v3", "what": 1}', 'version "v3"'),
    ("no what", '{"_serializeVerId": "v9"}', "no 'what'"),
    ("unknown constructor index", envelope({"ctr": 21, "ps": {}}), "unknown constructor number 21"),
    ("constructor code", envelope({"ctr": "alert(1)", "ps": {}}), "invalid constructor name"),
    ("reference to nowhere", envelope({"arr": [{"seen": 3}]}), "never seen"),
    ("reference not a number", envelope({"seen": "0"}), "never seen"),
    ("unknown form", envelope({"wat": 1}), "unknown form"),
    ("bare null", envelope(None), "expected a prepared value"),
    ("bare null in array", envelope({"arr": [None]}), "bare null"),
    ("repetition first", envelope({"arr": [{"lst": 2}]}), "bad repetition"),
    ("wide byte data", envelope({"ctr": 2, "ab8": "\u0100"}), r"above U\+00FF"),
    ("misaligned typed array", envelope({"ctr": 9, "ab8": "abc"}), "do not make a Float64Array"),
    ("bad bigint", envelope({"bigint": "12z"}), "not a BigInt"),
    ("map without values", envelope({"mapKeys": {"arr": [1]}}), "mapKeys and mapVals"),
    ("bad length", envelope({"arr": [], "len": -1}), "bad length"),
    ("promise", envelope({"resolve": 1}), "promises"),
    ("NaN literal", '{"_serializeVerId": "v9", "what": NaN}', "invalid JSON"),
    # Text of a few long non-ASCII strings goes to the other JSON parser, which must refuse as much.
    ("long string truncated", LONG_STRING_TEXT[:-9], "invalid JSON"),
    ("long string with NaN", LONG_STRING_TEXT.replace('"what"', '"x": NaN, "what"'), "invalid JSON"),
    ("long string with a raw newline", LONG_STRING_TEXT.replace("\u00e9", "\n", 1), "invalid JSON"),
]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [(text, complaint) for _, text, complaint in BAD_TEXTS],
    ids=[name for name, *_ in BAD_TEXTS],
)
def test_bad_text_is_a_clear_error(codec: ModuleType, text: str, complaint: str) -> None:
    with pytest.raises(KVINError, match=complaint):
        kvin.deserialize(text)


def test_deep_nesting_is_an_error_not_a_crash(codec: ModuleType) -> None:
    depth = 5000
    text = '{"_serializeVerId":"v9","what":' + '{"arr":[' * depth + '"bottom"' + "]}" * depth + "}"
    with pytest.raises(KVINError, match="nested too deeply"):
        kvin.deserialize(text)
    deep: list[Any] = []
    for _ in range(depth):
        deep = [deep]
    with pytest.raises(KVINError, match="nested too deeply"):
        kvin.serialize(deep)


def test_lone_surrogates_travel(codec: ModuleType) -> None:
    text = kvin.serialize(["\ud800", "a\udc00b"])
    assert "\\ud800" in text
    assert kvin.deserialize(text) == ["\ud800", "a\udc00b"]


def test_the_two_implementations_are_really_there() -> None:
    assert kvin.IMPLEMENTATION in ("compiled", "pure")


# Values with a JavaScript twin, for property tests here and against kvin in node.
javascript_values = st.recursive(
    st.none()
    | st.booleans()
    | st.text()
    | st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
    | st.floats()
    | st.just(Undefined)
    | st.builds(BigInt, st.integers()),
    lambda children: (
        st.lists(children, max_size=10)
        | st.dictionaries(st.text(max_size=6), children, max_size=6)
        # A Map's primitive keys are distinct in JavaScript, so they are here...
        | st.builds(
            JSMap,
            st.lists(
                st.tuples(st.integers(-99, 99) | st.text(max_size=3), children),
                unique_by=lambda pair: (type(pair[0]), pair[0]),
                max_size=4,
            ),
        )
        # ... and so are a Set's primitive members.
        | st.builds(JSSet, st.lists(st.integers(-99, 99) | st.text(max_size=3), unique=True, max_size=4))
        | st.builds(
            lambda items, holes: [Hole if hole else item for item, hole in zip(items, holes, strict=False)],
            st.lists(children, min_size=1, max_size=10),
            st.lists(st.booleans(), max_size=10),
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(javascript_values)
def test_any_value_round_trips(value: Any) -> None:
    for module in implementations():
        implementation = importlib.import_module(module)
        text = json.dumps(implementation.marshal(value), allow_nan=False)
        assert same(implementation.unmarshal(json.loads(text)), value), module


def test_numpy_arrays_are_written_as_typed_arrays(codec: ModuleType) -> None:
    numpy = pytest.importorskip("numpy")
    value = {
        "f8": numpy.array([1.5, -2.0]),
        "i4": numpy.array([1, -2], dtype=">i4"),
        "u1": numpy.arange(3, dtype=numpy.uint8),
        "grid": numpy.array([[1, 2], [3, 4]]),
        "flags": numpy.array([True, False]),
        "scalar": numpy.float32(0.5),
    }
    decoded = kvin.deserialize(kvin.serialize(value))
    assert same(decoded["f8"], array.array("d", [1.5, -2.0]))
    assert same(decoded["i4"], array.array("i", [1, -2]))
    assert same(decoded["u1"], array.array("B", [0, 1, 2]))
    assert decoded["grid"] == [[1, 2], [3, 4]]
    assert decoded["flags"] == [True, False]
    assert decoded["scalar"] == 0.5


def test_a_small_text_cannot_make_a_huge_array(codec: ModuleType) -> None:
    with pytest.raises(KVINError, match="more than can be held"):
        kvin.deserialize(envelope({"arr": [1, {"lst": 4_000_000_000}]}))


@pytest.mark.parametrize(
    ("what", "length", "items"),
    [
        ({"arr": [], "len": 4_294_967_295}, 4_294_967_295, {}),
        (
            {"arr": [7], "ps": {"4294967294": {"raw": None}, "name": 1}, "len": 4_294_967_295},
            4_294_967_295,
            {0: 7, 4_294_967_294: None},
        ),
        (
            {"arr": [], "isl": [{"@": 3_000_000_000, "arr": [1, 2]}], "len": 3_000_000_005},
            3_000_000_005,
            {3_000_000_000: 1, 3_000_000_001: 2},
        ),
    ],
    ids=["empty", "far index", "island"],
)
def test_mostly_empty_arrays_are_held_sparsely(
    codec: ModuleType, what: Any, length: int, items: dict[int, Any]
) -> None:
    value = kvin.deserialize(envelope(what))
    assert isinstance(value, JSSparseArray)
    assert (len(value), value.items) == (length, items)
    assert value[1] is Hole
    assert kvin.deserialize(kvin.serialize(value)) == value
