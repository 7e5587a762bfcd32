"""Ethereum identities as DCP uses them: secp256k1 keys, EIP-55 addresses and EIP-191
``personal_sign`` signatures (RFC 6979, low S, ``v`` = 27 + recovery id).

The cryptography is libsecp256k1's (through coincurve) and keccak is pycryptodome's; this module
only arranges their inputs and outputs the way dcp-client does.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import coincurve
from Crypto.Hash import keccak as keccak_module

from dcp_worker.errors import IdentityError, SignatureError

__all__ = ["Identity", "Signature", "checksum_address", "personal_message_hash", "recover_address"]

_PERSONAL_PREFIX = b"\x19Ethereum Signed Message:\n"
_CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def keccak(data: bytes) -> bytes:
    return bytes(keccak_module.new(data=data, digest_bits=256).digest())


def personal_message_hash(message: bytes) -> bytes:
    """keccak256 of the EIP-191 (version 0x45) framing of ``message``."""
    return keccak(_PERSONAL_PREFIX + str(len(message)).encode() + message)


def _eip55(raw_address: bytes) -> str:
    """EIP-55: each hex letter upper-case where the same nibble of keccak(lower-case hex) is >= 8."""
    digits = raw_address.hex()
    nibbles = keccak(digits.encode()).hex()
    letters = zip(digits, nibbles[:40], strict=True)
    return "0x" + "".join(c.upper() if int(n, 16) >= 8 else c for c, n in letters)


def checksum_address(address: str) -> str:
    """``address`` (with or without ``0x``) in EIP-55 form.

    Like dcp-client, an all-lowercase or all-uppercase address is taken as it is, while a
    mixed-case one must carry a valid checksum.
    """
    digits = address[2:] if address[:2] in ("0x", "0X") else address
    if len(digits) != 40 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise IdentityError(f"not an Ethereum address: {address!r}")
    checksummed = _eip55(bytes.fromhex(digits))
    if digits not in (digits.lower(), digits.upper()) and digits != checksummed[2:]:
        raise IdentityError(f"address {address!r} has a wrong EIP-55 checksum")
    return checksummed


@dataclass(frozen=True, slots=True)
class Signature:
    """An ECDSA signature over secp256k1 with its recovery byte, ``v`` in {27, 28}."""

    r: bytes
    s: bytes
    v: int

    def to_json(self) -> dict[str, object]:
        """The form ``JSON.stringify`` gives dcp-client's signature: r and s as Node Buffers."""
        return {
            "r": {"type": "Buffer", "data": list(self.r)},
            "s": {"type": "Buffer", "data": list(self.s)},
            "v": self.v,
        }

    @classmethod
    def from_json(cls, value: object) -> Signature:
        """Read a signature as a peer sent it: r and s as Buffer JSON or byte lists, v 27/28 or 0/1."""
        if not isinstance(value, Mapping):
            raise SignatureError("the signature is not an object")
        r = _signature_bytes(value.get("r"), "r")
        s = _signature_bytes(value.get("s"), "s")
        v = value.get("v")
        if not isinstance(v, int) or isinstance(v, bool) or v not in (0, 1, 27, 28):
            raise SignatureError(f"the signature's v is {v!r}, not 27 or 28")
        return cls(r, s, v if v >= 27 else v + 27)


def _signature_bytes(value: object, name: str) -> bytes:
    if isinstance(value, Mapping) and value.get("type") == "Buffer":
        value = value.get("data")
    if (
        not isinstance(value, list)
        or len(value) != 32
        or not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value)
    ):
        raise SignatureError(f"the signature's {name} is not 32 bytes")
    return bytes(value)


class Identity:
    """A private key, its address, and signing in dcp-client's manner."""

    __slots__ = ("_key", "address")

    def __init__(self, private_key: bytes) -> None:
        if len(private_key) != 32 or not 0 < int.from_bytes(private_key, "big") < _CURVE_ORDER:
            raise IdentityError("a private key is 32 bytes, a number between 1 and the curve order")
        self._key = coincurve.PrivateKey(private_key)
        public = self._key.public_key.format(compressed=False)[1:]
        self.address = _eip55(keccak(public)[-20:])

    @classmethod
    def generate(cls) -> Identity:
        while True:
            candidate = secrets.token_bytes(32)
            if 0 < int.from_bytes(candidate, "big") < _CURVE_ORDER:
                return cls(candidate)

    @classmethod
    def from_hex(cls, text: str) -> Identity:
        digits = text[2:] if text[:2] in ("0x", "0X") else text
        try:
            key = bytes.fromhex(digits)
        except ValueError:
            raise IdentityError("a private key is 64 hexadecimal digits") from None
        return cls(key)

    @property
    def private_key(self) -> bytes:
        return bytes(self._key.secret)

    def sign(self, message: bytes) -> Signature:
        """``personal_sign`` over ``message``: deterministic (RFC 6979) and low-S."""
        compact = self._key.sign_recoverable(personal_message_hash(message), hasher=None)
        return Signature(compact[:32], compact[32:64], 27 + compact[64])

    def __repr__(self) -> str:
        return f"Identity({self.address})"


def recover_address(message: bytes, signature: Signature) -> str:
    """The EIP-55 address whose key made ``signature`` over ``message`` (``personal_sign``)."""
    compact = signature.r + signature.s + bytes([signature.v - 27])
    try:
        public = coincurve.PublicKey.from_signature_and_message(
            compact, personal_message_hash(message), hasher=None
        )
    except Exception as error:  # coincurve raises bare Exception for unrecoverable signatures
        raise SignatureError(f"the signature does not verify: {error}") from None
    return _eip55(keccak(public.format(compressed=False)[1:])[-20:])
