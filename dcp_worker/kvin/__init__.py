"""KVIN v9, the serialization DCP's network and sandboxes speak (npm ``kvin@9.0.0``).

``serialize(value)`` writes the text JavaScript's ``kvin.serialize`` would read back, and
``deserialize(text)`` reads what ``kvin.serialize`` writes. How JavaScript values map to Python
ones is in the README (section "KVIN"). The codec is compiled with Cython where the package was
built with it, and pure Python otherwise, or when ``DCP_WORKER_NO_EXTENSIONS`` is set; the two
behave the same. ``IMPLEMENTATION`` says which one runs.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import orjson

from dcp_worker.errors import KVINError
from dcp_worker.json_dump import dump_json
from dcp_worker.json_parse import parse_json

__all__ = ["IMPLEMENTATION", "KVINError", "deserialize", "marshal", "serialize", "unmarshal"]

NO_EXTENSIONS_VARIABLE = "DCP_WORKER_NO_EXTENSIONS"


def _choose_codec() -> tuple[ModuleType, str]:
    if not os.environ.get(NO_EXTENSIONS_VARIABLE):
        try:
            from dcp_worker.sandbox_ext import _kvin_codec  # type: ignore[attr-defined]

            return _kvin_codec, "compiled"
        except ImportError:
            pass
    from dcp_worker.sandbox_ext import kvin_codec

    return kvin_codec, "pure"


_codec, IMPLEMENTATION = _choose_codec()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Reading or writing a large value makes many containers and no garbage; the cyclic garbage
    collector would walk them again and again for nothing (it halves the time at 100,000 objects)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def marshal(value: Any) -> Any:
    """The KVIN envelope for a Python value as a JSON-able object (``kvin.marshal`` in JS), for
    a KVIN value that travels inside other JSON; ``KVINError`` for what has no JavaScript form."""
    try:
        with _collector_paused():
            return _codec.marshal(value)
    except RecursionError:
        raise KVINError("cannot write KVIN: the value is nested too deeply") from None


def unmarshal(envelope: Any) -> Any:
    """The value a KVIN envelope already parsed from JSON stands for (``kvin.unmarshal`` in JS);
    raises ``KVINError`` for what is not KVIN."""
    try:
        with _collector_paused():
            return _codec.unmarshal(envelope)
    except RecursionError:
        raise KVINError("cannot read KVIN: the value is nested too deeply") from None


def serialize(value: Any) -> str:
    """KVIN text for a Python value; raises ``KVINError`` for what has no JavaScript form."""
    envelope = marshal(value)
    what = envelope["what"]
    if type(what) is str and not what.isascii():
        text = _around_plain_string(envelope, what)
        if text is not None:
            return text
    try:
        return dump_json(envelope).decode()
    except RecursionError:
        raise KVINError("cannot write KVIN: the value is nested too deeply") from None


def _around_plain_string(envelope: dict[str, Any], what: str) -> str | None:
    """The text of an envelope holding one string that JSON writes unescaped, built around the
    string itself: decoding orjson's UTF-8 back into a str costs ~3 ms per MB of non-ASCII text, a
    tenth of that here. A string result is what most DCP work functions return."""
    try:
        literal = orjson.dumps(what)
    except orjson.JSONEncodeError:
        return None
    if len(literal) != len(what.encode()) + 2:
        return None
    others = orjson.dumps({key: item for key, item in envelope.items() if key != "what"}).decode()
    return '{"what":"' + what + '",' + others[1:]


def deserialize(text: str | bytes) -> Any:
    """The value KVIN text stands for; raises ``KVINError`` for text that is not KVIN."""
    return unmarshal(_parse(text))


def _parse(text: str | bytes) -> Any:
    try:
        return parse_json(text)
    except ValueError as error:
        raise KVINError(f"not KVIN: invalid JSON ({error})") from None
