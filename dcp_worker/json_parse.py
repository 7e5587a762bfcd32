"""JSON text to Python values as ``JSON.parse`` reads it: orjson for speed, the standard library
for what orjson refuses and JavaScript accepts (escaped lone surrogates, very deep nesting)."""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["parse_json"]


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str | bytes) -> Any:
    """The value of JSON ``text``; raises ``ValueError`` naming the fault for anything else."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            return json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        except ValueError as error:
            raise ValueError(str(error)) from None
