"""Tagged JSON: how values cross between Python and a sandbox, and how localexec writes them.

JSON in which an object with the key ``"$dcp"`` stands for a value JSON has no form for.
``from_json`` turns it into Python values and ``to_json`` does the reverse. The table is in the
README ("Values that JSON cannot hold").
"""

from __future__ import annotations

import array
import base64
import datetime
import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any, Final

from dcp_worker.jsvalues import (
    MAX_SAFE_INTEGER,
    TYPED_ARRAY_CODES,
    JSError,
    JSFunction,
    JSRegExp,
    JSSymbol,
    Undefined,
    typed_array_name_of,
)

TAG: Final = "$dcp"


# Uint8ClampedArray decodes to array('B') here; Float16Array to a list of floats.
ARRAY_CODES: Final = {**TYPED_ARRAY_CODES, "Uint8ClampedArray": "B"}
NUMBER_TAGS: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf, "-0": -0.0}


def _bytes(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _decode_tagged(tag: Any, value: dict[str, Any]) -> Any:
    if tag in NUMBER_TAGS:
        return NUMBER_TAGS[tag]
    if tag in ARRAY_CODES:
        return array.array(ARRAY_CODES[tag], _bytes(value["base64"]))
    match tag:
        case "undefined":
            return Undefined
        case "bigint":
            return int(value["value"])
        case "Float16Array":
            data = _bytes(value["base64"])
            return list(struct.unpack(f"<{len(data) // 2}e", data))
        case "ArrayBuffer" | "DataView":
            return _bytes(value["base64"])
        case "Date":
            iso = value["value"]
            return None if iso is None else datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))
        case "RegExp":
            return JSRegExp(value["source"], value["flags"])
        case "Map":
            pairs = [(from_json(k), from_json(v)) for k, v in value["entries"]]
            try:
                return dict(pairs)
            except TypeError:
                return pairs
        case "Set":
            items = [from_json(item) for item in value["values"]]
            try:
                return set(items)
            except TypeError:
                return items
        case "Error":
            return JSError(value["name"], value["message"], value.get("stack"))
        case "Symbol":
            return JSSymbol(value.get("description"))
        case "Function":
            return JSFunction(value["name"])
        case "object":
            return {key: from_json(item) for key, item in value["value"].items()}
    raise ValueError(f"unknown {TAG} tag {tag!r}")


def from_json(value: Any) -> Any:
    """Python value for a tagged-JSON value (as parsed by ``orjson.loads``)."""
    if isinstance(value, list):
        return [from_json(item) for item in value]
    if isinstance(value, dict):
        if TAG in value:
            return _decode_tagged(value[TAG], value)
        return {key: from_json(item) for key, item in value.items()}
    return value


def _typed_array(name: str, data: bytes) -> dict[str, str]:
    return {TAG: name, "base64": base64.b64encode(data).decode("ascii")}


def _array_name(values: array.array[Any]) -> str:
    name = typed_array_name_of(values)
    if name is None:
        raise TypeError(f"cannot pass an array.array of type code {values.typecode!r} to JavaScript")
    return name


def _number(value: float) -> Any:
    if isinstance(value, int):
        return (
            value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else {TAG: "bigint", "value": str(value)}
        )
    if value != value:
        return {TAG: "NaN"}
    if math.isinf(value):
        return {TAG: "Infinity" if value > 0 else "-Infinity"}
    return {TAG: "-0"} if value == 0 and math.copysign(1, value) < 0 else value


def to_json(value: Any, _active: frozenset[int] = frozenset()) -> Any:
    """Tagged JSON for a Python value; raises ``TypeError`` for what JavaScript cannot receive."""
    kind = type(value)
    # Exact types first: this runs once per input, and most inputs are plain.
    if kind is str or kind is bool or value is None:
        return value
    if kind is int or kind is float or isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return str(value)
    if value is Undefined:
        return {TAG: "undefined"}
    if isinstance(value, bytes | bytearray | memoryview):
        return _typed_array("Uint8Array", bytes(value))
    if isinstance(value, array.array):
        return _typed_array(_array_name(value), value.tobytes())
    if isinstance(value, datetime.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        iso = moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds")
        return {TAG: "Date", "value": iso.replace("+00:00", "Z")}
    if isinstance(value, JSRegExp):
        return {TAG: "RegExp", "source": value.source, "flags": value.flags}
    if isinstance(value, JSError):
        error = {TAG: "Error", "name": value.name, "message": value.message}
        return error if value.stack is None else {**error, "stack": value.stack}
    if isinstance(value, JSSymbol):
        return {TAG: "Symbol", "description": value.description}
    if not isinstance(value, list | tuple | dict | set | frozenset):
        raise TypeError(f"cannot pass a value of type {type(value).__name__} to JavaScript")
    if id(value) in _active:
        raise TypeError("cannot pass a value that contains itself to JavaScript")
    active = _active | {id(value)}
    if isinstance(value, set | frozenset):
        return {TAG: "Set", "values": [to_json(item, active) for item in value]}
    if isinstance(value, dict):
        encoded = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"cannot pass a dict with a {type(key).__name__} key to JavaScript")
            encoded[key] = to_json(item, active)
        return {TAG: "object", "value": encoded} if TAG in encoded else encoded
    return [to_json(item, active) for item in value]


PLAIN_TYPES: Final = frozenset({str, bool, type(None)})


def to_json_many(values: Iterable[Any]) -> Sequence[Any]:
    """``to_json`` of each value. Values that need no change (plain strings, booleans, None and
    integers JavaScript holds exactly, checked at C speed) come back as they are: a list as the
    list, and a ``range`` as the range, so that its numbers need never exist one by one."""
    if isinstance(values, range) and (not values or max(abs(values[0]), abs(values[-1])) <= MAX_SAFE_INTEGER):
        return values
    values = list(values)
    kinds = set(map(type, values))
    if kinds <= PLAIN_TYPES:
        return values
    if kinds == {int} and min(values) >= -MAX_SAFE_INTEGER and max(values) <= MAX_SAFE_INTEGER:
        return values
    return [to_json(value) for value in values]
