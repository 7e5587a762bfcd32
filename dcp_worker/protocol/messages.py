"""The bodies of DCP session messages, with their fields in the order dcp-client writes them.

A body is a plain dict; ``sealed.seal`` signs it. Requests and notifications carry a validity
stamp that the receiver checks (``validity_error``); acks are not messages and carry only the
token of what they acknowledge and the nonce the peer's next message must carry.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Mapping
from typing import Any

from dcp_worker.json_parse import parse_json
from dcp_worker.protocol.canonical_json import stringify

__all__ = [
    "PROTOCOL_VERSION",
    "ErrorPayload",
    "MessageIds",
    "ack_body",
    "batch_entry",
    "error_payload",
    "random_string",
    "request_payload",
    "unbatch_payload",
    "validity_error",
]

PROTOCOL_VERSION = "5.3.0"
TTL_DEFAULT, TTL_MIN, TTL_MAX = 120, 15, 600
VALIDITY_SLOP_SECONDS = 600
# dcp-client's randStr21 alphabet, as it is (it has "yx" swapped and a second "k").
_ALPHABET = "1234567890abcdefghijklmnopqrstuvwyxzkABCDEFGHIJKLMNOPQRSTUVWXYZ"

ErrorPayload = dict[str, Any]


def random_string(length: int = 21) -> str:
    # 256 is not a multiple of 63, so a few letters come a little more often; these strings
    # are ids and replay stamps, unique by their 125 bits, not secrets.
    return "".join([_ALPHABET[byte % len(_ALPHABET)] for byte in secrets.token_bytes(length)])


class MessageIds:
    """Message ids, ack tokens and nonces for one connection, in dcp-client's forms."""

    _connections = itertools.count(1)

    def __init__(self) -> None:
        self._connection = next(self._connections)
        self._messages = itertools.count(1)
        self._tokens = itertools.count(1)
        self._nonces = itertools.count(1)

    def message_id(self) -> str:
        return f"{self._connection}-{next(self._messages)}-{random_string()}"

    def ack_token(self) -> str:
        return f"ATi{next(self._tokens)}-{random_string()}"

    def nonce(self) -> str:
        return f"NNi{next(self._nonces)}-{random_string()}"


def request_payload(operation: str, data: Any, now: float, ttl: int = TTL_DEFAULT) -> dict[str, Any]:
    payload: dict[str, Any] = {"operation": operation}
    payload["data"] = data
    payload["allow"] = []
    payload["validity"] = {"stamp": random_string(), "ttl": ttl, "time": now}
    return payload


def ack_body(dcpsid: str | None, token: object, nonce: str, message_id: object) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "ack"}
    if dcpsid is not None:
        body["dcpsid"] = dcpsid
    body["token"] = token
    body["nonce"] = nonce
    body["messageId"] = message_id
    return body


def error_payload(error: BaseException, origin: str) -> ErrorPayload:
    """How a request's failure travels back: the error's fields, as dcp-client's ErrorPayload."""
    payload: ErrorPayload = {"message": str(error) or type(error).__name__, "name": type(error).__name__}
    code = getattr(error, "code", None)
    if isinstance(code, str):
        payload["code"] = code
    payload["stack"] = ""
    payload["origin"] = origin
    return payload


class StampCache:
    """Validity stamps seen recently: a stamp used twice within its ttl is a replay."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}

    def seen(self, stamp: str, until: float, now: float) -> bool:
        if len(self._expiry) > 4096:
            self._expiry = {key: end for key, end in self._expiry.items() if end > now}
        if self._expiry.get(stamp, 0) > now:
            return True
        self._expiry[stamp] = until
        return False


def validity_error(payload: Mapping[str, Any], stamps: StampCache, now: float | None = None) -> str | None:
    """Why a request or notification is not valid now (code and reason), or ``None``."""
    now = time.time() if now is None else now
    validity = payload.get("validity")
    if not isinstance(validity, Mapping):
        return "EINVAL: no validity"
    stamp, sent, ttl = validity.get("stamp"), validity.get("time"), validity.get("ttl", TTL_DEFAULT)
    if not isinstance(stamp, str) or not stamp:
        return "EINVAL: no validity stamp"
    if not isinstance(sent, int | float) or not isinstance(ttl, int | float):
        return "EINVAL: a validity time or ttl that is not a number"
    ttl = min(max(float(ttl), TTL_MIN), TTL_MAX)
    if sent > now + VALIDITY_SLOP_SECONDS:
        return "ETIMETRAVEL: sent from the future"
    if sent + ttl < now - VALIDITY_SLOP_SECONDS:
        return "EEXPIRED: expired"
    if stamps.seen(stamp, sent + ttl + VALIDITY_SLOP_SECONDS, now):
        return "EDUP: a validity stamp seen before"
    return None


def batch_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    """A message's form inside a batch: its data pre-stringified as ``jsonData``, no token or nonce."""
    payload = body.get("payload")
    if isinstance(payload, Mapping) and _js_truthy(payload.get("data")):
        rewritten = {key: value for key, value in payload.items() if key != "data"}
        rewritten["jsonData"] = stringify(payload["data"])
        return {**body, "payload": rewritten}
    return dict(body)


def unbatch_payload(body: dict[str, Any]) -> dict[str, Any]:
    """Undo ``batch_entry`` on a received message: ``jsonData`` is parsed back into ``data``."""
    payload = body.get("payload")
    if isinstance(payload, dict) and isinstance(payload.get("jsonData"), str) and payload["jsonData"]:
        rewritten = {key: value for key, value in payload.items() if key != "jsonData"}
        rewritten["data"] = parse_json(payload["jsonData"])
        return {**body, "payload": rewritten}
    return body


def _js_truthy(value: object) -> bool:
    if isinstance(value, list | dict):
        return True
    return bool(value) and value == value  # NaN is falsy in JavaScript
