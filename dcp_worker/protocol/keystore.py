"""DCP keystores: Ethereum V3 key files (scrypt, AES-128-CTR, keccak MAC), as dcp-client keeps
them in ``~/.dcp/id.keystore`` (the identity that signs every message) and
``~/.dcp/default.keystore`` (the payment account; only its address is needed).

Encryption and decryption are in ``key_file``. Unlocking tries the empty passphrase first, as
dcp-client does, then each passphrase the caller supplies, in order.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from dcp_worker.errors import IdentityError, KeystoreError, PassphraseError
from dcp_worker.json_parse import parse_json
from dcp_worker.protocol import key_file
from dcp_worker.protocol.dcp_home import PASSPHRASE_VARIABLE
from dcp_worker.protocol.identity import Identity, checksum_address
from dcp_worker.protocol.private_file import write_private

__all__ = ["Keystore", "passphrases"]

# dcp-client writes new keystores with scrypt n=1024 (fast to unlock; the key is a worker's).
SCRYPT_N = 1024
_SALT_BYTES = 32


class Keystore:
    """One keystore document: its address is readable at once; its key needs a passphrase."""

    def __init__(self, document: dict[str, Any], source: str = "keystore") -> None:
        self.source = source
        # ethereumjs-wallet, which dcp-client reads keystores with, accepts "Crypto" for "crypto".
        if "crypto" not in document and isinstance(document.get("Crypto"), dict):
            document = {**document, "crypto": document["Crypto"]}
        crypto = document.get("crypto")
        if document.get("version") != 3 or not isinstance(crypto, dict):
            raise KeystoreError(f"{source}: not a version 3 keystore")
        if crypto.get("kdf") not in ("scrypt", "pbkdf2") or crypto.get("cipher") != "aes-128-ctr":
            raise KeystoreError(
                f"{source}: unsupported encryption {crypto.get('kdf')!r}/{crypto.get('cipher')!r}"
                " (scrypt or pbkdf2 with aes-128-ctr are supported)"
            )
        address = document.get("address")
        try:
            self.address = checksum_address(address) if isinstance(address, str) else None
        except IdentityError as error:
            raise KeystoreError(f"{source}: {error}") from None
        self.document = document

    @classmethod
    def load(cls, path: Path) -> Keystore:
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            raise KeystoreError(f"{path}: no such keystore") from None
        except OSError as error:
            raise KeystoreError(f"{path}: cannot read: {error.strerror}") from None
        try:
            document = parse_json(text)
        except ValueError as error:
            raise KeystoreError(f"{path}: not a keystore (invalid JSON: {error})") from None
        if not isinstance(document, dict):
            raise KeystoreError(f"{path}: not a keystore (not a JSON object)")
        return cls(document, str(path))

    @classmethod
    def create(cls, identity: Identity, passphrase: str, label: str | None = None) -> Keystore:
        document = key_file.encrypt(identity.private_key, passphrase, SCRYPT_N, _SALT_BYTES)
        document["address"] = identity.address[2:].lower()
        if label is not None:
            document["label"] = label
        document["timestamp"] = int(time.time() * 1000)
        return cls(document)

    def unlock(self, passphrase: str) -> Identity:
        """The identity inside; ``PassphraseError`` when ``passphrase`` is not the one."""
        try:
            key = key_file.decrypt(self.document["crypto"], passphrase)
        except key_file.WrongPassphrase:
            raise PassphraseError(f"{self.source}: wrong passphrase") from None
        except key_file.KeyFileError as error:
            raise KeystoreError(f"{self.source}: damaged keystore ({error})") from None
        identity = Identity(key)
        if self.address is not None and identity.address != self.address:
            raise KeystoreError(f"{self.source}: the key inside is not the key of {self.address}")
        return identity

    def unlock_with(self, candidates: Iterable[str]) -> Identity:
        """Try the empty passphrase, then each candidate in turn (a prompt may be a generator)."""
        tried = 0
        for passphrase in _with_empty_first(candidates):
            tried += 1
            try:
                return self.unlock(passphrase)
            except PassphraseError:
                continue
        what = "the empty passphrase" if tried == 1 else f"{tried} passphrases"
        raise PassphraseError(f"{self.source}: wrong passphrase ({what} tried)")

    def write(self, path: Path, overwrite: bool = False) -> None:
        """Write the keystore readable by its owner only; never half a file."""
        if path.exists() and not overwrite:
            raise KeystoreError(f"{path}: already exists; not overwriting a keystore")
        try:
            write_private(path, json.dumps(self.document, separators=(",", ":")))
        except OSError as error:
            raise KeystoreError(f"{path}: cannot write: {error.strerror}") from None


def _with_empty_first(candidates: Iterable[str]) -> Iterator[str]:
    yield ""
    for candidate in candidates:
        if candidate:
            yield candidate


def passphrases(
    passphrase_file: Path | None = None,
    prompt: Callable[[], str] | None = None,
    prompt_tries: int = 5,
) -> Iterator[str]:
    """Passphrases to try after the empty one: from ``passphrase_file`` (its first line), from
    ``$DCP_WORKER_PASSPHRASE``, then up to ``prompt_tries`` answers from ``prompt``."""
    if passphrase_file is not None:
        try:
            lines = passphrase_file.read_text().splitlines()
        except OSError as error:
            raise KeystoreError(f"{passphrase_file}: cannot read it: {error.strerror}") from None
        except UnicodeDecodeError:
            raise KeystoreError(f"{passphrase_file}: the passphrase file is not UTF-8 text") from None
        yield lines[0] if lines else ""
    if from_environment := os.environ.get(PASSPHRASE_VARIABLE):
        yield from_environment
    if prompt is not None:
        for _ in range(prompt_tries):
            yield prompt()
