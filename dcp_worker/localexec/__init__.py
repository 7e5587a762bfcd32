"""Run a DCP job on this machine, with no scheduler: ``dcp_worker.localexec.run``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from dcp_worker.localexec.console import console_lines
from dcp_worker.localexec.runner import run_slices, sandbox_count, sandbox_limits
from dcp_worker.supervisor.job import JobSpec, Module
from dcp_worker.supervisor.live_reports import LiveConsole, LiveReport
from dcp_worker.supervisor.outcomes import BatchOutcome
from dcp_worker.tagged_json import from_json, to_json, to_json_many

__all__ = ["ConsoleHandler", "run"]

ConsoleHandler = Callable[[int, str, str], None]
"""Called with (slice number, level, text) for each line a work function logs."""


def print_to_stderr(slice_number: int, level: str, text: str) -> None:
    for line in console_lines(slice_number, level, text):
        print(line, file=sys.stderr)


def run(
    work_function_source: str,
    inputs: Iterable[Any],
    args: Sequence[Any] = (),
    *,
    cores: int | None = None,
    modules: Mapping[str, str] | None = None,
    slice_timeout: float | None = None,
    memory_mb: int | None = None,
    strict: bool = True,
    require_lockdown: bool = False,
    on_console: ConsoleHandler | None = print_to_stderr,
) -> list[Any]:
    """Run ``work_function_source`` on each input, in parallel sandboxes, and return the results.

    Each input is one slice; the list holds the slices' results in input order. A slice that
    failed holds a ``dcp_worker.errors.SliceError`` instead of a result (it is not raised).
    ``modules`` maps names for ``require()`` to CommonJS sources. ``cores`` defaults to the
    machine's cores, ``slice_timeout`` to 300 s and ``memory_mb`` to 1024. ``strict=False``
    compiles the work function in sloppy mode, as DCP does for jobs without ``useStrict``.
    Each sandbox locks itself down as far as this machine allows (see SECURITY.md);
    ``require_lockdown=True`` raises ``LockdownError`` instead of running in one that cannot
    raise every wall.
    Values map between Python and JavaScript as ``dcp_worker.tagged_json`` describes.
    ``on_console(slice_number, level, text)`` gets each console line: as it is logged when the
    slice is slow enough to run alone in its batch (~20 ms or more), else when its batch ends.

    Raises ``WorkFunctionError`` if the work function or a module does not compile,
    ``UsageError`` (a ``ValueError``) for a bad option, ``TypeError`` for an input or
    argument JavaScript cannot receive.
    """
    job = JobSpec(
        work_function=work_function_source,
        arguments=to_json(list(args)),
        modules={name: Module(source, f"{name}.js") for name, source in (modules or {}).items()},
        strict=strict,
    )
    encoded = to_json_many(inputs)
    results: list[Any] = [None] * len(encoded)

    def collect(batch: BatchOutcome) -> None:
        values = [from_json(value) for value in batch.values] if batch.tagged else batch.values
        if isinstance(batch.numbers, range):
            results[batch.numbers[0] - 1 : batch.numbers[-1]] = values
        else:
            for number, value in zip(batch.numbers, values, strict=True):
                results[number - 1] = value
        for number, outcome in batch.details.items():
            if on_console is not None:
                for level, text in outcome.console:
                    on_console(number, level, text)
            results[number - 1] = outcome.error or from_json(outcome.value)

    def console_now(reports: list[LiveReport]) -> None:
        assert on_console is not None
        for report in reports:
            if isinstance(report, LiveConsole):
                on_console(report.number, report.level, report.text)

    run_slices(
        job,
        encoded,
        sandboxes=sandbox_count(cores),
        limits=sandbox_limits(slice_timeout, memory_mb, require_lockdown=require_lockdown),
        report=collect,
        on_live=None if on_console is None else console_now,
    )
    return results
