"""``dcp-worker pause``, ``resume`` and ``status``: talk to a running worker over its control socket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

SocketOption = Annotated[
    Path | None,
    typer.Option(
        "--socket",
        metavar="PATH",
        help="The worker's control socket [default: ~/.dcp/dcp-worker/control.sock].",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the worker's status as JSON.")]


def _ask(command: str, socket: Path | None, as_json: bool) -> None:
    """Send ``command`` to the running worker and show its answer, its status."""
    from dcp_worker.governor.control import request  # the governor package, only when asked

    status = request(command, socket)
    if as_json:
        typer.echo(json.dumps(status, indent=2, sort_keys=True))
        return
    governor = status.get("governor")
    if isinstance(governor, dict):
        if governor.get("paused"):
            state = "paused"
        elif governor.get("reasons"):
            state = f"limited to {governor.get('sandboxes')} sandbox(es)"
        else:
            state = f"running (up to {governor.get('sandboxes')} sandboxes)"
        typer.echo(f"state: {state}")
        for reason in governor.get("reasons") or ():
            typer.echo(f"  because {reason}")
    for key, value in status.items():
        if key != "governor":
            typer.echo(f"{key}: {json.dumps(value)}")


def pause(socket: SocketOption = None, as_json: JsonOption = False) -> None:
    """Pause the running worker: no new work, its sandboxes stopped, until `dcp-worker resume`."""
    _ask("pause", socket, as_json)


def resume(socket: SocketOption = None, as_json: JsonOption = False) -> None:
    """Resume a worker paused by `dcp-worker pause` (its other conditions still apply)."""
    _ask("resume", socket, as_json)


def status(socket: SocketOption = None, as_json: JsonOption = False) -> None:
    """Print the running worker's state: paused or not and why, its slices and sandboxes."""
    _ask("status", socket, as_json)
