"""Python values to JSON text that JavaScript's ``JSON.parse`` reads back: orjson for speed, the
standard library for what orjson refuses and JavaScript strings may hold (lone surrogates, which
UTF-8 cannot carry, written as ``\\ud800`` escapes) and for nesting deeper than orjson goes.
The counterpart of ``json_parse``."""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dump_json"]


def dump_json(value: Any) -> bytes:
    """Compact JSON for ``value``; ``TypeError`` for what JSON cannot hold, ``RecursionError``
    for nesting too deep for either writer."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
