"""The encryption of Ethereum V3 key files (Web3 Secret Storage), from pycryptodome's primitives.

A derived key ``dk`` comes from the passphrase by scrypt (or PBKDF2-HMAC-SHA256); the private
key is AES-128-CTR-encrypted with ``dk[:16]``; the MAC is keccak256(``dk[16:32]`` + ciphertext).

eth-keyfile does the same, but importing it imports py_ecc, which raises the interpreter's
recursion limit to 100000 for the whole process: deeply nested hostile input would then overflow
the C stack instead of raising RecursionError. Hence these few lines here.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import PBKDF2, scrypt

from dcp_worker.protocol.identity import keccak

__all__ = ["KeyFileError", "WrongPassphrase", "decrypt", "encrypt"]

# Costs past these would make opening a hostile key file a denial of service (scrypt with
# n = 2**20 and r = 8 already takes 1 GiB).
MAX_SCRYPT_N = 2**20
MAX_SCRYPT_R = 16
MAX_SCRYPT_P = 16
MAX_PBKDF2_ROUNDS = 10_000_000
# Called through these: pycryptodome's stubs type the password as str in some releases and as
# bytes in others (it takes bytes), and scrypt's result as bytes or a tuple of them.
_scrypt: Callable[..., Any] = scrypt
_pbkdf2: Callable[..., Any] = PBKDF2


class KeyFileError(ValueError):
    """A key file that is damaged or asks for something unsupported."""


class WrongPassphrase(KeyFileError):
    """The MAC does not match: the passphrase is not the one."""


def encrypt(private_key: bytes, passphrase: str, scrypt_n: int, salt_bytes: int = 32) -> dict[str, Any]:
    """A V3 key file document (without ``address``) for ``private_key``."""
    salt = secrets.token_bytes(salt_bytes)
    iv = secrets.token_bytes(16)
    kdfparams = {"dklen": 32, "salt": salt.hex(), "n": scrypt_n, "r": 8, "p": 1}
    derived = _derive("scrypt", kdfparams, passphrase)
    ciphertext = _aes_ctr(derived[:16], iv, private_key)
    return {
        "version": 3,
        "id": str(uuid.uuid4()),
        "crypto": {
            "ciphertext": ciphertext.hex(),
            "cipherparams": {"iv": iv.hex()},
            "cipher": "aes-128-ctr",
            "kdf": "scrypt",
            "kdfparams": kdfparams,
            "mac": keccak(derived[16:32] + ciphertext).hex(),
        },
    }


def decrypt(crypto: Mapping[str, Any], passphrase: str) -> bytes:
    """The private key inside the ``crypto`` section; ``WrongPassphrase`` if the MAC disagrees."""
    try:
        if crypto.get("cipher") != "aes-128-ctr":
            raise KeyFileError(f"unsupported cipher {crypto.get('cipher')!r}")
        ciphertext = bytes.fromhex(crypto["ciphertext"])
        iv = bytes.fromhex(crypto["cipherparams"]["iv"])
        mac = bytes.fromhex(crypto["mac"])
        derived = _derive(crypto["kdf"], crypto["kdfparams"], passphrase)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, KeyFileError):
            raise
        raise KeyFileError(f"bad or missing field {error}") from None
    if len(iv) != 16 or len(derived) < 32:
        raise KeyFileError("an iv that is not 16 bytes, or a derived key shorter than 32")
    if not hmac.compare_digest(keccak(derived[16:32] + ciphertext), mac):
        raise WrongPassphrase("wrong passphrase")
    return _aes_ctr(derived[:16], iv, ciphertext)


def _derive(kdf: str, params: Mapping[str, Any], passphrase: str) -> bytes:
    salt = bytes.fromhex(params["salt"])
    length = _bounded(params["dklen"], 32, 64, "dklen")
    if kdf == "scrypt":
        n = _bounded(params["n"], 2, MAX_SCRYPT_N, "scrypt n")
        if n & (n - 1):
            raise KeyFileError(f"scrypt n must be a power of two, not {n}")
        r = _bounded(params["r"], 1, MAX_SCRYPT_R, "scrypt r")
        p = _bounded(params["p"], 1, MAX_SCRYPT_P, "scrypt p")
        return bytes(_scrypt(passphrase.encode(), salt, length, N=n, r=r, p=p))
    if kdf == "pbkdf2":
        if params.get("prf", "hmac-sha256") != "hmac-sha256":
            raise KeyFileError(f"unsupported pbkdf2 prf {params.get('prf')!r}")
        rounds = _bounded(params["c"], 1, MAX_PBKDF2_ROUNDS, "pbkdf2 c")
        return bytes(_pbkdf2(passphrase.encode(), salt, length, count=rounds, hmac_hash_module=SHA256))
    raise KeyFileError(f"unsupported kdf {kdf!r}")


def _bounded(value: object, low: int, high: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise KeyFileError(f"{name} {value!r} is outside {low}..{high}")
    return value


def _aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    return bytes(AES.new(key, AES.MODE_CTR, initial_value=iv, nonce=b"").encrypt(data))
