"""``dcp-worker keys``, run as a real subprocess: addresses out, one-line errors, exit status 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cli_run import one_line_error, run_cli

from dcp_worker.protocol.identity import Identity
from dcp_worker.protocol.keystore import Keystore


def keys(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(home, "keys", *args, **(env or {}))


def test_new_writes_the_identity_keystore_and_show_reads_it(tmp_path: Path) -> None:
    made = keys(tmp_path, "new")
    assert made.returncode == 0, made.stderr
    address = made.stdout.strip()
    path = tmp_path / ".dcp" / "id.keystore"
    assert Keystore.load(path).address == address
    shown = keys(tmp_path, "show", str(path))
    assert (shown.returncode, shown.stdout.strip()) == (0, address)
    assert "already exists" in one_line_error(keys(tmp_path, "new"))
    assert keys(tmp_path, "new", "--force").stdout.strip() != address


def test_a_passphrase_from_a_file_or_the_environment(tmp_path: Path) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("sesame\n")
    out = tmp_path / "protected.keystore"
    address = keys(tmp_path, "new", "--out", str(out), "--passphrase-file", str(passphrase)).stdout.strip()
    assert Keystore.load(out).unlock("sesame").address == address
    assert "wrong passphrase" in one_line_error(keys(tmp_path, "show", str(out)))
    assert keys(tmp_path, "show", str(out), "--passphrase-file", str(passphrase)).stdout.strip() == address
    from_env = keys(tmp_path, "show", str(out), env={"DCP_WORKER_PASSPHRASE": "sesame"})
    assert from_env.stdout.strip() == address
    wrong_env = keys(tmp_path, "show", str(out), env={"DCP_WORKER_PASSPHRASE": "nope"})
    assert "2 passphrases tried" in one_line_error(wrong_env)


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "no such keystore"), ("{", "invalid JSON"), ('{"version":3}', "not a version 3 keystore")],
)
def test_show_refuses_missing_and_damaged_files(tmp_path: Path, content: str | None, words: str) -> None:
    path = tmp_path / "some.keystore"
    if content is not None:
        path.write_text(content)
    assert words in one_line_error(keys(tmp_path, "show", str(path)))


def test_an_unreadable_passphrase_file_is_named(tmp_path: Path) -> None:
    keystore = tmp_path / "protected.keystore"
    Keystore.create(Identity.generate(), "x").write(keystore)
    missing = tmp_path / "missing-passphrase"
    error = one_line_error(keys(tmp_path, "show", str(keystore), "--passphrase-file", str(missing)))
    assert str(missing) in error
