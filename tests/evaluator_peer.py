"""Evaluators driven from Python over the supervisor⇄evaluator protocol. Not a test module.

``StdioEvaluator`` plays the supervisor's side against an evaluator process on its standard input
and output: ours (``dcp-worker evaluator --stdio``, ``our_stdio_command``) or dcp-client's
``libexec/evaluator-node.js`` loaded with the "node" sandbox definition (``reference_command``,
run as an unprivileged user when we are root, since it refuses root). ``PortEvaluator`` runs
``dcp-worker evaluator --port 0`` and says where it listens. The tests and
``bench/bench_evaluator.py`` share them, so both evaluators are driven identically.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cli_run import isolated_environment
from node_process import reap
from official_worker import check_readable, ensure_unprivileged_user

from dcp_worker import kvin

TESTS_DIR = Path(__file__).resolve().parent
NODE_MODULES = TESTS_DIR / "node" / "node_modules"
DCP_CLIENT = NODE_MODULES / "dcp-client"
REFERENCE_EVALUATOR = DCP_CLIENT / "libexec" / "evaluator-node.js"
LISTENING = re.compile(r"listening on (\S+):(\d+)")

ACK = {"type": "result", "step": "workerMessage", "success": True, "origin": "workerMessage"}
MAP_BASIC = {"name": "map-basic", "version": "1.0.0"}
SLICE_ENDS = ("complete", "workError", "workReject", "sandboxError")
Line = tuple[str, Any]  # ("MSG", parsed JSON) / ("LOG", text) / ("DIE", text)


def our_stdio_command(*options: str) -> list[str]:
    return [sys.executable, "-m", "dcp_worker", "evaluator", "--stdio", *options]


def reference_files() -> list[Path]:
    """The "node" sandbox definition's files, resolved as dcp-client's node evaluator resolves them."""
    definitions = json.loads((DCP_CLIENT / "generated" / "sandbox-definitions.json").read_text())
    files = []
    for name in definitions["node"]:
        if "/" in name:
            nested = DCP_CLIENT / "node_modules" / name
            files.append(nested if nested.exists() else NODE_MODULES / name)
        else:
            files.append(DCP_CLIENT / "libexec" / "sandbox" / f"{name}.js")
    return files


def reference_command() -> list[str]:
    """``node evaluator-node.js FILES...`` (stdio mode), under runuser when we are root."""
    node = shutil.which("node")
    if node is None:
        raise FileNotFoundError("node is not on PATH")
    files = reference_files()
    command = [node, str(REFERENCE_EVALUATOR), *map(str, files)]
    account = ensure_unprivileged_user()
    if account is None:
        return command
    check_readable(account, (Path(node), REFERENCE_EVALUATOR, *files))
    runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin") or "runuser"
    return [runuser, "-u", account.pw_name, "--", *command]


def worker_message(request: dict[str, Any]) -> dict[str, Any]:
    """A supervisor request, KVIN-wrapped as dcp-client's Sandbox sends it."""
    return {"type": "workerMessage", "message": kvin.marshal(request)}


def parse_line(raw: bytes) -> Line:
    text = raw.decode("utf-8").rstrip("\n")
    tag, body = text[:4], text[4:]
    if tag == "MSG:":
        return "MSG", json.loads(body)
    return tag.rstrip(":"), body.strip()


class LinePeer:
    """The supervisor's end of an evaluator connection: requests out, tagged lines in.

    Lines are read on the caller's thread, as a supervisor's event loop reads them: a reader
    thread would add a thread switch to every line, and the benchmark would time it."""

    def __init__(self, read_fd: int) -> None:
        self._read_fd = read_fd
        self._buffer = b""
        self._lines: collections.deque[bytes] = collections.deque()
        self._eof = False

    def _read_more(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for output, and split what came into lines."""
        try:
            ready, _, _ = select.select([self._read_fd], [], [], timeout)
            if not ready:
                raise TimeoutError(f"no line from the evaluator within {timeout} s")
            chunk = os.read(self._read_fd, 1 << 20)
        except BlockingIOError:  # a socket with a timeout is non-blocking: ready, then not
            return
        except (ValueError, OSError):  # closed under us by close()
            chunk = b""
        if not chunk:
            self._eof = True
            if self._buffer:
                self._lines.append(self._buffer)
            self._buffer = b""
            return
        *complete, self._buffer = (self._buffer + chunk).split(b"\n")
        self._lines.extend(complete)

    def write_raw(self, data: bytes) -> None:
        raise NotImplementedError

    def send(self, outer: dict[str, Any]) -> None:
        self.write_raw(json.dumps(outer, separators=(",", ":")).encode() + b"\n")

    def request(self, request: dict[str, Any]) -> None:
        self.send(worker_message(request))

    def line(self, timeout: float = 30.0) -> Line:
        """The next line; ("EOF", "") when the evaluator closed its output."""
        deadline = time.monotonic() + timeout
        while not self._lines:
            if self._eof:
                return ("EOF", "")
            self._read_more(max(0.0, deadline - time.monotonic()))
        return parse_line(self._lines.popleft())

    def message(self, timeout: float = 30.0) -> Any:
        """The next ``MSG:`` line's JSON, skipping ``LOG:`` lines."""
        while True:
            kind, body = self.line(timeout)
            if kind != "LOG":
                assert kind == "MSG", (kind, body)
                return body

    def until(self, accept: Callable[[Line], bool], timeout: float = 30.0) -> list[Line]:
        """Lines up to and including the first ``accept``-ed one."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            line = self.line(max(0.01, deadline - time.monotonic()))
            seen.append(line)
            if accept(line) or line[0] == "EOF":
                return seen

    def reply(self, name: str, timeout: float = 30.0) -> tuple[int, dict[str, Any], list[Line]]:
        """(ring, value, lines before it) of the next sandbox message whose request is ``name``."""
        lines = self.until(lambda line: request_name(line) == name, timeout)
        if request_name(lines[-1]) != name:
            raise AssertionError(f"no {name!r} reply; got {lines!r}")
        ring, value = sandbox_message(lines[-1])
        return ring, value, lines[:-1]


class StdioEvaluator(LinePeer):
    """An evaluator process on our end of its stdin/stdout. Use as a context manager."""

    def __init__(self, command: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd="/",
        )
        self.stderr = b""
        assert self.proc.stdout is not None
        super().__init__(self.proc.stdout.fileno())
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr += raw

    def __enter__(self) -> StdioEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class SocketPeer(LinePeer):
    """A TCP connection to an evaluator, as dcp-client's StandaloneWorker opens one."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.socket = socket.create_connection((host, port), timeout=30)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().__init__(self.socket.fileno())

    def write_raw(self, data: bytes) -> None:
        self.socket.sendall(data)

    def __enter__(self) -> SocketPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        self.socket.close()


def sandbox_message(line: Line) -> tuple[int, Any]:
    """(ringSource, value) of a ``MSG:`` workerMessage line."""
    kind, body = line
    assert kind == "MSG" and body.get("type") == "workerMessage", line
    outer = kvin.unmarshal(body["message"])
    return int(outer["ringSource"]), outer["value"]


def request_name(line: Line) -> str | None:
    kind, body = line
    if kind != "MSG" or not isinstance(body, dict) or body.get("type") != "workerMessage":
        return None
    value = sandbox_message(line)[1]
    return value.get("request") if isinstance(value, dict) else None


class PortEvaluator:
    """``dcp-worker evaluator --port 0 ...`` on 127.0.0.1; ``port`` is where it listens. It runs
    with ``home`` (a fresh one by default) as its home, configuration and control socket's place."""

    def __init__(self, *options: str, home: Path | None = None) -> None:
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        if home is None:
            self._scratch = tempfile.TemporaryDirectory()
            home = Path(self._scratch.name)
        self.home = home
        command = [
            sys.executable,
            "-m",
            "dcp_worker",
            "evaluator",
            "--port",
            "0",
            "--listen",
            "127.0.0.1",
            *options,
        ]
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=isolated_environment(self.home),
            cwd="/",
        )
        assert self.proc.stderr is not None
        first = self.proc.stderr.readline().decode()
        match = LISTENING.search(first)
        if match is None:
            self.close()
            raise RuntimeError(f"the evaluator did not start: {first!r}")
        self.port = int(match.group(2))
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr_lines.append(raw.decode(errors="replace"))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> PortEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            reap(self.proc)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        if self._scratch is not None:
            self._scratch.cleanup()


def job(work_function: str, **overrides: Any) -> dict[str, Any]:
    """An ``assign`` request's job, as dcp-client's Sandbox sends it, for a map-basic work function."""
    fields: dict[str, Any] = {
        "id": "JOB1",
        "arguments": [],
        "dependencies": [],
        "modulePath": [],
        "requirePath": [],
        "public": {"name": "Test Job"},
        "workFunction": work_function,
        "useStrict": True,
        "worktime": MAP_BASIC,
    }
    fields.update(overrides)
    return fields


def start(evaluator: LinePeer) -> dict[str, Any]:
    """describe, then applyRequirements for map-basic; the describe reply."""
    evaluator.request({"request": "describe"})
    ring, describe, before = evaluator.reply("describe", timeout=60)
    assert ring == 2
    assert ("MSG", ACK) in before or evaluator.line()[1] == ACK
    evaluator.request(
        {"request": "applyRequirements", "webgpu": 0, "offscreenCanvas": 0, "worktime": "map-basic"}
    )
    assert evaluator.reply("applyRequirementsDone")[0] == 1
    return describe


def assign(evaluator: LinePeer, fields: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Send ``assign``; (ring, value) of the answer: ``assigned``, ``reject`` or a ``dependency`` request."""
    evaluator.request({"request": "assign", "job": fields, "sandboxConfig": {}})
    lines = evaluator.until(lambda line: request_name(line) in ("assigned", "reject", "dependency"))
    return sandbox_message(lines[-1])


def begin_slice(evaluator: LinePeer, datum: Any) -> None:
    """resetState, then main, as a supervisor starts a slice."""
    evaluator.request({"request": "resetState"})
    assert evaluator.reply("resetStateDone")[0] == 2
    evaluator.request({"request": "main", "data": datum})


def run_slice(evaluator: LinePeer, datum: Any) -> list[tuple[int, dict[str, Any]]]:
    """resetState, then main; the sandbox messages up to the slice's end."""
    begin_slice(evaluator, datum)
    lines = evaluator.until(lambda line: request_name(line) in SLICE_ENDS)
    return [sandbox_message(line) for line in lines if request_name(line) is not None]
