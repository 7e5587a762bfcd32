"""A real KVIN peer for tests: node running kvin@9.0.0 (tests/node/kvin_peer.js).

Not a test module. ``KvinPeer`` starts ``node tests/node/kvin_peer.js`` once and talks to it in
newline-delimited JSON, one request and one reply per line, in order. kvin is installed by
``npm ci --prefix tests/node``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast

from node_process import reap

NODE_DIR = Path(__file__).resolve().parent / "node"
PEER_SCRIPT = NODE_DIR / "kvin_peer.js"
KVIN_DIR = NODE_DIR / "node_modules" / "kvin"
INSTALL_HINT = "run `npm ci --prefix tests/node` (from the repository root) to install kvin@9.0.0"

# A reply dict, as JSON decoded it.
Reply = dict[str, Any]


class KvinPeerError(RuntimeError):
    """The peer answered a request with ok:false, or could not be started or talked to."""


class KvinPeer:
    """One node process running kvin@9.0.0, answering requests until ``close()``.

    ``timeout`` bounds each request in seconds: past it the process is killed and the request
    raises ``KvinPeerError``.
    """

    def __init__(self, node: str = "node", timeout: float = 300.0) -> None:
        self.timeout = timeout
        node_path = shutil.which(node)
        if node_path is None:
            raise KvinPeerError(
                f"cannot start the KVIN peer: {node!r} is not on PATH; install node, then {INSTALL_HINT}"
            )
        if not (KVIN_DIR / "package.json").is_file():
            raise KvinPeerError(f"cannot start the KVIN peer: {KVIN_DIR} is missing; {INSTALL_HINT}")
        # Where node's stderr goes: a file cannot fill up and stall node as a pipe could.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._proc: subprocess.Popen[str] = subprocess.Popen(
                [node_path, str(PEER_SCRIPT)],
                cwd=NODE_DIR,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
                encoding="utf-8",
                bufsize=1,
            )
        except OSError as exc:
            self._stderr.close()
            raise KvinPeerError(f"cannot start the KVIN peer with {node_path}: {exc}") from exc
        try:
            greeting = self._read_reply()
        except KvinPeerError:
            self.close()
            raise
        if not greeting.get("ready"):
            self.close()
            raise KvinPeerError(f"unexpected greeting from the KVIN peer: {greeting!r}")
        self.kvin_version = str(greeting.get("kvin"))
        self.node_version = str(greeting.get("node"))

    # -- plumbing -----------------------------------------------------------------------------

    def stderr_text(self) -> str:
        """What node has written to stderr so far."""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", errors="replace")

    def _dead(self, what: str) -> KvinPeerError:
        code = self._proc.poll()
        if code is None:
            self._proc.kill()
            code = self._proc.wait()
        stderr = self.stderr_text().strip() or "(nothing)"
        return KvinPeerError(
            f"KVIN peer {what} (exit status {code}); node's stderr:\n{stderr}\n({INSTALL_HINT} if kvin is missing)"
        )

    def _read_reply(self) -> Reply:
        stdout = self._proc.stdout
        assert stdout is not None
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            self._proc.kill()

        timer = threading.Timer(self.timeout, expire)
        timer.start()
        try:
            line = stdout.readline()
        finally:
            timer.cancel()
        if timed_out.is_set():
            raise self._dead(f"did not answer within {self.timeout} s and was killed")
        if not line:
            raise self._dead("exited")
        try:
            reply = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KvinPeerError(f"KVIN peer sent a line that is not JSON ({exc}): {line[:200]!r}") from exc
        if not isinstance(reply, dict):
            raise KvinPeerError(f"KVIN peer sent a reply that is not an object: {line[:200]!r}")
        return cast(Reply, reply)

    def send_line(self, line: str) -> Reply:
        """Send one raw line (no newline in it) and return the peer's reply, whatever ``ok`` says."""
        if "\n" in line or "\r" in line:
            raise ValueError("a request is one line")
        with self._lock:
            if self._closed:
                raise KvinPeerError("the KVIN peer is closed")
            stdin = self._proc.stdin
            if stdin is None or self._proc.poll() is not None:
                raise self._dead("is not running")
            try:
                stdin.write(line + "\n")
                stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise self._dead(f"stopped reading requests ({exc})") from exc
            return self._read_reply()

    def request(self, op: str, **fields: Any) -> Reply:
        """Send ``{"op": op, **fields}``; return the reply, raising ``KvinPeerError`` on ok:false."""
        # ensure_ascii keeps lone surrogates (legal in str, not in UTF-8) as \\udXXX escapes.
        reply = self.send_line(json.dumps({"op": op, **fields}, ensure_ascii=True))
        if reply.get("ok") is not True:
            raise KvinPeerError(f"KVIN peer failed {op}: {reply.get('error', reply)!r}")
        return reply

    # -- requests -----------------------------------------------------------------------------

    def corpus(self, seed: int, count: int) -> list[str]:
        """kvin texts of ``count`` values drawn for ``seed``; the same for the same seed, always."""
        items = self.request("corpus", seed=seed, count=count)["items"]
        return [str(item) for item in items]

    def check(self, pairs: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
        """For each (K, T): is ``kvin.deserialize(T)`` deep-strict-equal to ``kvin.deserialize(K)``?

        Each result is ``{"equal": True}``, or ``{"equal": False, "expected": ..., "actual": ...}``
        (``util.inspect`` texts), or ``{"equal": False, "error": ..., "side": "K" | "T"}`` when kvin
        cannot deserialize that side.
        """
        results = self.request("check", pairs=[list(pair) for pair in pairs])["results"]
        return cast(list[dict[str, Any]], results)

    def check_values(self, seed: int, count: int, texts: list[str]) -> list[dict[str, Any]]:
        """Compare each original corpus value ``v_i`` (regenerated) with ``kvin.deserialize(texts[i])``.

        Results are shaped as in ``check``, plus ``kvinSelfEqual`` (does kvin's own round trip
        give ``v_i`` back?), ``kvinSelfError`` when kvin cannot read its own text, and ``tags``
        (the features the value was built with).
        """
        results = self.request("check_values", seed=seed, count=count, texts=texts)["results"]
        return cast(list[dict[str, Any]], results)

    def serialize(self, expr: str) -> str:
        """``kvin.serialize(eval(expr))`` for a JavaScript expression."""
        return str(self.request("serialize", expr=expr)["text"])

    def deserialize_equals(self, text: str, expr: str) -> tuple[bool, str]:
        """Is ``kvin.deserialize(text)`` deep-strict-equal to ``eval(expr)``? With its inspect text."""
        reply = self.request("deserialize", text=text, expr=expr)
        return bool(reply["equal"]), str(reply["inspect"])

    def json_corpus(self, seed: int, count: int) -> list[str]:
        """``JSON.stringify`` texts of ``count`` JSON-able values drawn for ``seed``."""
        return [str(item) for item in self.request("json_corpus", seed=seed, count=count)["items"]]

    def restringify(self, texts: Sequence[str]) -> list[str]:
        """``JSON.stringify(JSON.parse(text))`` for each text."""
        return [str(item) for item in self.request("restringify", texts=list(texts))["items"]]

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """End the node process (closing its stdin lets it exit by itself). Idempotent."""
        if self._closed:
            return
        self._closed = True
        proc = self._proc
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        reap(proc)
        if proc.stdout is not None:
            proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> KvinPeer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
