"""Keys, signatures and keystores, checked against dcp-client's own wallet code in node."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from scheduler_double import SchedulerDouble, SchedulerDoubleError

from dcp_worker.errors import IdentityError, KeystoreError, PassphraseError, SignatureError
from dcp_worker.protocol.identity import Identity, Signature, checksum_address, personal_message_hash
from dcp_worker.protocol.keystore import Keystore, passphrases
from dcp_worker.protocol.sealed import seal, unseal

DCP_CLIENT = Path(__file__).resolve().parent / "node" / "node_modules" / "dcp-client"
FIXTURE_KEYSTORES = DCP_CLIENT / "test-pseudo-root" / "home" / "username" / ".dcp"
# The test vector of ../shared/reference/dcp-scheduler-protocol.md §3.1 (made with dcp-client).
VECTOR_KEY = "11" * 32
VECTOR_ADDRESS = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
VECTOR_SEALED = (
    '{"owner":"0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A","signature":{"r":{"type":"Buffer","data":[77,71,213,182,208,110,84,33,99,15,146,221,95,182,28,228,47,74,64,94,184,156,223,195,178,149,127,176,63,243,107,166]},'
    '"s":{"type":"Buffer","data":[23,254,29,41,220,4,139,136,117,201,53,224,83,14,96,107,111,13,128,172,89,49,75,112,122,254,68,15,183,237,104,71]},"v":28},'
    '"body":{"id":"1-1-abcdefghijklmnopqrstu","type":"request","payload":{"operation":"connect","data":{"version":"5.3.0","sid":"AAAAAAAAAAAAAAAAAAAAA"},"allow":[],'
    '"validity":{"stamp":"BBBBBBBBBBBBBBBBBBBBB","ttl":120,"time":1732900000.123}},"auth":{},"time":1732900000.125,"ackToken":"ATi1-CCCCCCCCCCCCCCCCCCCCC","nonce":null}}'
)

BODIES: list[Any] = [
    {"type": "request", "payload": {"operation": "echo", "data": [1, 2.5, -0.0, 1e21, 1e-7]}},
    {"b": 1, "10": 2, "2": 3, "a": {"é": "\u2028\U0001f600", "nul": "\x00"}},
    {"text": "\ud800 lone", "big": 2**60, "neg": -1.5e-300},
]


def test_the_reference_test_vector() -> None:
    identity = Identity.from_hex(VECTOR_KEY)
    assert identity.address == VECTOR_ADDRESS
    assert (
        personal_message_hash(b"hello").hex()
        == "50b2c43fd39106bafbba0da34fc430e1f91e3c96ea2acee2bc34119f92b37750"
    )
    message = unseal(VECTOR_SEALED)
    assert message.owner == VECTOR_ADDRESS
    assert seal(identity, message.body) == VECTOR_SEALED


@pytest.mark.parametrize("body", BODIES)
def test_python_seals_verify_with_dcp_client(scheduler_double: SchedulerDouble, body: Any) -> None:
    identity = Identity.generate()
    assert scheduler_double.verify(seal(identity, body)) == identity.address


@pytest.mark.parametrize("body", BODIES)
def test_dcp_client_seals_verify_here(scheduler_double: SchedulerDouble, body: Any) -> None:
    identity = Identity.generate()
    sealed = scheduler_double.sign(identity.private_key.hex(), body)
    message = unseal(sealed)
    assert message.owner == identity.address
    assert sealed == seal(identity, message.body)


def test_dcp_client_refuses_a_tampered_python_seal(scheduler_double: SchedulerDouble) -> None:
    sealed = seal(Identity.generate(), {"amount": 1})
    with pytest.raises(SchedulerDoubleError):
        scheduler_double.verify(sealed.replace('"amount":1', '"amount":2'))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("not json", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"owner":"0x12","signature":{},"body":{}}', "not an address"),
        (VECTOR_SEALED.replace('"v":28', '"v":5'), "v is 5"),
        (VECTOR_SEALED.replace('"data":[77,71,', '"data":[71,'), "not 32 bytes"),
        (VECTOR_SEALED.replace('"ttl":120', '"ttl":121'), "signature is not"),
        (VECTOR_SEALED.replace('"owner":"0x19E7', '"owner":"0x29E7'), "checksum"),
        (VECTOR_SEALED.replace('"body":{', '"body":[{').replace("null}}", "null}]}"), "no body object"),
    ],
)
def test_bad_seals_are_refused_with_a_reason(text: str, words: str) -> None:
    with pytest.raises(SignatureError, match=words):
        unseal(text)


def test_a_seal_formatted_otherwise_still_verifies() -> None:
    # A peer that writes the body with spaces signs JSON.stringify of it, as dcp-client checks.
    identity = Identity.generate()
    sealed = seal(identity, {"a": [1, 2], "b": "c"})
    spaced = sealed.replace('"body":{"a":[1,2],"b":"c"}', '"body": {"a": [1, 2], "b": "c"}')
    assert unseal(spaced).body == {"a": [1, 2], "b": "c"}


def test_signatures_round_trip_through_their_json_form() -> None:
    signature = Identity.generate().sign(b"x")
    assert Signature.from_json(json.loads(json.dumps(signature.to_json()))) == signature
    zero_one = {**signature.to_json(), "v": signature.v - 27}
    assert Signature.from_json(zero_one) == signature


@pytest.mark.parametrize(
    "address",
    [
        "0x19e7e376e7c213b7e7e7e46cc70a5dd086daff2a",
        "19E7E376E7C213B7E7E7E46CC70A5DD086DAFF2A",
        VECTOR_ADDRESS,
    ],
)
def test_addresses_are_read_as_dcp_client_reads_them(address: str) -> None:
    assert checksum_address(address) == VECTOR_ADDRESS


@pytest.mark.parametrize("address", ["0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2B", "0x1234", "zz" * 20])
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(IdentityError):
        checksum_address(address)


@pytest.mark.parametrize("key", ["00" * 32, "ff" * 32, "11" * 31, "xyz"])
def test_bad_private_keys_are_refused(key: str) -> None:
    with pytest.raises(IdentityError, match="private key"):
        Identity.from_hex(key)


@pytest.mark.parametrize("name", ["id.keystore", "default.keystore"])
def test_dcp_client_fixture_keystores_unlock_with_the_empty_passphrase(name: str) -> None:
    keystore = Keystore.load(FIXTURE_KEYSTORES / name)
    identity = keystore.unlock_with([])
    assert identity.address == keystore.address


@pytest.mark.parametrize("passphrase", ["", "correct horse", "pässwörd 🔑"])
def test_python_keystores_open_in_dcp_client(
    scheduler_double: SchedulerDouble, tmp_path: Path, passphrase: str
) -> None:
    identity = Identity.generate()
    path = tmp_path / "id.keystore"
    Keystore.create(identity, passphrase, label="python").write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    opened = scheduler_double.keystore_read(path, passphrase)
    assert opened["address"] == opened["privateKeyAddress"] == identity.address
    with pytest.raises(SchedulerDoubleError):
        scheduler_double.keystore_read(path, passphrase + "wrong")


@pytest.mark.parametrize("passphrase", ["", "correct horse", "pässwörd 🔑"])
def test_dcp_client_keystores_open_here(
    scheduler_double: SchedulerDouble, tmp_path: Path, passphrase: str
) -> None:
    path = tmp_path / "made-by-dcp-client.keystore"
    address = scheduler_double.keystore_new(path, passphrase)
    keystore = Keystore.load(path)
    assert keystore.address == address
    assert keystore.unlock(passphrase).address == address
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        keystore.unlock(passphrase + "wrong")


def test_unlocking_tries_the_empty_passphrase_then_each_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = Identity.generate()
    keystore = Keystore.create(identity, "from the environment")
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text("from the file\n")
    monkeypatch.setenv("DCP_WORKER_PASSPHRASE", "from the environment")
    prompted: list[str] = []

    def prompt() -> str:
        prompted.append("asked")
        return "typed"

    assert keystore.unlock_with(passphrases(passphrase_file, prompt)).address == identity.address
    assert prompted == []
    monkeypatch.delenv("DCP_WORKER_PASSPHRASE")
    with pytest.raises(PassphraseError, match="5 passphrases tried"):
        keystore.unlock_with(passphrases(passphrase_file, prompt, prompt_tries=3))
    assert prompted == ["asked"] * 3


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("", "invalid JSON"),
        ("[1]", "not a JSON object"),
        ('{"version": 1}', "not a version 3 keystore"),
        ('{"version": 3, "crypto": {"kdf": "md5", "cipher": "aes-128-ctr"}}', "unsupported encryption"),
        (
            '{"version": 3, "address": "0x12", "crypto": {"kdf": "scrypt", "cipher": "aes-128-ctr"}}',
            "not an Ethereum address",
        ),
    ],
)
def test_damaged_keystores_are_refused_with_a_reason(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "damaged.keystore"
    path.write_text(content)
    with pytest.raises(KeystoreError, match=words):
        Keystore.load(path)


def test_a_keystore_with_damaged_ciphertext_does_not_unlock(tmp_path: Path) -> None:
    keystore = Keystore.create(Identity.generate(), "")
    keystore.document["crypto"]["ciphertext"] = "00" * 32
    with pytest.raises(PassphraseError):
        keystore.unlock("")
    del keystore.document["crypto"]["kdfparams"]
    with pytest.raises(KeystoreError, match="damaged"):
        keystore.unlock("")


def test_keystores_are_never_overwritten_by_accident(tmp_path: Path) -> None:
    path = tmp_path / "id.keystore"
    Keystore.create(Identity.generate(), "").write(path)
    with pytest.raises(KeystoreError, match="already exists"):
        Keystore.create(Identity.generate(), "").write(path)


# The test vectors of the Web3 Secret Storage definition (password "testpassword").
SPEC_KEY = "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d"
SPEC_PBKDF2 = {
    "cipher": "aes-128-ctr",
    "cipherparams": {"iv": "6087dab2f9fdbbfaddc31a909735c1e6"},
    "ciphertext": "5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46",
    "kdf": "pbkdf2",
    "kdfparams": {
        "c": 262144,
        "dklen": 32,
        "prf": "hmac-sha256",
        "salt": "ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd",
    },
    "mac": "517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2",
}
SPEC_SCRYPT = {
    "cipher": "aes-128-ctr",
    "cipherparams": {"iv": "83dbcc02d8ccb40e466191a123791e0e"},
    "ciphertext": "d172bf743a674da9cdad04534d56926ef8358534d458fffccd4e6ad2fbde479c",
    "kdf": "scrypt",
    "kdfparams": {
        "dklen": 32,
        "n": 262144,
        "p": 8,
        "r": 1,
        "salt": "ab0c7876052600dd703518d6fc3fe8984592145b591fc8fb5c6d43190334ba19",
    },
    "mac": "2103ac29920d71da29f15d75b4a16dbe95cfd7ff8faea1056c33131d846e3097",
}


@pytest.mark.parametrize("crypto", [SPEC_PBKDF2, SPEC_SCRYPT], ids=["pbkdf2", "scrypt"])
def test_the_web3_secret_storage_vectors(crypto: dict[str, Any]) -> None:
    keystore = Keystore({"version": 3, "crypto": crypto})
    assert keystore.unlock("testpassword").private_key.hex() == SPEC_KEY
    with pytest.raises(PassphraseError):
        keystore.unlock("not the password")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"n": 2**30}, "scrypt n"),
        ({"n": 1000}, "power of two"),
        ({"r": 1000}, "scrypt r"),
        ({"dklen": 16}, "dklen"),
        ({"salt": "not hex"}, "bad or missing"),
    ],
)
def test_hostile_key_derivation_parameters_are_refused_at_once(change: dict[str, Any], words: str) -> None:
    crypto = {**SPEC_SCRYPT, "kdfparams": {**SPEC_SCRYPT["kdfparams"], **change}}  # type: ignore[dict-item]
    with pytest.raises(KeystoreError, match=words):
        Keystore({"version": 3, "crypto": crypto}).unlock("testpassword")


def test_opening_a_keystore_leaves_the_recursion_limit_alone() -> None:
    import sys

    before = sys.getrecursionlimit()
    Keystore.create(Identity.generate(), "x").unlock("x")
    assert sys.getrecursionlimit() == before
