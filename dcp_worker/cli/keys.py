"""``dcp-worker keys``: make and read DCP keystores (the files dcp-client keeps in ~/.dcp).

The keystore's cryptography is imported by the commands that use it, so that others start without it."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer

from dcp_worker.protocol.dcp_home import IDENTITY_KEYSTORE, PASSPHRASE_VARIABLE, resource_dir

keys = typer.Typer(
    name="keys",
    help="Make and read DCP keystores (Ethereum V3 key files, as dcp-client writes them).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        metavar="FILE",
        help=f"Read the passphrase from the first line of FILE (else ${PASSPHRASE_VARIABLE}).",
    ),
]


@keys.command("new")
def new(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", metavar="FILE", help=f"Where to write it [default: ~/.dcp/{IDENTITY_KEYSTORE}]."
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
    label: Annotated[str | None, typer.Option("--label", help="A label stored in the keystore.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Make a new key, write it as a keystore, and print its address.

    The passphrase is the first one found of --passphrase-file and $DCP_WORKER_PASSPHRASE;
    with neither, it is empty, as dcp-client's own keystores are.
    """
    from dcp_worker.protocol.identity import Identity
    from dcp_worker.protocol.keystore import Keystore, passphrases

    path = out if out is not None else resource_dir() / IDENTITY_KEYSTORE
    passphrase = next(passphrases(passphrase_file), "")
    keystore = Keystore.create(Identity.generate(), passphrase, label)
    keystore.write(path, overwrite=force)
    typer.echo(keystore.address)


@keys.command("show")
def show(
    keystore_file: Annotated[Path, typer.Argument(metavar="FILE", help="The keystore to read.")],
    passphrase_file: PassphraseFile = None,
) -> None:
    """Unlock a keystore and print its address.

    Tries the empty passphrase, then --passphrase-file, $DCP_WORKER_PASSPHRASE, and a prompt
    when the terminal can answer one.
    """
    from dcp_worker.protocol.keystore import Keystore, passphrases

    prompt = _prompt if sys.stdin.isatty() else None
    identity = Keystore.load(keystore_file).unlock_with(passphrases(passphrase_file, prompt))
    typer.echo(identity.address)


def _prompt() -> str:
    return getpass.getpass("Keystore passphrase: ")
