"""Ending the node processes the tests talk to. Not a test module."""

from __future__ import annotations

import subprocess
from typing import Any


def reap(proc: subprocess.Popen[Any], grace_seconds: float = 10) -> None:
    """Wait for ``proc`` (whose stdin the caller has closed, so node exits by itself); kill it
    past ``grace_seconds``."""
    try:
        proc.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
