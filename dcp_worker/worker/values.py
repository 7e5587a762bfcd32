"""Job values on the wire: ``data:`` URIs and HTTP bodies in, ``resultV2`` out.

A value arrives as a ``data:`` URI or an HTTP body whose media type says how to read it:
``application/x-kvin`` (KVIN), ``application/json``, ``text/*`` (a string), anything else bytes.
A result leaves as ``resultV2``: KVIN of ``{string, method, MIMEType}``, where ``string`` is the
JSON of a string or a boolean and the KVIN of anything else.

dcp-client sends numbers through KVIN too, except -0, which a reversed test sends through JSON
as 0; here -0 stays -0. It also sends anything with a ``toJSON`` (a Date) as JSON, turning a
Date into a string; here a Date stays a Date.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote_to_bytes

from dcp_worker import kvin
from dcp_worker.errors import JobValueError, KVINError
from dcp_worker.json_parse import parse_json
from dcp_worker.protocol.canonical_json import stringify

__all__ = ["decode_body", "decode_data_uri", "result_v2"]

# Media types whose bodies are text; any other, outside text/*, is bytes.
_TEXT_TYPES = frozenset({"application/x-kvin", "application/json", "json", "application/javascript", ""})


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def decode_body(body: bytes, content_type: str | None) -> Any:
    """The value an HTTP body (or a ``data:`` payload) of ``content_type`` stands for."""
    kind = media_type(content_type)
    if kind not in _TEXT_TYPES and not kind.startswith("text/"):
        return bytes(body)
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise JobValueError(f"a {kind or 'text'} value that is not UTF-8") from None
    if kind == "application/x-kvin":
        try:
            return kvin.deserialize(text)
        except KVINError as error:
            raise JobValueError(str(error)) from None
    if kind in ("application/json", "json"):
        try:
            return parse_json(text)
        except ValueError as error:
            raise JobValueError(f"a JSON value that is not JSON ({error})") from None
    return text


def decode_data_uri(uri: str) -> Any:
    """The value of a ``data:`` URI (percent-encoded as ``encodeURI`` does, or base64)."""
    if not uri.startswith("data:"):
        raise JobValueError("not a data: URI")
    header, comma, payload = uri[5:].partition(",")
    if not comma:
        raise JobValueError("a data: URI without a comma")
    parameters = header.split(";")
    is_base64 = parameters[-1].strip().lower() == "base64"
    content_type = ";".join(parameters[:-1] if is_base64 else parameters) or "text/plain"
    try:
        raw = unquote_to_bytes(payload)
        if is_base64:
            raw = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as error:
        raise JobValueError(f"a data: URI whose payload does not decode ({error})") from None
    return decode_body(raw, content_type)


def result_v2(value: Any) -> Any:
    """``resultV2`` for a slice's result, as the JSON object the ``result`` request carries."""
    if isinstance(value, str | bool):
        inner = {"string": stringify(value), "method": "json", "MIMEType": "application/json"}
    else:
        inner = {"string": kvin.serialize(value), "method": "kvin", "MIMEType": "application/x-kvin"}
    return kvin.marshal(inner)
