"""Running ``dcp-worker`` as a subprocess in a home of its own. Not a test module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ERROR_PREFIX = "dcp-worker: error: "


def isolated_environment(home: Path, **extra: str) -> dict[str, str]:
    """This environment without any DCP_* variable, with ``home`` as HOME, resource and etc dir."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DCP_")}
    environment.update(
        HOME=str(home), DCP_RESOURCE_DIR=str(home / ".dcp"), DCP_ETCDIR=str(home / "etc"), **extra
    )
    return environment


def run_cli(home: Path, *args: str, **extra_environment: str) -> subprocess.CompletedProcess[str]:
    """``dcp-worker ARGS`` to completion, in ``isolated_environment(home)``."""
    return subprocess.run(
        [sys.executable, "-m", "dcp_worker", *args],
        capture_output=True,
        text=True,
        env=isolated_environment(home, **extra_environment),
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], status: int = 2) -> str:
    """The single error line of a run that failed with ``status`` (asserting that it did)."""
    assert result.returncode == status, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), result.stderr
    return lines[0]


def worker_command(
    scheduler: str, identity_key: str, payment_address: str, sandboxes: int, *options: str
) -> list[str]:
    """The command line of a worker for ``scheduler``."""
    return [
        sys.executable, "-m", "dcp_worker",
        "--scheduler", scheduler,
        "--identityKey", identity_key,
        "--paymentAddress", payment_address,
        "--maxSandboxes", str(sandboxes),
        *options,
    ]  # fmt: skip
