"""What this machine lets a sandbox host wall itself in with, learned once, for a banner.

``probe`` raises the walls (see ``dcp_worker.sandbox.lockdown``) around a throwaway process
started as a host is, and reports which stood; ``check_lockdown`` does so for a program that
starts, and refuses when lockdown is required and incomplete.
"""

from __future__ import annotations

import functools
import subprocess

import orjson

from dcp_worker.errors import LockdownError
from dcp_worker.sandbox.lockdown import LockdownReport, Mode, requested_mode
from dcp_worker.self_command import program_command
from dcp_worker.supervisor.host_process import host_environment

PROBE_TIMEOUT_SECONDS = 30.0


@functools.cache
def probe() -> LockdownReport:
    """The walls a host raises on this machine (probed once per process)."""
    if requested_mode(require=False) == Mode.OFF:
        return LockdownReport(off=True)
    command = program_command("dcp_worker.sandbox.lockdown")
    try:
        completed = subprocess.run(
            command, capture_output=True, env=host_environment(), timeout=PROBE_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LockdownError(f"the lockdown probe could not run: {error}") from None
    try:
        return LockdownReport.from_json(orjson.loads(completed.stdout))
    except (ValueError, KeyError, TypeError):
        last_line = (completed.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise LockdownError(
            f"the lockdown probe failed (status {completed.returncode}): {last_line}"
        ) from None


def check_lockdown(require: bool) -> LockdownReport:
    """The walls this machine supports; raises ``LockdownError`` when ``require`` and any is
    missing (or lockdown is turned off)."""
    requested_mode(require)
    report = probe()
    if require and not report.complete:
        raise LockdownError(f"lockdown is required and incomplete: {report.summary()}")
    return report
