"""KVIN v9, the DCP network's serialization: between Python values and KVIN's JSON trees.

A KVIN text is JSON: ``{"_serializeVerId": "v9", "what": P}``, where P, a "prepared" value, is
a bare string, number or boolean, or an object whose keys say what it stands for (``raw``,
``arr``, ``ctr``, ``ab8``, ``mapKeys``, ``seen``, ...). ``unmarshal`` turns such a tree, as
parsed by a JSON parser, into Python values; ``marshal`` does the reverse. The format's facts
come from the npm package kvin@9.0.0, which DCP uses; none of its code.

This module is pure Python and is also the source of the compiled twin
``dcp_worker.sandbox_ext._kvin_codec`` (setup.py builds it with Cython when it can);
``dcp_worker.kvin`` chooses between them.

References. A prepared ``{"seen": i}`` is the i-th object of a list both sides keep as they
walk the tree. kvin's encoder and decoder do not agree on that list: for a Map the decoder also
counts the arrays of keys and of values, and for a Set it counts an array in the Set's place.
Text from kvin's encoder is read by the encoder's count, so that the value comes back as it
was. Text made here is written by the decoder's count, so that kvin reads it right; it says so
in a top-level ``seenOrder`` field, which kvin ignores, so that ``unmarshal`` reads it right too.
"""

from __future__ import annotations

import array
import datetime
import json
import math
import re
from typing import Any

from dcp_worker.errors import KVINError
from dcp_worker.jsvalues import (
    MAX_SAFE_INTEGER,
    TYPED_ARRAY_CODES,
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
    typed_array_name,
    typed_array_name_of,
)

VERSION = "v9"
READABLE_VERSIONS = frozenset({"v4", "v5", "v6", "v7", "v8", "v9"})
SEEN_ORDER_FIELD = "seenOrder"
DECODER_ORDER = "unmarshal"

# kvin's table of constructors that travel by index.
CONSTRUCTORS = (
    "Object", "Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array",
    "Int32Array", "Uint32Array", "Float32Array", "Float64Array", "RegExp", "Number", "String",
    "Boolean", "Array", "Function", "Error", "Promise", "URL", "Date", "Set",
)  # fmt: skip
CONSTRUCTOR_INDEX = {name: index for index, name in enumerate(CONSTRUCTORS)}
CONSTRUCTOR_NAME = re.compile(r"[A-Za-z_0-9$]+\Z")
NUMERIC_NAME = re.compile(r"[1-9][0-9]*\Z")
BYTE_VIEWS: dict[str, type[bytes]] = {"Buffer": NodeBuffer, "DataView": DataView}
ERROR_CONSTRUCTORS = frozenset(
    {"Error", "EvalError", "RangeError", "ReferenceError", "SyntaxError", "TypeError", "URIError"}
)
STACK_NAME = re.compile(r"([A-Za-z_$][A-Za-z0-9_$]*): ")
MAX_ARRAY_INDEX = 2**32 - 2
MAX_DEPTH = 900
MAX_UNWRITTEN_ELEMENTS = 1 << 24
PLAIN_DEPTH = 64


def is_array_index(key: str) -> bool:
    """Whether JavaScript treats the property name as an array index (and orders it first)."""
    return key.isascii() and key.isdigit() and (key == "0" or key[0] != "0") and int(key) <= MAX_ARRAY_INDEX


def js_key_order(keys: list[str]) -> list[str]:
    """Property names in the order JavaScript enumerates them: array indices ascending first."""
    indices = [key for key in keys if is_array_index(key)]
    if not indices:
        return keys
    indices.sort(key=int)
    return indices + [key for key in keys if not is_array_index(key)]


def number_from_json(value: int | float) -> int | float:
    """A JSON number as JavaScript holds it: integers beyond 2**53 are doubles there."""
    if type(value) is int and not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return float(value)
    return value


def plain(value: Any) -> Any:
    """A JSON value carried as-is (``raw``), with numbers as JavaScript has them: the parsed
    value itself when it holds no integer beyond 2**53, which is nearly always."""
    return value if holds_js_numbers(value) else plain_copy(value)


def holds_js_numbers(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        return all(holds_js_numbers(item) for item in value.values())
    if kind is list:
        return all(holds_js_numbers(item) for item in value)
    return kind is not int or -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER


def plain_copy(value: Any) -> Any:
    """A fresh copy of a parsed JSON value, with numbers as JavaScript has them."""
    kind = type(value)
    if kind is dict:
        return {key: plain_copy(item) for key, item in value.items()}
    if kind is list:
        return [plain_copy(item) for item in value]
    if kind is int:
        return number_from_json(value)
    return value


def parse_js_number(text: str) -> float:
    stripped = text.strip()
    if stripped in ("Infinity", "+Infinity"):
        return math.inf
    if stripped == "-Infinity":
        return -math.inf
    if stripped == "NaN":
        return math.nan
    try:
        return float(stripped)
    except ValueError:
        raise KVINError(f"{text!r} is not a number") from None


def _json_integer(text: str) -> int | float:
    return -0.0 if text == "-0" else number_from_json(int(text))


class Unmarshaller:
    """Reads one KVIN tree. ``seen`` is the list ``{"seen": i}`` refers to."""

    def __init__(self, decoder_order: bool) -> None:
        self.seen: list[Any] = []
        self.decoder_order = decoder_order
        self.unwritten = 0

    def fail(self, where: str, problem: str) -> KVINError:
        return KVINError(f"KVIN at {where}: {problem}")

    def value(self, po: Any, where: str) -> Any:
        kind = type(po)
        if kind is str or kind is bool or kind is float:
            return po
        if kind is int:
            return number_from_json(po)
        if kind is not dict:
            raise self.fail(where, f"expected a prepared value, found {json.dumps(po)[:40]}")
        if "ctr" in po:
            self.check_constructor(po["ctr"], where)
        if "raw" in po:
            return plain(po["raw"])
        if "ptv" in po:
            return plain(po["ptv"])
        if "number" in po:
            return parse_js_number(str(po["number"]))
        if "bigint" in po:
            return self.bigint(po["bigint"], where)
        if "fnName" in po:
            return self.function(po, where)
        if "mapKeys" in po or "mapVals" in po:
            return self.map(po, where)
        if "ab16" in po or "isl16" in po:
            return self.bytes_view(po, self.words(po, where), where)
        if "ab8" in po or "isl8" in po:
            return self.bytes_view(po, self.octets(po, where), where)
        if "arr" in po:
            return self.array(po, where, counted=True)
        if "ctr" in po:
            return self.object(po, where)
        if "set" in po:
            return self.set(po, where)
        if "json" in po:
            try:
                return plain(json.loads(po["json"], parse_int=_json_integer))
            except (TypeError, ValueError):
                raise self.fail(where, f"bad json {po['json']!r}") from None
        if "undefined" in po:
            return Undefined
        if "symbol" in po:
            symbol = JSSymbol(po["symbol"])
            self.seen.append(symbol)
            return symbol
        if "seen" in po:
            return self.reference(po["seen"], where)
        if "_serializeVerId" in po:
            # kvin 1.2.18 and older could nest a whole marshalled value.
            self.seen.append(po)
            return unmarshal(po)
        if "resolve" in po or "reject" in po:
            raise self.fail(where, "promises cannot be read")
        raise self.fail(where, f"unknown form with keys {sorted(po)}")

    def check_constructor(self, constructor: Any, where: str) -> None:
        if type(constructor) is str:
            if not CONSTRUCTOR_NAME.match(constructor):
                raise self.fail(where, f"invalid constructor name {constructor!r}")
        elif type(constructor) is int:
            if not 0 <= constructor < len(CONSTRUCTORS):
                raise self.fail(where, f"unknown constructor number {constructor}")
        else:
            raise self.fail(where, f"invalid constructor {json.dumps(constructor)}")

    def constructor_name(self, constructor: str | int) -> str:
        if isinstance(constructor, int):
            return CONSTRUCTORS[constructor]
        if NUMERIC_NAME.match(constructor):
            index = int(constructor)
            if index >= len(CONSTRUCTORS):
                raise KVINError(f"unknown constructor number {constructor}")
            return CONSTRUCTORS[index]
        return str(constructor)

    def reference(self, index: Any, where: str) -> Any:
        if type(index) is not int or not 0 <= index < len(self.seen):
            raise self.fail(where, f"reference to object {json.dumps(index)}, which was never seen")
        return self.seen[index]

    def bigint(self, digits: Any, where: str) -> BigInt:
        try:
            return BigInt(int(str(digits), 0 if str(digits)[:2].lower() in ("0x", "0o", "0b") else 10))
        except ValueError:
            raise self.fail(where, f"{digits!r} is not a BigInt") from None

    def properties(self, ps: Any, where: str) -> dict[str, Any]:
        if type(ps) is not dict:
            raise self.fail(where, "properties must be an object")
        return {key: self.value(item, f"{where}.{key}") for key, item in ps.items()}

    def element(self, item: Any, where: str) -> Any:
        """An array element or array property: a bare primitive, or a prepared value."""
        if type(item) is dict:
            return self.value(item, where)
        if item is None or type(item) is list:
            raise self.fail(where, "a bare null or array cannot stand in an array")
        return self.value(item, where)

    def array(self, po: dict[str, Any], where: str, *, counted: bool) -> Any:
        """An ``{arr, isl?, ps?, len?}`` array, as a list, or as a JSSparseArray when it is
        mostly holes, too many to hold. ``counted``: it has a place in ``seen``."""
        items = po["arr"]
        if type(items) is not list:
            raise self.fail(where, "arr must be an array")
        ps = po.get("ps", {})
        if type(ps) is not dict:
            raise self.fail(where, "array properties must be an object")
        result: Any
        if self.mostly_holes(po, items, ps):
            result = JSSparseArray()
        else:
            result = JSArray() if any(not is_array_index(key) for key in ps) else []
        if counted:
            self.seen.append(result)
        last: Any = None
        for position, item in enumerate(items):
            if type(item) is dict and "lst" in item:
                repeats = item["lst"]
                if type(repeats) is not int or repeats < 0 or last is None:
                    raise self.fail(f"{where}.{position}", "bad repetition")
                self.spend(repeats, where)
                for _ in range(repeats):
                    # Each repetition is an object of its own, as in JavaScript.
                    repeated = self.element(last, f"{where}.{position}")
                    result.append(plain_copy(repeated) if type(last) is dict and "raw" in last else repeated)
                continue
            result.append(self.element(item, f"{where}.{position}"))
            last = item
        head = len(result)
        for island in po.get("isl", ()):
            self.island(result, island, head, where)
        for key, item in ps.items():
            decoded = self.element(item, f"{where}.{key}")
            if is_array_index(key):
                index = int(key)
                if index >= len(result):
                    self.grow(result, index + 1, where)
                result[index] = decoded
            else:
                result.props[key] = decoded
        length = po.get("len")
        if length:
            if type(length) is not int or not 0 <= length <= MAX_ARRAY_INDEX + 1:
                raise self.fail(where, f"bad length {json.dumps(length)}")
            self.resize(result, length, where)
        return result

    def mostly_holes(self, po: dict[str, Any], items: list[Any], ps: dict[str, Any]) -> bool:
        """Whether the array's declared length outruns its elements by more than can be held."""
        indices = [int(key) for key in ps if is_array_index(key)]
        islands = [island for island in po.get("isl", ()) if type(island) is dict]
        ends = [island["@"] + 1 for island in islands if type(island.get("@")) is int]
        length = po.get("len")
        declared = max([length if type(length) is int else 0] + [index + 1 for index in indices] + ends)
        return bool(declared - len(items) - len(indices) > MAX_UNWRITTEN_ELEMENTS)

    def resize(self, result: Any, length: int, where: str) -> None:
        if isinstance(result, JSSparseArray):
            result.items = {index: item for index, item in result.items.items() if index < length}
            result.length = length
        elif length > len(result):
            self.grow(result, length, where)
        else:
            del result[length:]

    def spend(self, elements: int, where: str) -> None:
        """Account for array elements the text does not spell out (holes, repetitions): a few
        bytes of KVIN must not become gigabytes of list."""
        self.unwritten += elements
        if self.unwritten > MAX_UNWRITTEN_ELEMENTS:
            raise self.fail(
                where,
                f"more than {MAX_UNWRITTEN_ELEMENTS:,} holes or repeats in arrays, more than can be held",
            )

    def grow(self, result: Any, length: int, where: str) -> None:
        """Extend an array with holes to ``length``."""
        if isinstance(result, JSSparseArray):
            result.length = max(result.length, length)
            return
        self.spend(length - len(result), where)
        result.extend([Hole] * (length - len(result)))

    def island(self, result: list[Any], island: Any, head: int, where: str) -> None:
        """Elements of a sparse array past ``head``, its dense start. kvin's writer also copies
        stretches of the dense start into islands, as plain JSON (a Date there is a string);
        those copies are read, to keep count of ``seen``, and dropped."""
        if type(island) is not dict or type(island.get("@")) is not int or island["@"] < 0:
            raise self.fail(where, "bad island in a sparse array")
        at, body = island["@"], island.get("arr")
        if type(body) is list:
            items = [plain(item) for item in body]
        elif type(body) is dict and "arr" in body:
            items = self.array(body, f"{where}.isl@{at}", counted=True)
        else:
            raise self.fail(where, "bad island in a sparse array")
        if at < head:
            items = items[head - at :]
            at = head
        if len(result) < at + len(items):
            self.grow(result, at + len(items), where)
        for offset, item in enumerate(items):
            result[at + offset] = item

    def map(self, po: dict[str, Any], where: str) -> JSMap:
        if "mapKeys" not in po or "mapVals" not in po or type(po["mapKeys"]) is not dict:
            raise self.fail(where, "a Map needs mapKeys and mapVals")
        result = JSMap()
        self.seen.append(result)
        keys = self.array(po["mapKeys"], f"{where}.mapKeys", counted=self.decoder_order)
        values = self.array(po["mapVals"], f"{where}.mapVals", counted=self.decoder_order)
        if len(keys) != len(values):
            raise self.fail(where, f"a Map with {len(keys)} keys and {len(values)} values")
        result.extend(zip(keys, values, strict=True))
        if "ps" in po:
            result.props.update(self.properties(po["ps"], where))
        return result

    def set(self, po: dict[str, Any], where: str) -> JSSet:
        if type(po["set"]) is not dict:
            raise self.fail(where, "a Set needs its members")
        result = JSSet()
        if not self.decoder_order:
            self.seen.append(result)
        result.extend(self.array(po["set"], f"{where}.set", counted=self.decoder_order))
        return result

    def function(self, po: dict[str, Any], where: str) -> JSFunction:
        source = po.get("arg")
        function = JSFunction(str(po["fnName"]), source if type(source) is str else None)
        self.seen.append(function)
        return function

    def octets(self, po: dict[str, Any], where: str) -> bytes:
        """The bytes of an ``ab8`` or ``isl8`` form (one Latin-1 character a byte)."""
        try:
            if "ab8" in po:
                return str(po["ab8"]).encode("latin-1")
            length = po["len"]
            data = bytearray(length)
            for island in po["isl8"]:
                chunk = island["0"].encode("latin-1")[: max(0, length - island["@"])]
                data[island["@"] : island["@"] + len(chunk)] = chunk
            return bytes(data)
        except UnicodeEncodeError:
            raise self.fail(where, "byte data holds a character above U+00FF") from None
        except (KeyError, TypeError, ValueError):
            raise self.fail(where, "bad byte islands") from None

    def words(self, po: dict[str, Any], where: str) -> bytes:
        """The bytes of an ``ab16`` or ``isl16`` form (one UTF-16 code unit each two bytes)."""
        try:
            if "ab16" in po:
                data = bytearray(str(po["ab16"]).encode("utf-16-le", "surrogatepass"))
                if "eb" in po:
                    extra = po["eb"]
                    data.append(extra if type(extra) is int else ord(str(extra)[0]))
                return bytes(data)
            length = po["len"]
            data = bytearray(length + length % 2)
            for island in po["isl16"]:
                chunk = island["0"].encode("utf-16-le", "surrogatepass")
                at = 2 * island["@"]
                data[at : at + len(chunk)] = chunk[: max(0, len(data) - at)]
            return bytes(data[:length])
        except (KeyError, TypeError, ValueError, IndexError):
            raise self.fail(where, "bad 16-bit byte data") from None

    def bytes_view(self, po: dict[str, Any], data: bytes, where: str) -> Any:
        name = self.constructor_name(po.get("ctr", 2))
        view: Any
        if name == "Uint8ClampedArray":
            view = Uint8ClampedArray(data)
        elif name in BYTE_VIEWS:
            view = BYTE_VIEWS[name](data)
        elif name in TYPED_ARRAY_CODES:
            view = array.array(TYPED_ARRAY_CODES[name])
            if len(data) % view.itemsize:
                raise self.fail(where, f"{len(data)} bytes do not make a {name}")
            view.frombytes(data)
        else:
            raise self.fail(where, f"{name} cannot be built from bytes")
        self.seen.append(view)
        return view

    def object(self, po: dict[str, Any], where: str) -> Any:
        constructor = po["ctr"]
        name = self.constructor_name(constructor)
        has_arg = "arg" in po
        arg = po.get("arg")
        props = po.get("ps", {})
        if name == "Object" and not has_arg and "args" not in po:
            result: dict[str, Any] = {}
            self.seen.append(result)
            result.update(self.properties(props, where))
            return result
        if name in ERROR_CONSTRUCTORS:
            return self.error(name, arg, props, where)
        simple = self.simple_object(name, arg, po.get("args"), where) if not props else None
        if simple is not None:
            self.seen.append(simple)
            return simple
        generic = JSObject(constructor, {}, arg if has_arg else Undefined, None)
        if "args" in po:
            generic.args = tuple(plain(item) for item in po["args"])
        self.seen.append(generic)
        generic.props.update(self.properties(props, where))
        return generic

    def simple_object(self, name: str, arg: Any, args: Any, where: str) -> Any:
        """Objects with a Python form of their own, or None."""
        if name in TYPED_ARRAY_CODES and type(arg) is list:
            try:
                return array.array(TYPED_ARRAY_CODES[name], [plain(item) for item in arg])
            except (TypeError, OverflowError):
                raise self.fail(where, f"bad elements for a {name}") from None
        if name == "Uint8ClampedArray" and type(arg) is list:
            return Uint8ClampedArray([min(255, max(0, round(item))) for item in arg])
        if name == "RegExp":
            source, flags = (args[0], args[1] if len(args) > 1 else "") if type(args) is list else (arg, "")
            return JSRegExp(str(source), str(flags))
        if name in ("Number", "String", "Boolean") and args is None:
            return self.boxed(name, arg)
        if name == "Date" and args is None and type(arg) is str:
            return parse_date(arg)
        return None

    def boxed(self, name: str, arg: Any) -> JSBoxed:
        if name == "String":
            return JSBoxed("" if arg is None else str(arg))
        if name == "Boolean":
            # kvin writes Boolean objects as their toString(), and its own reader takes
            # "false" for true; what was meant was false.
            return JSBoxed(arg not in ("false", "", None, False, 0))
        number = parse_js_number(str(arg)) if type(arg) is str else float(arg or 0)
        whole = number.is_integer() and abs(number) <= MAX_SAFE_INTEGER and math.copysign(1, number) > 0
        return JSBoxed(int(number) if whole or (number == 0 and arg != "-0") else number)

    def error(self, name: str, message: Any, ps: Any, where: str) -> JSError:
        error = JSError(name, "" if message is None else str(message))
        self.seen.append(error)
        if self.decoder_order:
            props = self.properties(ps, where)
        elif type(ps) is dict:
            # kvin's writer puts an error's properties in as plain JSON, not prepared values.
            props = {key: plain(item) for key, item in ps.items()}
        else:
            raise self.fail(where, "properties must be an object")
        stack = props.pop("stack", None)
        error.stack = stack if type(stack) is str else None
        own_name = props.pop("name", None)
        if type(own_name) is str:
            error.name = own_name
        elif name == "Error" and error.stack:
            # kvin writes every Error as "Error"; its stack still starts with the real name.
            found = STACK_NAME.match(error.stack)
            if found and found.group(1).endswith("Error"):
                error.name = found.group(1)
        error.props = props
        return error


def parse_date(text: str) -> Any:
    """A JavaScript Date's ISO string as an aware datetime, or a JSObject when Python cannot hold it."""
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return JSObject(CONSTRUCTOR_INDEX["Date"], {}, text, None)


def unmarshal(envelope: Any) -> Any:
    """The value a parsed KVIN text (``{"_serializeVerId": ..., "what": ...}``) stands for."""
    if type(envelope) is not dict or "_serializeVerId" not in envelope:
        raise KVINError("not KVIN: expected an object with _serializeVerId")
    version = envelope["_serializeVerId"]
    if version not in READABLE_VERSIONS:
        raise KVINError(f"KVIN version {json.dumps(version)} cannot be read (v4 to v9 can)")
    if "what" not in envelope:
        raise KVINError("KVIN text has no 'what'")
    reader = Unmarshaller(envelope.get(SEEN_ORDER_FIELD) == DECODER_ORDER)
    return reader.value(envelope["what"], "top")


def iso_date(moment: datetime.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    text = moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def is_plain(value: Any) -> bool:
    """Whether JSON carries the value exactly as JavaScript holds it."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER)
    if kind is float:
        return math.isfinite(value) and (value != 0 or math.copysign(1, value) > 0)
    return False


def is_plain_tree(value: Any, depth: int = 0) -> bool:
    """Whether JSON carries the whole value, containers and all, as JavaScript holds it; such a
    value travels as ``raw``, which kvin reads as plain JSON. Past PLAIN_DEPTH the answer is no,
    which also stops at cycles."""
    kind = type(value)
    if kind is dict:
        return depth < PLAIN_DEPTH and all(
            type(key) is str and is_plain_tree(item, depth + 1) for key, item in value.items()
        )
    if kind is list or kind is tuple:
        return depth < PLAIN_DEPTH and all(is_plain_tree(item, depth + 1) for item in value)
    return is_plain(value)


class Marshaller:
    """Writes one KVIN tree, counting ``seen`` places as kvin's decoder will."""

    def __init__(self) -> None:
        self.count = 0
        self.places: dict[int, int] = {}
        self.in_progress: set[int] = set()
        self.depth = 0
        # Values made here while writing: kept alive so that no later value reuses their id.
        self.made: list[Any] = []

    def fail(self, where: str, problem: str) -> KVINError:
        return KVINError(f"cannot write KVIN at {where}: {problem}")

    def place(self, value: Any) -> None:
        """The value takes the next place in ``seen``; later sightings refer to it."""
        self.places[id(value)] = self.count
        self.count += 1

    def value(self, value: Any, where: str) -> Any:
        kind = type(value)
        if kind is str or kind is bool:
            return value
        if kind is int:
            return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else {"bigint": str(value)}
        if kind is float:
            return self.number(value)
        if value is None:
            return {"raw": None}
        if value is Undefined:
            return {"undefined": True}
        if isinstance(value, BigInt):
            return {"bigint": str(int(value))}
        place = self.places.get(id(value))
        if place is not None:
            return {"seen": place}
        if id(value) in self.in_progress:
            raise self.fail(where, "a value that contains itself through a Set")
        # The compiled twin recurses on the C stack, which no RecursionError guards.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(where, "the value is nested too deeply")
        try:
            return self.container(value, where)
        finally:
            self.depth -= 1

    def number(self, value: float) -> Any:
        if math.isnan(value):
            return {"number": "NaN"}
        if math.isinf(value):
            return {"number": "Infinity" if value > 0 else "-Infinity"}
        if value == 0 and math.copysign(1, value) < 0:
            return {"json": "-0"}
        return value

    def container(self, value: Any, where: str) -> Any:
        if isinstance(value, str):
            return str(value)
        if isinstance(value, int):
            return self.value(int(value), where)
        if isinstance(value, float):
            return self.number(float(value))
        if isinstance(value, dict):
            return self.object(value, where)
        if isinstance(value, list | tuple) and not isinstance(value, JSMap | JSSet):
            if (type(value) is list or type(value) is tuple) and is_plain_tree(value):
                return {"raw": value}
            return self.array(value, where)
        if isinstance(value, bytes | bytearray | memoryview | array.array):
            return self.bytes_view(value, where)
        if isinstance(value, datetime.datetime):
            self.place(value)
            return {"ctr": CONSTRUCTOR_INDEX["Date"], "arg": iso_date(value)}
        if isinstance(value, JSMap):
            return self.map(value, where)
        if isinstance(value, JSSparseArray):
            return self.sparse_array(value, where)
        if isinstance(value, set | frozenset | JSSet):
            return self.set(value, where)
        if isinstance(value, JSRegExp):
            self.place(value)
            return {"ctr": CONSTRUCTOR_INDEX["RegExp"], "args": [value.source, value.flags]}
        if isinstance(value, JSBoxed):
            return self.boxed(value)
        if isinstance(value, JSError):
            return self.error(value, where)
        if isinstance(value, JSSymbol):
            self.place(value)
            return {"symbol": value.description}
        if isinstance(value, JSFunction):
            self.place(value)
            return {"fnName": value.name, "ctr": CONSTRUCTOR_INDEX["Function"], "arg": value.source or ""}
        if isinstance(value, JSObject):
            return self.generic(value, where)
        if type(value).__module__ == "numpy":
            return self.numpy(value, where)
        raise self.fail(where, f"a {type(value).__name__} has no JavaScript form")

    def properties(self, props: dict[str, Any], where: str) -> dict[str, Any]:
        for key in props:
            if type(key) is not str:
                raise self.fail(where, f"a property name must be a string, not {type(key).__name__}")
        return {key: self.value(props[key], f"{where}.{key}") for key in js_key_order(list(props))}

    def object(self, value: dict[Any, Any], where: str) -> Any:
        if type(value) is dict and is_plain_tree(value):
            return {"raw": value}
        self.place(value)
        return {"ctr": 0, "ps": self.properties(value, where)}

    def array(self, value: list[Any] | tuple[Any, ...], where: str, *, counted: bool = True) -> Any:
        """``{arr, ps?, len?}``: the dense head in ``arr``, what follows the first hole, and any
        named property, in ``ps``."""
        if counted:
            self.place(value)
        head: list[Any] = []
        tail: dict[str, Any] = {}
        for index, item in enumerate(value):
            if item is Hole:
                break
            head.append(item if is_plain(item) and item is not None else self.value(item, f"{where}.{index}"))
        else:
            index = len(value)
        for later in range(index, len(value)):
            item = value[later]
            if item is not Hole:
                tail[str(later)] = self.value(item, f"{where}.{later}")
        props = getattr(value, "props", None)
        if props:
            tail.update(self.properties(props, where))
        prepared: dict[str, Any] = {"arr": head}
        if tail:
            prepared["ps"] = tail
        if len(head) != len(value):
            prepared["len"] = len(value)
        return prepared

    def sparse_array(self, value: JSSparseArray, where: str) -> Any:
        self.place(value)
        ps = {str(index): self.value(value.items[index], f"{where}.{index}") for index in sorted(value.items)}
        ps.update(self.properties(value.props, where))
        return {"arr": [], "ps": ps, "len": value.length}

    def bytes_view(self, value: Any, where: str) -> Any:
        if isinstance(value, Uint8ClampedArray):
            constructor: str | int = CONSTRUCTOR_INDEX["Uint8ClampedArray"]
        elif isinstance(value, NodeBuffer | DataView):
            constructor = "Buffer" if isinstance(value, NodeBuffer) else "DataView"
        elif isinstance(value, array.array):
            name = typed_array_name_of(value)
            if name is None:
                raise self.fail(
                    where, f"an array.array of type code {value.typecode!r} has no JavaScript form"
                )
            constructor = CONSTRUCTOR_INDEX.get(name, name)
        else:
            constructor = CONSTRUCTOR_INDEX["Uint8Array"]
        data = value.tobytes() if isinstance(value, array.array | memoryview) else bytes(value)
        self.place(value)
        return {"ctr": constructor, "ab8": data.decode("latin-1")}

    def numpy(self, value: Any, where: str) -> Any:
        if (
            getattr(value, "ndim", None) == 1
            and value.dtype.kind in "iuf"
            and value.dtype.itemsize in (1, 2, 4, 8)
        ):
            kind = {"i": "signed", "u": "unsigned", "f": "float"}[value.dtype.kind]
            name = typed_array_name(kind, value.dtype.itemsize)
            if name is not None:
                self.place(value)
                data = value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes()
                return {"ctr": CONSTRUCTOR_INDEX.get(name, name), "ab8": data.decode("latin-1")}
        if hasattr(value, "tolist"):
            self.made.append(value.tolist())
            return self.value(self.made[-1], where)
        raise self.fail(where, f"a numpy {type(value).__name__} has no JavaScript form")

    def map(self, value: JSMap, where: str) -> Any:
        self.place(value)
        # kvin's decoder counts the array of keys, and then the array of values, each before
        # its members.
        self.count += 1
        keys = self.array([key for key, _ in value], f"{where}.mapKeys", counted=False)
        self.count += 1
        values = self.array([item for _, item in value], f"{where}.mapVals", counted=False)
        if not value.props:
            return {"mapKeys": keys, "mapVals": values}
        return {"mapKeys": keys, "mapVals": values, "ps": self.properties(value.props, where)}

    def set(self, value: set[Any] | frozenset[Any] | JSSet, where: str) -> Any:
        # kvin's decoder counts an array in the Set's place, so a Set cannot be referred to:
        # each sighting is written out again.
        self.count += 1
        self.in_progress.add(id(value))
        try:
            return {"set": self.array(list(value), f"{where}.set", counted=False)}
        finally:
            self.in_progress.discard(id(value))

    def boxed(self, value: JSBoxed) -> Any:
        self.place(value)
        if isinstance(value.value, bool):
            return {"ctr": CONSTRUCTOR_INDEX["Boolean"], "arg": "true" if value.value else ""}
        if isinstance(value.value, str):
            return {"ctr": CONSTRUCTOR_INDEX["String"], "arg": value.value}
        return {"ctr": CONSTRUCTOR_INDEX["Number"], "arg": js_number_text(value.value)}

    def error(self, value: JSError, where: str) -> Any:
        constructor = value.name if value.name in ERROR_CONSTRUCTORS else "Error"
        self.place(value)
        props = dict(value.props)
        named_by_stack = bool(value.stack) and (found := STACK_NAME.match(value.stack or "")) is not None
        if value.name != constructor and not (named_by_stack and found and found.group(1) == value.name):
            # A name its stack gives comes from its class, which kvin cannot rebuild; any other
            # name was the error's own property.
            props["name"] = value.name
        # The stack stays behind: JavaScript keeps an error's own stack unenumerated, and one
        # written as a property would make the error differ from the one it came from.
        return {"ctr": constructor, "arg": value.message, "ps": self.properties(props, where)}

    def generic(self, value: JSObject, where: str) -> Any:
        self.place(value)
        prepared: dict[str, Any] = {"ctr": value.constructor}
        if value.arg is not Undefined:
            prepared["arg"] = value.arg
        if value.args is not None:
            prepared["args"] = list(value.args)
        prepared["ps"] = self.properties(value.props, where)
        return prepared


def js_number_text(number: float) -> str:
    """A number as JavaScript's Number() reads it back exactly."""
    if isinstance(number, int) or (number.is_integer() and abs(number) < 1e21):
        return "-0" if number == 0 and math.copysign(1, number) < 0 else str(int(number))
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return repr(number)


def marshal(value: Any) -> dict[str, Any]:
    """The KVIN envelope for a Python value, ready for a JSON writer."""
    return {
        "_serializeVerId": VERSION,
        "what": Marshaller().value(value, "top"),
        SEEN_ORDER_FIELD: DECODER_ORDER,
    }
