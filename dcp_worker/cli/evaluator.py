"""``dcp-worker evaluator``: this package's sandboxes behind DCP's evaluator protocol, for the
official worker (dcp-client's supervisor) to run slices on."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dcp_worker.cli.sandbox_options import MemoryOption, RequireLockdownOption
from dcp_worker.errors import UsageError
from dcp_worker.sandbox.limits import DEFAULT_MEMORY_MB

if TYPE_CHECKING:
    from dcp_worker.evaluator.server import EvaluatorServer
    from dcp_worker.governor.settings import GovernorSettings

DEFAULT_PORT = 9000
DEFAULT_MAX_CONNECTIONS = 16


def evaluator(
    stdio: Annotated[
        bool, typer.Option("--stdio", help="Serve one sandbox on standard input and output.")
    ] = False,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            "-p",
            metavar="N",
            help=f"Serve a sandbox per TCP connection on port N [default: {DEFAULT_PORT}]; 0: any free port.",
        ),
    ] = None,
    listen: Annotated[
        str, typer.Option("--listen", "-l", metavar="HOST", help="Address to listen on with --port.")
    ] = "localhost",
    max_connections: Annotated[
        int,
        typer.Option(
            "--max-connections",
            metavar="N",
            help="Sandboxes at once; connections beyond are refused (closed).",
        ),
    ] = DEFAULT_MAX_CONNECTIONS,
    memory: MemoryOption = DEFAULT_MEMORY_MB,
    require_lockdown: RequireLockdownOption = False,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="With --port: the governor's settings from this worker configuration file, "
            "over the system's and yours and under DCP_WORKER_* variables.",
        ),
    ] = None,
) -> None:
    """Run sandboxes for the official DCP worker (the supervisor⇄evaluator protocol)."""
    from dcp_worker.evaluator.server import EvaluatorServer, serve_stdio
    from dcp_worker.supervisor.lockdown import check_lockdown
    from dcp_worker.worker.config import load_config

    if stdio and port is not None:
        raise UsageError("--stdio and --port are exclusive: one transport at a time")
    if memory < 0:
        raise UsageError(f"--memory must be a number of megabytes, not {memory}")
    if port is not None and not 0 <= port <= 65535:
        raise UsageError(f"--port must be from 0 to 65535, not {port}")
    if require_lockdown:
        check_lockdown(require=True)  # otherwise each host raises what walls it can, unannounced
    if stdio:
        if config_file is not None:
            raise UsageError("--config goes with --port: with --stdio the worker that started it governs")
        asyncio.run(serve_stdio(memory, require_lockdown))
        return
    governor = load_config({}, config_file).governor
    server = EvaluatorServer(
        listen, DEFAULT_PORT if port is None else port, max_connections, memory, require_lockdown
    )
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(_serve_governed(server, governor))


async def _serve_governed(server: EvaluatorServer, settings: GovernorSettings) -> None:
    from dcp_worker.cli.governing import governing

    def listening(host: str, bound_port: int) -> None:
        print(f"dcp-worker evaluator: listening on {host}:{bound_port}", file=sys.stderr, flush=True)

    async with governing(server, settings, server.max_connections, server.status):
        await server.serve(listening)
