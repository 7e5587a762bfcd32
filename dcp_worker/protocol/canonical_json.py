"""JSON text exactly as JavaScript's ``JSON.stringify`` writes it.

DCP signs the UTF-8 of ``JSON.stringify(body)`` and its verifier re-stringifies the parsed body
before checking, so a Python signer must produce, byte for byte, what node would:

- no whitespace; object keys in insertion order, except keys that are array indices ("0", "17",
  up to 2**32 - 2), which JavaScript moves first, in ascending numeric order;
- numbers as ``Number.prototype.toString`` writes them (``5.0`` -> ``5``, ``-0`` -> ``0``,
  ``1e21`` -> ``1e+21``, ``1e16`` -> ``10000000000000000``); NaN and the infinities as ``null``;
  integers beyond 2**53 go through a double, as they would in JavaScript;
- strings escaping only ``"``, ``\\``, U+0000-U+001F and lone surrogates; everything else raw;
- ``Undefined`` members of objects are left out, and become ``null`` in arrays.
"""

from __future__ import annotations

import json.encoder
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from dcp_worker.jsvalues import MAX_SAFE_INTEGER, Undefined

__all__ = ["Verbatim", "format_number", "stringify"]

_MAX_ARRAY_INDEX = 2**32 - 2
_encode_string: Any = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_RUN = re.compile("[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]")


class Verbatim:
    """JSON text already in canonical form, written as it is: a value sent many times over
    (a task's authorization, echoed with every result) is then stringified once."""

    __slots__ = ("text",)

    def __init__(self, value: object) -> None:
        self.text = stringify(value)

    def __repr__(self) -> str:
        return f"Verbatim({self.text[:60]!r})"


def stringify(value: object) -> str:
    """``JSON.stringify(value)`` for a JSON-able Python value (dict, list, tuple, str, int,
    float, bool, None, ``Undefined`` inside containers).

    Raises ``TypeError`` for anything else, and for ``Undefined`` at the top, where JavaScript
    returns no text at all.
    """
    if value is Undefined:
        raise TypeError("JSON.stringify(undefined) has no text")
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def format_number(number: float) -> str:
    """A number as JavaScript's ``String(number)`` writes it (NaN and the infinities included)."""
    if number != number:
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    # repr gives the shortest digits that round-trip, as ECMAScript's Number::toString asks.
    mantissa, _, exponent_text = repr(abs(float(number))).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    if whole == "0":
        point = len(fraction.lstrip("0")) - len(fraction)
    else:
        point = len(whole) + (int(exponent_text) if exponent_text else 0)
    digits = digits.rstrip("0") or "0"
    sign = "-" if number < 0 else ""
    count = len(digits)
    if count <= point <= 21:
        return sign + digits + "0" * (point - count)
    if 0 < point <= 21:
        return f"{sign}{digits[:point]}.{digits[point:]}"
    if -6 < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    exponent = point - 1
    head = digits[0] if count == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{sign}{head}e{'+' if exponent > 0 else '-'}{abs(exponent)}"


def _write(value: object, parts: list[str]) -> None:
    if isinstance(value, Verbatim):
        parts.append(value.text)
    elif isinstance(value, str):
        parts.append(_string(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        parts.append(str(value) if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else _double(float(value)))
    elif isinstance(value, float):
        parts.append(_double(value))
    elif isinstance(value, Mapping):
        _write_object(value, parts)
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            if item is Undefined:
                parts.append("null")
            else:
                _write(item, parts)
        parts.append("]")
    else:
        raise TypeError(f"JSON cannot carry a {type(value).__name__}")


def _write_object(mapping: Mapping[Any, Any], parts: list[str]) -> None:
    indexed: list[tuple[int, str, object]] = []
    named: list[tuple[str, object]] = []
    for key, item in mapping.items():
        if item is Undefined:
            continue
        if not isinstance(key, str):
            raise TypeError(f"JSON object keys are strings, not {type(key).__name__} ({key!r})")
        index = _array_index(key)
        if index is None:
            named.append((key, item))
        else:
            indexed.append((index, key, item))
    indexed.sort(key=lambda entry: entry[0])
    parts.append("{")
    first = True
    for key, item in [(key, item) for _, key, item in indexed] + named:
        if not first:
            parts.append(",")
        first = False
        parts.append(_string(key))
        parts.append(":")
        _write(item, parts)
    parts.append("}")


def _array_index(key: str) -> int | None:
    if not key.isdigit() or not key.isascii() or (key[0] == "0" and len(key) > 1) or len(key) > 10:
        return None
    index = int(key)
    return index if index <= _MAX_ARRAY_INDEX else None


def _double(number: float) -> str:
    if math.isnan(number) or math.isinf(number):
        return "null"
    return format_number(number)


def _string(text: str) -> str:
    encoded: str = _encode_string(text)
    if _SURROGATE.search(text) is None:
        return encoded
    return _SURROGATE_RUN.sub(_pair_or_escape, encoded)


def _pair_or_escape(match: re.Match[str]) -> str:
    run = match.group()
    if len(run) == 2:
        # A high and a low surrogate side by side are one character to JavaScript.
        return chr(0x10000 + ((ord(run[0]) - 0xD800) << 10) + (ord(run[1]) - 0xDC00))
    return f"\\u{ord(run):04x}"
