"""Reading a localexec job from files: work function, input set, arguments, modules.

Every failure is a ``UsageError`` whose message names the file or option at fault.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from dcp_worker.errors import UsageError
from dcp_worker.jsvalues import MAX_SAFE_INTEGER
from dcp_worker.supervisor.job import Module

JSONL_SUFFIXES = (".jsonl", ".ndjson")
MAX_RANGE_SLICES = 10_000_000


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path}: is a directory") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{what} {path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise UsageError(f"{what} {path}: {error.strerror}") from None


def _parse_json(text: str, where: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise UsageError(f"{where}: not valid JSON ({error.args[0]})") from None


def read_inputs(path: Path) -> list[Any]:
    """One slice per element of a JSON array, or per line of a JSON Lines file."""
    text = read_text(path, "input file")
    if path.suffix.lower() in JSONL_SUFFIXES:
        values = []
        # Only "\n" ends a line: JSON strings may hold U+2028 and other breaks splitlines() knows.
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                values.append(_parse_json(line, f"input file {path}, line {number}"))
        return values
    values = _parse_json(text, f"input file {path}")
    if not isinstance(values, list):
        raise UsageError(
            f"input file {path}: expected a JSON array (one slice per element), found {_json_kind(values)}"
        )
    return values


def read_arguments(path: Path) -> list[Any]:
    values = _parse_json(read_text(path, "--args file"), f"--args file {path}")
    if not isinstance(values, list):
        raise UsageError(
            f"--args file {path}: expected a JSON array of arguments, found {_json_kind(values)}"
        )
    return values


def _json_kind(value: Any) -> str:
    return {dict: "an object", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _range_number(text: str, part: str, spec: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise UsageError(f"--range {spec}: {part} {text!r} is not a number") from None
    if not math.isfinite(number):
        raise UsageError(f"--range {spec}: {part} must be finite")
    return number


def parse_range(spec: str) -> Sequence[int | float]:
    """START:END[:STEP] with END inclusive and STEP defaulting to ±1, as DCP's RangeObject. Whole
    numbers come as a ``range``, so that even ten million slices cost nothing to list."""
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise UsageError(f"--range {spec}: expected START:END or START:END:STEP")
    start = _range_number(parts[0], "START", spec)
    end = _range_number(parts[1], "END", spec)
    step = _range_number(parts[2], "STEP", spec) if len(parts) == 3 else (1.0 if end >= start else -1.0)
    if step == 0:
        raise UsageError(f"--range {spec}: STEP must not be 0")
    if (end - start) * step < 0:
        raise UsageError(f"--range {spec}: STEP {parts[2]} moves away from END")
    # A hair of tolerance so that 0:1:0.1 includes 1, as a person reading it expects.
    count = math.floor(abs(end - start) / abs(step) + 1e-9) + 1
    if count > MAX_RANGE_SLICES:
        raise UsageError(f"--range {spec}: {count} slices; localexec runs at most {MAX_RANGE_SLICES} at once")
    if start.is_integer() and step.is_integer():
        first, stride = int(start), int(step)
        last = first + (count - 1) * stride
        if max(abs(first), abs(last)) <= MAX_SAFE_INTEGER:
            return range(first, last + stride, stride)
    return [start + index * step for index in range(count)]


def parse_module(spec: str) -> tuple[str, Module]:
    """NAME=PATH for ``--require``."""
    name, separator, path_text = spec.partition("=")
    name = name.strip()
    if not separator or not name or not path_text:
        raise UsageError(f"--require {spec}: expected NAME=PATH")
    path = Path(path_text)
    return name, Module(source=read_text(path, f"--require {name}: module file"), filename=os.fspath(path))
