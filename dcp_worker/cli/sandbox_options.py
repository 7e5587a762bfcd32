"""Command-line options shared by the commands that run sandboxes (localexec, evaluator)."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["MemoryOption", "RequireLockdownOption"]

MemoryOption = Annotated[
    int,
    typer.Option(
        "--memory", metavar="MB", help="Memory cap per sandbox (V8 heap, ArrayBuffers and Wasm memory)."
    ),
]
RequireLockdownOption = Annotated[
    bool,
    typer.Option(
        "--require-lockdown",
        help="Refuse to run unless every sandbox can raise every wall of its lockdown "
        "(seccomp, Landlock, no-new-privs, rlimits; see SECURITY.md).",
    ),
]
