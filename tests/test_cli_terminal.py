"""localexec as a person at a terminal sees it: the live progress bar, and Ctrl-C."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def localexec(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "dcp_worker", "localexec", *map(str, args)]


def test_progress_bar_is_drawn_on_a_terminal(tmp_path: Path) -> None:
    work = tmp_path / "work.js"
    work.write_text("x => { progress(); return x; }")
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            localexec(work, "--range", "1:20"),
            stdout=subprocess.PIPE,
            stderr=terminal,
            stdin=subprocess.DEVNULL,
        )
        os.close(terminal)
        stdout, _ = process.communicate(timeout=60)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
    assert process.returncode == 0
    assert stdout.split() == [b"["] + [f"{n}{',' if n < 20 else ''}".encode() for n in range(1, 21)] + [b"]"]
    assert b"\r[" + b"#" * 30 + b"] 20/20 slices" in shown
    assert b"\x1b[K" in shown, "the bar is cleared before the summary"


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    work = tmp_path / "work.js"
    work.write_text("x => { progress(); return x; }")
    result = subprocess.run(localexec(work, "--range", "1:3"), capture_output=True, timeout=60)
    assert b"\r" not in result.stderr
    assert result.stderr.decode().strip() == result.stderr.decode().strip().splitlines()[-1]


# As started from a terminal, and as a shell script's background job is (SIGINT ignored).
@pytest.mark.parametrize("inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["default", "ignored"])
def test_interrupt_keeps_finished_results_and_stops_the_sandboxes(
    tmp_path: Path, inherited: signal.Handlers
) -> None:
    work = tmp_path / "work.js"
    work.write_text(
        "async (x) => { progress(); if (x > 1) await new Promise((r) => setTimeout(r, 60000)); return x; }"
    )
    process = subprocess.Popen(
        localexec(work, "--range", "1:3", "--cores", "3", "--format", "jsonl"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, inherited),
    )
    assert process.stdout is not None
    # Slice 1 is written as soon as it completes, while slices 2 and 3 wait.
    assert process.stdout.readline() == '{"slice":1,"result":1}\n'
    process.send_signal(signal.SIGINT)
    rest, stderr = process.communicate(timeout=10)
    assert process.returncode == 130
    assert "interrupted: results written for slices 1 to 1 of 3" in stderr
    assert "Traceback" not in stderr
    assert rest == ""
