"""Sealed DCP messages: ``{"owner", "signature", "body"}`` with the body signed by the owner.

The signature covers the UTF-8 of ``JSON.stringify(body)``, so the body is written with
``canonical_json.stringify`` and embedded verbatim. On the way in, the raw text of the body is
checked first (what a JavaScript peer signs is exactly what it sends); only when that fails is
the parsed body re-stringified, as dcp-client's verifier does, for peers that format otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dcp_worker.errors import IdentityError, SignatureError
from dcp_worker.json_parse import parse_json
from dcp_worker.protocol.canonical_json import stringify
from dcp_worker.protocol.identity import Identity, Signature, checksum_address, recover_address

__all__ = ["SealedMessage", "seal", "unseal"]

_BODY_KEY = '"body":'
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class SealedMessage:
    """A message whose signature has been checked: ``owner`` signed ``body``."""

    owner: str
    body: dict[str, Any]


def seal(identity: Identity, body: Mapping[str, Any]) -> str:
    """The wire text of ``body`` signed by ``identity``."""
    text = stringify(body)
    signature = identity.sign(text.encode())
    return f'{{"owner":"{identity.address}","signature":{stringify(signature.to_json())},"body":{text}}}'


def unseal(text: str) -> SealedMessage:
    """Parse and verify a sealed message; raises ``SignatureError`` naming what is wrong."""
    try:
        message = parse_json(text)
    except ValueError as error:
        raise SignatureError(f"a message that is not JSON ({error})") from None
    if not isinstance(message, dict):
        raise SignatureError("a message that is not a JSON object")
    owner_text, body = message.get("owner"), message.get("body")
    if not isinstance(owner_text, str):
        raise SignatureError("a message with no owner")
    if not isinstance(body, dict):
        raise SignatureError("a message with no body object")
    try:
        owner = checksum_address(owner_text)
    except IdentityError as error:
        raise SignatureError(f"a message whose owner is not an address: {error}") from None
    signature = Signature.from_json(message.get("signature"))
    if _raw_body_signer(text, signature) != owner and _signer(stringify(body), signature) != owner:
        raise SignatureError(f"a message whose signature is not {owner}'s")
    return SealedMessage(owner, body)


def _raw_body_signer(text: str, signature: Signature) -> str | None:
    start = text.find(_BODY_KEY)
    end = text.rfind("}")
    if start < 0 or end <= start:
        return None
    return _signer(text[start + len(_BODY_KEY) : end], signature)


def _signer(body_text: str, signature: Signature) -> str | None:
    try:
        return recover_address(_utf8(body_text), signature)
    except SignatureError:
        return None


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        # What Buffer.from does to a lone surrogate.
        return _LONE_SURROGATE.sub("\ufffd", text).encode()
