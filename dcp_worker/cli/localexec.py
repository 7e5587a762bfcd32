"""``dcp-worker localexec``: run a DCP job on this machine's cores, with no scheduler."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated

import typer

from dcp_worker.cli.display import SliceDisplay
from dcp_worker.errors import UsageError
from dcp_worker.localexec.inputs import parse_module, parse_range, read_arguments, read_inputs, read_text
from dcp_worker.localexec.output import ResultWriter
from dcp_worker.localexec.runner import (
    DEFAULT_MEMORY_MB,
    DEFAULT_SLICE_TIMEOUT_SECONDS,
    run_slices,
    sandbox_count,
    sandbox_limits,
)
from dcp_worker.supervisor.job import JobSpec
from dcp_worker.supervisor.pool import SliceOutcome


class OutputFormat(StrEnum):
    json = "json"
    jsonl = "jsonl"


def output_opener(path: Path | None) -> Callable[[], IO[bytes]]:
    if path is None:
        return lambda: sys.stdout.buffer

    def open_file() -> IO[bytes]:
        try:
            return path.open("wb")
        except OSError as error:
            raise UsageError(f"--out {path}: {error.strerror}") from None

    return open_file


def localexec(
    work_function_file: Annotated[
        Path, typer.Argument(help="JS source of one function expression, as DCP ships a work function.")
    ],
    input_file: Annotated[
        Path | None,
        typer.Argument(help="JSON array (one slice per element), or .jsonl (one value per line)."),
    ] = None,
    range_spec: Annotated[
        str | None,
        typer.Option("--range", help="START:END[:STEP] numeric input instead of INPUT_FILE; END inclusive."),
    ] = None,
    args_file: Annotated[
        Path | None, typer.Option("--args", help="JSON array of extra arguments passed after the datum.")
    ] = None,
    requires: Annotated[
        list[str] | None,
        typer.Option(
            "--require", help="NAME=PATH: the CommonJS module in PATH as require(NAME). Repeatable."
        ),
    ] = None,
    cores: Annotated[
        int | None, typer.Option(help="Sandboxes running in parallel [default: this machine's cores].")
    ] = None,
    slice_timeout: Annotated[
        float, typer.Option("--slice-timeout", help="Wall-clock limit per slice, in seconds.")
    ] = DEFAULT_SLICE_TIMEOUT_SECONDS,
    memory: Annotated[
        int, typer.Option("--memory", help="Memory cap per sandbox in MB (V8 heap, ArrayBuffers and Wasm).")
    ] = DEFAULT_MEMORY_MB,
    output_format: Annotated[
        OutputFormat,
        typer.Option("--format", help="json: one array in slice order; jsonl: a line per slice."),
    ] = OutputFormat.json,
    out: Annotated[
        Path | None, typer.Option(help="Write the results to this file instead of stdout.")
    ] = None,
) -> int:
    """Run a DCP job (work function + inputs) on this machine, on all cores, with no scheduler.

    Exit status: 0 when every slice succeeded, 1 when any failed, 2 for bad usage or input.
    """
    if (input_file is None) == (range_spec is None):
        raise UsageError("give either INPUT_FILE or --range START:END[:STEP], not both or neither")
    inputs = read_inputs(input_file) if input_file is not None else parse_range(range_spec or "")
    sandboxes = sandbox_count(cores)
    limits = sandbox_limits(slice_timeout, memory)
    modules = dict(parse_module(spec) for spec in requires or ())
    job = JobSpec(
        work_function=read_text(work_function_file, "work function file"),
        filename=os.fspath(work_function_file),
        arguments=read_arguments(args_file) if args_file is not None else [],
        modules=modules,
    )
    writer = ResultWriter(output_opener(out), output_format.value)
    display = SliceDisplay(total=len(inputs))
    failed = 0

    def report(outcome: SliceOutcome) -> None:
        nonlocal failed
        failed += outcome.error is not None
        display.slice_done(outcome)
        writer.add(outcome)

    try:
        run_slices(job, inputs, sandboxes=sandboxes, limits=limits, report=report)
    except KeyboardInterrupt:
        writer.close()
        display.line(f"interrupted: results written for slices 1 to {writer.written} of {len(inputs)}")
        raise
    writer.close()
    display.finish()
    return 1 if failed else 0
