"""A test double of the DCP scheduler: dcp-client 5.6.1's own protocol server in node.

Not a test module. ``SchedulerDouble`` starts ``node tests/scheduler/double.js``, which stands up
dcp-client's ``Target`` (``require('dcp/protocol').Target``) on 127.0.0.1 at a free port, and drives it
over newline-delimited JSON on the process's stdin/stdout: each command carries an integer ``id`` and
its reply carries the same ``id`` (replies may come out of order, since some commands wait); lines with
an ``"event"`` key and no ``id`` are unsolicited events, which are kept for ``wait_event``.

Besides answering requests with scripted actions (``handle``), the double can serve real jobs as a
DCP scheduler does (``add_job``, ``job_status``, ``fault``): task distribution over ``requestTask@3``
with signed authorization messages, work functions, arguments and data over HTTP or as ``data:`` URIs,
result submission, slice returns, work events and the web config ``/etc/dcp-config.kvin``, so that
dcp-client's own worker (``tests/official_worker.py``) and ours can work for it.

``DcpNodeClient`` drives ``tests/scheduler/client.js``, a DCP initiator built on dcp-client's own
``Connection``, the same way; the double's self-test uses it as the peer.

Every method is thread-safe, so tests that run a Python session on an asyncio loop can call the double
with ``await asyncio.to_thread(double.request, ...)``. The node packages are installed by
``npm ci --prefix tests/node``. The ``scheduler_double`` pytest fixture below gives each test a fresh
double.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, TypedDict, cast

import pytest
from node_process import reap

TESTS_DIR = Path(__file__).resolve().parent
NODE_DIR = TESTS_DIR / "node"
SCHEDULER_DIR = TESTS_DIR / "scheduler"
DOUBLE_SCRIPT = SCHEDULER_DIR / "double.js"
CLIENT_SCRIPT = SCHEDULER_DIR / "client.js"
REQUIRED_PACKAGES = ("dcp-client", "socket.io")
INSTALL_HINT = "run `npm ci --prefix tests/node` (from the repository root) to install dcp-client@5.6.1 and socket.io@4.8.1"

# A reply or event, as JSON decoded it.
Message = dict[str, Any]
EventPredicate = str | Callable[[Message], object]  # a truthy result matches


Delivery = Literal["http", "data"]


class JobFaults(TypedDict, total=False):
    """Faults a served job can inject (the double's names; ``None`` as a value in ``fault()`` clears one).

    ``badDatum``: slice numbers whose datum is served as text that is not KVIN.
    ``missingDatumUri`` / ``missingSliceNumber``: slice numbers whose SliceMessage lacks that field.
    ``badSignature``: every task that carries this job has a garbage authorizationMessage signature.
    ``artifacts``: ``{"work-function.js" | "argument/K" | "slice/N": {"status"?, "delayMs"?, "times"?}}``:
    answer that HTTP artifact with ``status`` (e.g. 404) and/or after ``delayMs``, for the first ``times``
    requests (every request when ``times`` is absent). Delivery "http" only.
    ``dropOnFirstResult``: cut the socket of the session that sends this job's first ``result`` (the
    result is recorded; its response reaches the worker once it resumes the session).
    """

    badDatum: list[int]
    missingDatumUri: list[int]
    missingSliceNumber: list[int]
    badSignature: bool
    artifacts: dict[str, dict[str, int | float]]
    dropOnFirstResult: bool


class JobStatus(TypedDict):
    """What the double knows about a served job (``SchedulerDouble.job_status``).

    Per-slice maps are keyed by slice number (1-based). ``done`` holds each finished slice's value as
    JSON carries it (``doneKvin`` the same value re-serialized with kvin@9, for values JSON cannot
    carry); ``submissions`` counts ``result`` requests per slice; ``held`` are slices handed out and
    neither submitted nor returned (``holders`` says to which worker id); ``returns`` is
    ``[{sliceNumber, reason, workerId}]``; ``emits`` the ``workEmit`` requests
    ``[{eventName, payload, sliceNumber, workerId, authorizationOk, time}]``; ``results`` one record per
    ``result`` request ``{jobId, sliceNumber, value, valueKvin, decodeError, workerId, paymentAddress,
    metrics, authorizationOk, authorizationError, count, time}``; ``fetches`` counts HTTP GETs per
    artifact (``"work-function.js"``, ``"argument/K"``, ``"slice/N"``); ``taskRequests`` is the data of
    every ``requestTask@3`` the double has seen (all jobs), verbatim.
    """

    jobId: str
    sliceCount: int
    pending: list[int]
    held: list[int]
    holders: dict[int, str | None]
    done: dict[int, Any]
    doneKvin: dict[int, str | None]
    submissions: dict[int, int]
    begins: dict[int, int]
    returns: list[Message]
    emits: list[Message]
    results: list[Message]
    fetches: dict[str, int]
    taskRequests: list[Any]


def _int_keys(mapping: Mapping[str, Any]) -> dict[int, Any]:
    return {int(key): value for key, value in mapping.items()}


class SchedulerDoubleError(RuntimeError):
    """A command failed (ok:false), timed out, or the node process could not be started or talked to.

    ``reply`` is the whole ok:false reply when there was one (``verify`` adds the recovered ``address``
    to it, for instance).
    """

    def __init__(self, message: str, reply: Message | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class _Pending:
    """One command waiting for its reply."""

    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Message | None = None


def _node_environment(scratch: Path) -> dict[str, str]:
    """The environment for the node helpers: offline dcp-client, nothing written to the real ~/.dcp."""
    env = dict(os.environ)
    env.update(
        {
            "HOME": str(scratch),
            "DCP_HOMEDIR": str(scratch),
            "DCP_RESOURCE_DIR": str(scratch / ".dcp"),
            "DCP_CONFIG_LOCATION": "",
            "DCP_IDENTITY_CACHE_WRITE_DISABLE": "1",
            "DCP_CLIENT_NO_PARSE_ARGV": "1",
        }
    )
    env.pop("XDG_DATA_HOME", None)
    return env


class JsonLinesProcess:
    """A node helper speaking the id/reply/event line protocol of tests/scheduler/*.js.

    Starts ``node SCRIPT ARGS...``, waits for its first line (``{"event": "ready", ...}``, kept in
    ``ready``), then a reader thread routes replies to the waiting callers by ``id`` and keeps events.
    """

    what = "node helper"

    def __init__(
        self,
        script: Path,
        args: list[str],
        *,
        node: str = "node",
        start_timeout: float = 30.0,
        command_timeout: float = 30.0,
    ) -> None:
        self.command_timeout = command_timeout
        node_path = shutil.which(node)
        if node_path is None:
            raise SchedulerDoubleError(
                f"cannot start the {self.what}: {node!r} is not on PATH; install node, then {INSTALL_HINT}"
            )
        for package in REQUIRED_PACKAGES:
            if not (NODE_DIR / "node_modules" / package / "package.json").is_file():
                raise SchedulerDoubleError(
                    f"cannot start the {self.what}: {NODE_DIR / 'node_modules' / package} is missing; {INSTALL_HINT}"
                )
        self._ids = itertools.count(1)
        self._write_lock = threading.Lock()
        self._state = threading.Condition()  # guards _pending, _events, _eof
        self._pending: dict[int, _Pending] = {}
        self._events: list[Message] = []
        self._event_times: list[float] = []  # time.monotonic() at which each event arrived
        self._eof = False
        self._closed = False
        self._scratch = Path(tempfile.mkdtemp(prefix="dcp-scheduler-test-"))
        # Where node's stderr goes: a file cannot fill up and stall node as a pipe could.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.started_at = started = time.monotonic()
        try:
            self._proc: subprocess.Popen[bytes] = self._spawn(node_path, script, args)
        except BaseException as exc:
            self._stderr.close()
            shutil.rmtree(self._scratch, ignore_errors=True)
            if isinstance(exc, OSError):
                raise SchedulerDoubleError(f"cannot start the {self.what} with {node_path}: {exc}") from exc
            raise
        try:
            self.ready = self._read_ready(start_timeout)
        except SchedulerDoubleError:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - started
        self._reader = threading.Thread(target=self._read_loop, name=f"{self.what} reader", daemon=True)
        self._reader.start()

    # -- plumbing -----------------------------------------------------------------------------

    def _spawn(self, node_path: str, script: Path, args: list[str]) -> subprocess.Popen[bytes]:
        """Start ``node SCRIPT ARGS...`` with stdin/stdout piped and stderr to ``self._stderr``.

        Subclasses that run node differently (another user, another environment) override this;
        ``self._scratch`` is a fresh private directory, removed by ``close()``.
        """
        return subprocess.Popen(
            [node_path, str(script), *args],
            cwd=TESTS_DIR.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=_node_environment(self._scratch),
        )

    def _reap(self) -> None:
        """Wait for the process to exit once its stdin is closed; kill it past a grace period."""
        reap(self._proc)

    def stderr_text(self) -> str:
        """What node has written to stderr so far."""
        if self._stderr.closed:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", errors="replace")

    def _describe_exit(self, what: str) -> str:
        code = self._proc.poll()
        stderr = self.stderr_text().strip() or "(nothing)"
        status = "still running" if code is None else f"exit status {code}"
        return f"{self.what} {what} ({status}); node's stderr:\n{stderr}\n({INSTALL_HINT} if packages are missing)"

    @staticmethod
    def _parse(line: bytes) -> Message:
        try:
            message = json.loads(line)
        except json.JSONDecodeError as exc:
            return {"event": "garbage", "line": line.decode("utf-8", errors="replace"), "error": str(exc)}
        if not isinstance(message, dict):
            return {"event": "garbage", "line": line.decode("utf-8", errors="replace")}
        return cast(Message, message)

    def _read_ready(self, timeout: float) -> Message:
        stdout = self._proc.stdout
        assert stdout is not None
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            self._proc.kill()

        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            line = stdout.readline()
        finally:
            timer.cancel()
        if timed_out.is_set():
            raise SchedulerDoubleError(
                self._describe_exit(f"was not ready within {timeout} s and was killed")
            )
        if not line:
            self._proc.wait()
            raise SchedulerDoubleError(self._describe_exit("exited before it was ready"))
        message = self._parse(line)
        if message.get("event") != "ready":
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)  # a failed start exits right after its "fatal" line
            raise SchedulerDoubleError(self._describe_exit(f"did not start: {message!r}"))
        return message

    def _read_loop(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        try:
            for line in stdout:
                if not line.strip():
                    continue
                message = self._parse(line)
                ident = message.get("id")
                with self._state:
                    pending = self._pending.pop(ident, None) if isinstance(ident, int) else None
                    if pending is not None:
                        pending.reply = message
                        pending.done.set()
                    else:
                        self._events.append(message)
                        self._event_times.append(time.monotonic())
                        self._state.notify_all()
        except (OSError, ValueError):
            pass  # stdout closed under us by close()
        finally:
            with self._state:
                self._eof = True
                for pending in self._pending.values():
                    pending.done.set()  # reply stays None: the process is gone
                self._pending.clear()
                self._state.notify_all()

    def call(self, cmd: str, timeout: float | None = None, **fields: Any) -> Message:
        """Send ``{"id", "cmd": cmd, **fields}``; return the reply, whatever ``ok`` says."""
        if timeout is None:
            timeout = self.command_timeout
        pending = _Pending()
        with self._state:
            if self._closed:
                raise SchedulerDoubleError(f"the {self.what} is closed")
            if self._eof:
                raise SchedulerDoubleError(self._describe_exit("is not running"))
            ident = next(self._ids)
            self._pending[ident] = pending
        # ensure_ascii keeps lone surrogates (legal in str, not in UTF-8) as \\udXXX escapes.
        line = json.dumps({"id": ident, "cmd": cmd, **fields}, ensure_ascii=True) + "\n"
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            with self._write_lock:
                stdin.write(line.encode("ascii"))
                stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            with self._state:
                self._pending.pop(ident, None)
            raise SchedulerDoubleError(self._describe_exit(f"stopped reading commands ({exc})")) from exc
        if not pending.done.wait(timeout):
            with self._state:
                self._pending.pop(ident, None)
            raise SchedulerDoubleError(f"{self.what} did not answer {cmd} within {timeout} s")
        if pending.reply is None:
            raise SchedulerDoubleError(self._describe_exit(f"exited while {cmd} was pending"))
        return pending.reply

    def command(self, cmd: str, timeout: float | None = None, **fields: Any) -> Message:
        """Like ``call``, but an ok:false reply raises ``SchedulerDoubleError``."""
        reply = self.call(cmd, timeout, **fields)
        if reply.get("ok") is not True:
            raise SchedulerDoubleError(f"{self.what} failed {cmd}: {reply.get('error', reply)}", reply)
        return reply

    # -- events -------------------------------------------------------------------------------

    def events(self) -> list[Message]:
        """Every event received so far, in order (a copy)."""
        with self._state:
            return list(self._events)

    def timed_events(self) -> list[tuple[float, Message]]:
        """Every event so far with the ``time.monotonic()`` of its arrival (compare ``started_at``)."""
        with self._state:
            return list(zip(self._event_times, self._events, strict=True))

    def wait_event(self, predicate: EventPredicate, timeout: float = 10.0) -> Message:
        """The first event (since start) that matches ``predicate``, waiting up to ``timeout`` seconds.

        ``predicate`` is an event name (matched against ``event``) or a function of the event. Events
        are kept, so waiting for one that has already arrived returns it at once.
        """
        return self.wait_events(predicate, 1, timeout)[0]

    def wait_events(self, predicate: EventPredicate, count: int, timeout: float = 10.0) -> list[Message]:
        """The first ``count`` events (since start) that match ``predicate`` (see ``wait_event``)."""
        matches: Callable[[Message], object]
        if isinstance(predicate, str):
            name = predicate

            def matches_name(event: Message) -> bool:
                return event.get("event") == name

            matches = matches_name
        else:
            matches = predicate
        deadline = time.monotonic() + timeout
        seen = 0
        found: list[Message] = []
        with self._state:
            while True:
                for event in self._events[seen:]:
                    if matches(event):
                        found.append(event)
                        if len(found) >= count:
                            return found
                seen = len(self._events)
                if self._eof:
                    raise SchedulerDoubleError(self._describe_exit("exited while an event was awaited"))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    what = "no matching event" if count == 1 else f"{len(found)} of {count} matching events"
                    raise SchedulerDoubleError(
                        f"{what} from the {self.what} within {timeout} s; events: {self._events[-50:]!r}"
                    )
                self._state.wait(remaining)

    # -- lifetime -----------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The node process's exit status, or None while it runs."""
        return self._proc.poll()

    def close(self) -> None:
        """Ask the node process to shut down, then reap it (it also exits when its stdin closes).

        Commands still waiting in other threads fail. Idempotent.
        """
        with self._state:
            if self._closed:
                return
            running = not self._eof and self._proc.poll() is None
        if running and getattr(self, "_reader", None) is not None:
            with contextlib.suppress(SchedulerDoubleError):
                self.call("shutdown", timeout=5)
        with self._state:
            self._closed = True
        proc = self._proc
        if proc.stdin is not None:
            with contextlib.suppress(OSError), self._write_lock:
                proc.stdin.close()
        self._reap()
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        self._stderr.close()
        shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> JsonLinesProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SchedulerDouble(JsonLinesProcess):
    """dcp-client 5.6.1's ``Target`` in node, as a scheduler for tests (``tests/scheduler/double.js``).

    ``url`` is the Target's location (``http://127.0.0.1:PORT/``; socket.io is at ``/dcp5/socketio/``,
    websocket and long-polling), ``address`` the scheduler identity's EIP-55 address. ``keystore``
    (a V3 keystore file, unlocked with ``passphrase``) fixes that identity; by default it is random.
    ``close_timeout`` (seconds) overrides the sessions' ``closeTimeout`` connection option, i.e. how
    long a closing side waits for the peer's ``'goodbye'`` (dcp-client's default is 7 s).
    """

    what = "scheduler double"

    def __init__(
        self,
        keystore: str | os.PathLike[str] | None = None,
        passphrase: str = "",
        *,
        close_timeout: float | None = None,
        node: str = "node",
        start_timeout: float = 30.0,
        command_timeout: float = 30.0,
    ) -> None:
        args = [] if keystore is None else ["--keystore", os.fspath(keystore), "--passphrase", passphrase]
        if close_timeout is not None:
            args += ["--close-timeout", repr(float(close_timeout))]
        super().__init__(
            DOUBLE_SCRIPT, args, node=node, start_timeout=start_timeout, command_timeout=command_timeout
        )
        self.url = str(self.ready["url"])
        self.address = str(self.ready["address"])
        self.dcp_client_version = str(self.ready.get("dcpClient"))
        self.node_version = str(self.ready.get("node"))

    def __enter__(self) -> SchedulerDouble:
        return self

    # -- commands -----------------------------------------------------------------------------

    def handle(
        self,
        operation: str,
        action: str,
        *,
        value: Any = None,
        error: dict[str, Any] | None = None,
        delay_ms: float | None = None,
        before_ack: bool = False,
    ) -> None:
        """From now on answer client requests for ``operation`` with ``action``.

        ``"echo"`` (the default for every operation) responds with the request's data; ``"value"``
        with ``value``; ``"error"`` with an Error whose message/code are ``error["message"]`` /
        ``error["code"]`` (an ErrorPayload, success:false); ``"ignore"`` never answers; ``"drop"``
        records the request, cuts the session's socket (the session survives) and then responds with
        the echo, which the Target delivers once the client resumes. ``delay_ms`` delays the response.

        ``"drop"`` cuts the socket once the Target's Ack for the request has gone out (the request is
        delivered, its response is in flight); with ``before_ack`` it cuts at once, so that Ack is lost
        too. (Two dcp-client 5.6.1 peers do not always survive the latter: the response arrives, but
        the resumed session may then shut down over an "unsolicited ack" / nonce mismatch.)
        """
        fields: dict[str, Any] = {"operation": operation, "action": action}
        if action == "value":
            fields["value"] = value
        if error is not None:
            fields["error"] = error
        if delay_ms is not None:
            fields["delayMs"] = delay_ms
        if before_ack:
            fields["beforeAck"] = True
        self.command("handle", **fields)

    def received(self) -> list[Message]:
        """Every application request the handlers saw, in order:
        ``{dcpsid, owner, operation, data, messageId, time}``."""
        return cast(list[Message], self.command("received")["requests"])

    def sessions(self) -> list[Message]:
        """``{dcpsid, peerAddress, state}`` for every Connection the Target created, closed ones too
        (``dcpsid`` is None for one that never established a session)."""
        return cast(list[Message], self.command("sessions")["sessions"])

    def request(self, dcpsid: str, operation: str, data: Any = None, timeout: float | None = None) -> Any:
        """Send a request to the client on session ``dcpsid``; return the response payload.

        An error payload from the client raises ``SchedulerDoubleError`` (its ``reply`` holds the
        details).
        """
        return self.command("request", timeout, dcpsid=dcpsid, operation=operation, data=data).get("response")

    def drop(self, dcpsid: str) -> None:
        """Cut the session's socket at the transport level; the session stays for the client to resume."""
        self.command("drop", dcpsid=dcpsid)

    def inject(self, dcpsid: str, frame: str) -> None:
        """Emit ``frame`` as a raw socket.io ``message`` event on the session's current socket."""
        self.command("inject", dcpsid=dcpsid, frame=frame)

    def close_session(self, dcpsid: str, timeout: float | None = None) -> None:
        """Close the session gracefully from the server side; return once the Connection has closed."""
        self.command("close", timeout, dcpsid=dcpsid)

    def sign(self, private_key_hex: str, body: Any) -> str:
        """Seal ``body`` as dcp-client does (``Keystore#makeSignedMessage``): the exact JSON string."""
        return str(self.command("sign", privateKey=private_key_hex, body=body)["sealed"])

    def verify(self, sealed: str) -> str:
        """The address recovered from a sealed message, checked as dcp-client's Connection checks it.

        A signature that does not match the message's ``owner``, or a malformed message, raises
        ``SchedulerDoubleError``; when recovery itself worked its ``reply["address"]`` is the
        recovered address.
        """
        return str(self.command("verify", sealed=sealed)["address"])

    def keystore_new(self, path: str | os.PathLike[str], passphrase: str) -> str:
        """Create a keystore with dcp-client's wallet, write it to ``path``; return its address."""
        return str(self.command("keystoreNew", path=os.fspath(path), passphrase=passphrase)["address"])

    def keystore_read(self, path: str | os.PathLike[str], passphrase: str) -> Message:
        """Load and unlock a keystore file with dcp-client's wallet:
        ``{address, privateKeyAddress, label}``; a wrong passphrase or a damaged file raises."""
        reply = self.command("keystoreRead", path=os.fspath(path), passphrase=passphrase)
        return {key: reply.get(key) for key in ("address", "privateKeyAddress", "label")}

    # -- serving jobs ---------------------------------------------------------------------------

    def add_job(
        self,
        work_function: str,
        slices: Sequence[Any],
        *,
        arguments: Sequence[Any] | None = None,
        delivery: Delivery = "http",
        job_id: str | None = None,
        name: str | None = None,
        slices_per_task: int | None = None,
        faults: JobFaults | None = None,
        artifact_host: str | None = None,
        origins: dict[str, list[str]] | None = None,
        scheduler_config: dict[str, Any] | None = None,
        modules: dict[str, str | None] | None = None,
    ) -> str:
        """Serve a job as a scheduler would; return its id (22 random letters and digits by default).

        ``work_function`` is the JavaScript source of a function expression, called as
        ``fn(datum, ...arguments)``; ``slices`` are the data, one slice each (numbered from 1);
        values may be anything JSON carries and are served KVIN v9-serialized. With ``delivery``
        "http" the work function, each argument and each datum are URLs on the double
        (``/job-<id>/work-function.js``, ``/job-<id>/argument/<k>``, ``/job-<id>/slice/<n>``); with
        "data" they are ``data:`` URIs. A ``requestTask@3`` hands out up to ``slices_per_task``
        (default 10) pending slices of the job. The first job turns job mode on (``serve_jobs``).
        ``artifact_host`` names the double by another host (another origin) in the job's URLs;
        ``origins`` ({purpose: [url]}) and ``scheduler_config`` go in every task with the job's
        slices, as the compute group's ``computeGroupOrigins`` and the body's ``schedulerConfig``.
        ``modules`` ({name: CommonJS source}) are the job's dependencies, located by fetchModuleURL.
        """
        fields: dict[str, Any] = {"workFunction": work_function, "slices": list(slices), "delivery": delivery}
        if arguments is not None:
            fields["arguments"] = list(arguments)
        if job_id is not None:
            fields["jobId"] = job_id
        if name is not None:
            fields["name"] = name
        if slices_per_task is not None:
            fields["slicesPerTask"] = slices_per_task
        if faults is not None:
            fields["faults"] = dict(faults)
        if artifact_host is not None:
            fields["artifactHost"] = artifact_host
        if origins is not None:
            fields["origins"] = origins
        if scheduler_config is not None:
            fields["schedulerConfig"] = scheduler_config
        if modules is not None:
            fields["modules"] = modules
        return str(self.command("addJob", **fields)["jobId"])

    def fault(self, job_id: str, **faults: Any) -> JobFaults:
        """Change a job's faults (keywords as in ``JobFaults``; ``None`` clears one); return them all."""
        return cast(JobFaults, self.command("fault", jobId=job_id, **faults)["faults"])

    def job_status(self, job_id: str) -> JobStatus:
        """The job's slices, results, returns, emits and the task requests seen (see ``JobStatus``)."""
        reply = self.command("jobStatus", jobId=job_id)
        status = {key: reply[key] for key in JobStatus.__annotations__}
        for key in ("holders", "done", "doneKvin", "submissions", "begins"):
            status[key] = _int_keys(status[key])
        return cast(JobStatus, status)

    def serve_jobs(self) -> None:
        """Turn job mode on without adding a job: task requests then get the no-work answer.

        In job mode the job logic answers ``requestTask@3``, ``result``, ``status``, ``workEmit``,
        ``subscribeMany``/``subscribe``/``unsubscribe`` and ``fetchModuleURL`` (an operation given a
        ``handle`` action keeps that action). Adding a job turns it on too.
        """
        self.command("serveJobs")

    def task_requests(self) -> list[Message]:
        """Every ``requestTask@3`` the job logic answered: ``{dcpsid, owner, time, data}``."""
        return cast(list[Message], self.command("taskRequests")["requests"])

    def unknown_job_traffic(self) -> list[Message]:
        """``result`` / ``status`` / ``workEmit`` requests about jobs or slices the double does not know:
        ``{operation, data}`` (a ``result`` of that kind is answered with an ENOSLICE error)."""
        return cast(list[Message], self.command("taskRequests")["unknownJobTraffic"])

    def wait_job_done(self, job_id: str, timeout: float = 60.0, poll: float = 0.05) -> JobStatus:
        """Wait until no slice of the job is pending or held; return its status (raise on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.job_status(job_id)
            if not status["pending"] and not status["held"]:
                return status
            if time.monotonic() > deadline:
                raise SchedulerDoubleError(
                    f"job {job_id} not done within {timeout} s: pending {status['pending']}, held {status['held']}"
                )
            time.sleep(poll)


class DcpNodeClient(JsonLinesProcess):
    """dcp-client 5.6.1's own ``Connection`` as a DCP initiator (``tests/scheduler/client.js``).

    ``transports`` is the engine.io transport list (``["polling"]`` keeps the session on long-polling).
    Requests from the target are answered with ``{"answeredBy": "node-client", "operation", "data"}``.
    """

    what = "node DCP client"

    def __init__(
        self,
        url: str,
        transports: tuple[str, ...] = ("websocket", "polling"),
        *,
        node: str = "node",
        start_timeout: float = 30.0,
        command_timeout: float = 30.0,
    ) -> None:
        super().__init__(
            CLIENT_SCRIPT,
            [url, "--transports", ",".join(transports)],
            node=node,
            start_timeout=start_timeout,
            command_timeout=command_timeout,
        )
        self.address = str(self.ready["address"])

    def __enter__(self) -> DcpNodeClient:
        return self

    def connect(self) -> Message:
        """Open the session: ``{dcpsid, peerAddress, engineTransport}``."""
        return self.command("connect")

    def request(self, operation: str, data: Any = None, timeout: float | None = None) -> Message:
        """Send a request; return ``{success, payload}`` (an error payload has success False)."""
        reply = self.command("request", timeout, operation=operation, data=data)
        return {"success": reply.get("success"), "payload": reply.get("payload")}

    def state(self) -> Message:
        """``{state, dcpsid, engineTransport, connects, disconnects}``."""
        return self.command("state")


@pytest.fixture
def scheduler_double() -> Iterator[SchedulerDouble]:
    """A fresh scheduler double (dcp-client's Target in node) for one test."""
    double = SchedulerDouble()
    try:
        yield double
    finally:
        double.close()
