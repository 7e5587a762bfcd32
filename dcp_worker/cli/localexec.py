"""``dcp-worker localexec``: run a DCP job on this machine's cores, with no scheduler."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dcp_worker.cli.sandbox_options import MemoryOption, RequireLockdownOption
from dcp_worker.errors import LockdownError, UsageError
from dcp_worker.sandbox.limits import DEFAULT_MEMORY_MB, DEFAULT_SLICE_TIMEOUT_SECONDS

if TYPE_CHECKING:
    from dcp_worker.sandbox.lockdown import LockdownReport


class OutputFormat(StrEnum):
    json = "json"
    jsonl = "jsonl"


def localexec(
    work_function_file: Annotated[
        Path,
        typer.Argument(
            metavar="WORK_FUNCTION_FILE",
            help="JS source of one function expression, as DCP ships a work function.",
        ),
    ],
    input_file: Annotated[
        Path | None,
        typer.Argument(
            metavar="INPUT_FILE",
            help="JSON array (one slice per element), or .jsonl (one value per line).",
        ),
    ] = None,
    range_spec: Annotated[
        str | None,
        typer.Option(
            "--range",
            metavar="START:END[:STEP]",
            help="Numeric input instead of INPUT_FILE; END inclusive, as DCP's RangeObject.",
        ),
    ] = None,
    args_file: Annotated[
        Path | None,
        typer.Option("--args", metavar="FILE", help="JSON array of extra arguments passed after the datum."),
    ] = None,
    requires: Annotated[
        list[str] | None,
        typer.Option(
            "--require",
            metavar="NAME=PATH",
            help="Make the CommonJS module in PATH available as require(NAME). Repeatable.",
        ),
    ] = None,
    cores: Annotated[
        int | None,
        typer.Option(metavar="N", help="Sandboxes running in parallel [default: this machine's cores]."),
    ] = None,
    slice_timeout: Annotated[
        float,
        typer.Option("--slice-timeout", metavar="SEC", help="Wall-clock limit per slice, in seconds."),
    ] = DEFAULT_SLICE_TIMEOUT_SECONDS,
    memory: MemoryOption = DEFAULT_MEMORY_MB,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            metavar="json|jsonl",
            help="json: one array in slice order; jsonl: one line per slice, in slice order.",
        ),
    ] = OutputFormat.json,
    out: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Write the results to FILE instead of stdout."),
    ] = None,
    sloppy: Annotated[
        bool,
        typer.Option(
            "--sloppy",
            help="Compile the work function in sloppy mode, as DCP does for jobs that do not "
            "require useStrict (then `this` is the global object, not null).",
        ),
    ] = False,
    require_lockdown: RequireLockdownOption = False,
) -> int:
    """Run a DCP job (work function + inputs) on this machine, on all cores, with no scheduler.

    Exit status: 0 when every slice succeeded, 1 when any failed, 2 for bad usage or input.
    """
    # Imported here, so that the other commands start without localexec's machinery.
    from dcp_worker.cli.display import SliceDisplay
    from dcp_worker.localexec.inputs import parse_module, parse_range, read_arguments, read_inputs, read_text
    from dcp_worker.localexec.output import ResultWriter, result_stream
    from dcp_worker.localexec.runner import OptionNames, run_slices, sandbox_count, sandbox_limits
    from dcp_worker.supervisor.job import JobSpec
    from dcp_worker.supervisor.lockdown import check_lockdown
    from dcp_worker.supervisor.outcomes import BatchOutcome

    option_names = OptionNames(cores="--cores", slice_timeout="--slice-timeout", memory_mb="--memory")
    if (input_file is None) == (range_spec is None):
        raise UsageError("give either INPUT_FILE or --range START:END[:STEP], not both or neither")
    inputs = read_inputs(input_file) if input_file is not None else parse_range(range_spec or "")
    sandboxes = sandbox_count(cores, option_names)
    limits = sandbox_limits(slice_timeout, memory, option_names, require_lockdown=require_lockdown)
    modules = dict(parse_module(spec) for spec in requires or ())
    job = JobSpec(
        work_function=read_text(work_function_file, "work function file"),
        filename=os.fspath(work_function_file),
        arguments=read_arguments(args_file) if args_file is not None else [],
        modules=modules,
        strict=not sloppy,
    )
    if require_lockdown:
        check_lockdown(require=True)  # before any host starts
    with result_stream(out) as stream, ThreadPoolExecutor(max_workers=1) as probing:
        writer = ResultWriter(stream, output_format.value)
        display = SliceDisplay(total=len(inputs))
        failed = 0
        # Otherwise the probe, a process of its own, runs while the hosts start; what it found
        # is shown as soon as it is known (in practice, before the first result).
        probe: Future[LockdownReport] | None = (
            None if require_lockdown else probing.submit(check_lockdown, False)
        )

        def show_lockdown(finished: bool) -> None:
            nonlocal probe
            if probe is None or not (finished or probe.done()):
                return
            try:
                lockdown = probe.result()
            except LockdownError as error:
                display.line(f"lockdown: unknown ({error})")
            else:
                if not lockdown.complete:
                    display.line(lockdown.summary())
            probe = None

        def report(batch: BatchOutcome) -> None:
            nonlocal failed
            show_lockdown(finished=False)
            failed += len(batch.failures)
            display.slices_done(batch)
            writer.add(batch)

        try:
            run_slices(job, inputs, sandboxes=sandboxes, limits=limits, report=report, on_live=display.live)
        except KeyboardInterrupt:
            writer.close()
            display.line(f"interrupted: results written for slices 1 to {writer.written} of {len(inputs)}")
            raise
        writer.close()
        show_lockdown(finished=True)
        display.finish()
    return 1 if failed else 0
