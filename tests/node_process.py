"""Ending the processes the tests talk to (node peers, evaluators). Not a test module."""

from __future__ import annotations

import subprocess
from typing import Any


def reap(proc: subprocess.Popen[Any], grace_seconds: float = 10) -> None:
    """Wait for ``proc``, told to end (its stdin closed, or a SIGTERM); kill it past
    ``grace_seconds``."""
    try:
        proc.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
