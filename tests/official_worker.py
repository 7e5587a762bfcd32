"""dcp-client 5.6.1's own worker in node, as a peer for tests (``tests/scheduler/official_worker.js``).

Not a test module. ``OfficialWorker(scheduler_url)`` starts dcp-client's ``DistributiveWorker`` with
its node evaluator in the same process (as ``job.localExec()`` sets it up), pointed at a scheduler
such as the scheduler double (``SchedulerDouble.url``), and drives it over the same id/reply/event
line protocol as the double (see ``JsonLinesProcess``): it prints one event per line (``ready``,
``fetch``, ``job``, ``sandbox``, ``slice``, ``result``, ``payment``, ``return``, ``error``,
``warning``, ``end``) and stops gracefully when its stdin closes.

dcp-client's ``libexec/evaluator-node.js`` exits at once when loaded as root, so when the tests run as
root the worker runs as an unprivileged user (``dcptest``): ``ensure_unprivileged_user`` creates it
with ``useradd`` when it is missing, and node is started with ``runuser -u dcptest`` in a private
scratch directory handed over to that user (HOME, the dcp resource directory and TMPDIR live there).
The repository itself is only read, never copied or re-permissioned: ``check_readable`` verifies that
the user can reach node, the scripts and the node packages, and the driver refuses to start (with a
reason to skip on) when it cannot. Not as root, the worker simply runs as the current user.

``OfficialWorker`` also samples the resident memory of its process tree from /proc while it runs
(``peak_rss_bytes``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from process_tree import descendants
from scheduler_double import (
    NODE_DIR,
    SCHEDULER_DIR,
    TESTS_DIR,
    JsonLinesProcess,
    Message,
    SchedulerDoubleError,
)

OFFICIAL_WORKER_SCRIPT = SCHEDULER_DIR / "official_worker.js"
UNPRIVILEGED_USER = "dcptest"
# Reading smaps_rollup of a V8 process (a terabyte of reserved address space) costs milliseconds:
# sampled ten times a second, the sampler took half a core from the workers it measured.
RSS_SAMPLE_SECONDS = 0.5
# What the unprivileged user must be able to read: the scripts and the packages they load.
NEEDED_PATHS = (
    SCHEDULER_DIR / "official_worker.js",
    SCHEDULER_DIR / "common.js",
    NODE_DIR / "package.json",
    NODE_DIR / "node_modules" / "dcp-client" / "index.js",
    NODE_DIR / "node_modules" / "dcp-client" / "libexec" / "evaluator-node.js",
    NODE_DIR / "node_modules" / "dcp-client" / "dist" / "dcp-client-bundle.js",
    NODE_DIR / "node_modules" / "kvin" / "kvin.js",
)

_user_lock = threading.Lock()


class OfficialWorkerUnavailable(SchedulerDoubleError):
    """The official worker cannot run here (no unprivileged user, or it cannot read what it needs).

    Tests skip on it; the message says why and what would fix it.
    """


def ensure_unprivileged_user(name: str = UNPRIVILEGED_USER) -> pwd.struct_passwd | None:
    """The account to run the official worker as: ``None`` when not root (run as ourselves), else
    ``name``, created with ``useradd --create-home --user-group`` when missing. Idempotent, and safe
    against another process creating it at the same time."""
    if os.geteuid() != 0:
        return None
    with _user_lock:
        with contextlib.suppress(KeyError):
            return _unprivileged(pwd.getpwnam(name))
        useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
        if useradd is None:
            raise OfficialWorkerUnavailable(
                f"dcp-client's node evaluator refuses to run as root, there is no user {name!r} to run it "
                "as, and useradd is not available to create one"
            )
        created = subprocess.run(
            [useradd, "--create-home", "--user-group", name],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        try:
            return _unprivileged(pwd.getpwnam(name))
        except KeyError:
            raise OfficialWorkerUnavailable(
                f"cannot create the unprivileged user {name!r} for dcp-client's node evaluator (which refuses "
                f"to run as root): useradd exited {created.returncode}: {created.stderr.strip()}"
            ) from None


def _unprivileged(account: pwd.struct_passwd) -> pwd.struct_passwd:
    if account.pw_uid == 0 or account.pw_gid == 0:
        raise OfficialWorkerUnavailable(f"user {account.pw_name!r} is root-equivalent (uid/gid 0)")
    return account


def _allowed(st: os.stat_result, uid: int, gids: set[int], owner: int, group: int, other: int) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & owner)
    if st.st_gid in gids:
        return bool(st.st_mode & group)
    return bool(st.st_mode & other)


def check_readable(account: pwd.struct_passwd, paths: Iterable[Path]) -> None:
    """Raise ``OfficialWorkerUnavailable`` unless ``account`` can traverse every directory above each
    path and read each path (by the permission bits; ACLs are not consulted)."""
    gids = set(os.getgrouplist(account.pw_name, account.pw_gid))
    checked: set[Path] = set()
    for path in paths:
        path = path.resolve()
        for directory in reversed(path.parents):
            if directory in checked:
                continue
            st = directory.stat()
            if not _allowed(st, account.pw_uid, gids, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
                raise OfficialWorkerUnavailable(
                    f"user {account.pw_name!r} cannot enter {directory} (mode {stat.filemode(st.st_mode)}), "
                    f"so it cannot load {path}; e.g. `chmod o+x {directory}` would let it"
                )
            checked.add(directory)
        st = path.stat()
        if not _allowed(st, account.pw_uid, gids, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH):
            raise OfficialWorkerUnavailable(
                f"user {account.pw_name!r} cannot read {path} (mode {stat.filemode(st.st_mode)})"
            )


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for directory, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(directory, name), uid, gid, follow_symlinks=False)


class TreeMemory:
    """Samples the summed VmRSS of a process and its descendants from /proc until stopped."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.peak_rss = 0  # bytes: the largest summed VmRSS of one sample
        # bytes: the largest summed Pss (shared pages divided among their sharers), which does not
        # count a library mapped by several processes of the tree several times over
        self.peak_pss = 0
        self.hwm: dict[int, int] = {}  # pid -> VmHWM (bytes), the kernel's own per-process peak
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="official worker /proc sampler", daemon=True)
        self._thread.start()

    def tree(self) -> list[int]:
        """The root pid and its live descendants."""
        return [self.root_pid, *descendants(self.root_pid)]

    @staticmethod
    def _status_kib(pid: int) -> dict[str, int]:
        values: dict[str, int] = {}
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key in ("VmRSS", "VmHWM"):
                        values[key] = int(rest.split()[0])
        except (OSError, ValueError, IndexError):
            pass
        return values

    def sample(self) -> int:
        """The summed VmRSS of the tree now, in bytes (also updates the peaks)."""
        total = proportional = 0
        for pid in self.tree():
            status = self._status_kib(pid)
            total += status.get("VmRSS", 0) * 1024
            proportional += self._pss_kib(pid) * 1024
            if "VmHWM" in status:
                self.hwm[pid] = max(self.hwm.get(pid, 0), status["VmHWM"] * 1024)
        self.peak_rss = max(self.peak_rss, total)
        self.peak_pss = max(self.peak_pss, proportional)
        self.samples += 1
        return total

    @staticmethod
    def _pss_kib(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(RSS_SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class OfficialWorker(JsonLinesProcess):
    """dcp-client 5.6.1's ``DistributiveWorker`` working for the scheduler at ``scheduler_url``.

    ``identity_keystore`` (a V3 keystore file, unlocked with ``passphrase``) fixes the worker's
    identity (random by default; the file is copied into the worker's scratch directory);
    ``payment_address`` defaults to a random address; ``job_ids`` restricts the jobs it fetches
    (default: any job, i.e. ``jobIds: false``); ``cores`` / ``max_sandboxes`` set how many slices run
    at once (one sandbox per core by default). ``evaluator`` ("HOST:PORT") runs its sandboxes on a
    standalone evaluator there, over TCP (dcp-client's ``StandaloneWorker``), instead of on the node
    evaluator in its own process. The worker is ``unmanaged`` (no portal). After start-up
    ``worker_id``, ``identity`` and ``payment_address`` hold what the worker reported.

    Raises ``OfficialWorkerUnavailable`` when it cannot run here (see the module docstring).
    """

    what = "official worker"

    def __init__(
        self,
        scheduler_url: str,
        *,
        identity_keystore: str | os.PathLike[str] | None = None,
        passphrase: str = "",
        payment_address: str | None = None,
        job_ids: Sequence[str] = (),
        cores: int = 1,
        max_sandboxes: int | None = None,
        evaluator: str | None = None,
        user: str = UNPRIVILEGED_USER,
        node: str = "node",
        start_timeout: float = 60.0,
        command_timeout: float = 60.0,
    ) -> None:
        self.scheduler_url = scheduler_url
        self._account = ensure_unprivileged_user(user)
        node_path = shutil.which(node)
        if self._account is not None and node_path is not None:
            check_readable(self._account, (Path(node_path), *NEEDED_PATHS))
        self._identity_source = None if identity_keystore is None else Path(identity_keystore)
        self._memory: TreeMemory | None = None
        args = [scheduler_url, "--passphrase", passphrase, "--cores", str(cores)]
        if payment_address is not None:
            args += ["--payment-address", payment_address]
        for job_id in job_ids:
            args += ["--job-id", job_id]
        if max_sandboxes is not None:
            args += ["--max-sandboxes", str(max_sandboxes)]
        if evaluator is not None:
            args += ["--evaluator", evaluator]
        super().__init__(
            OFFICIAL_WORKER_SCRIPT,
            args,
            node=node,
            start_timeout=start_timeout,
            command_timeout=command_timeout,
        )
        self.worker_id = str(self.ready["workerId"])
        self.identity = str(self.ready["identity"])
        self.payment_address = str(self.ready["paymentAddress"])

    def __enter__(self) -> OfficialWorker:
        return self

    # -- process ------------------------------------------------------------------------------

    def _spawn(self, node_path: str, script: Path, args: list[str]) -> subprocess.Popen[bytes]:
        scratch = self._scratch
        home, tmp = scratch / "home", scratch / "tmp"
        resource_dir = home / ".dcp"
        for directory in (home, resource_dir, tmp):
            directory.mkdir(mode=0o700)
        if self._identity_source is not None:
            identity = scratch / "identity.keystore"
            shutil.copyfile(self._identity_source, identity)
            identity.chmod(0o600)
            args = [*args, "--identity", str(identity)]
        config_location = self.scheduler_url.rstrip("/") + "/etc/dcp-config.kvin"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": str(home),
            "DCP_HOMEDIR": str(home),
            "DCP_RESOURCE_DIR": str(resource_dir),
            "TMPDIR": str(tmp),
            "DCP_IDENTITY_CACHE_WRITE_DISABLE": "1",
            "DCP_CLIENT_NO_PARSE_ARGV": "1",
            "DCP_SCHEDULER_LOCATION": self.scheduler_url,
            "DCP_CONFIG_LOCATION": config_location,
        }
        command = [node_path, str(script), *args]
        popen_user: dict[str, Any] = {}
        if self._account is not None:
            account = self._account
            _chown_tree(scratch, account.pw_uid, account.pw_gid)
            env.update({"USER": account.pw_name, "LOGNAME": account.pw_name})
            runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
            if runuser is not None:
                # -p keeps the environment given here (runuser would otherwise set HOME to the user's).
                command = [runuser, "-p", "-u", account.pw_name, "--", *command]
            else:  # the same, done by Python's own setuid in the child
                popen_user = {
                    "user": account.pw_uid,
                    "group": account.pw_gid,
                    "extra_groups": os.getgrouplist(account.pw_name, account.pw_gid),
                }
        proc = subprocess.Popen(
            command,
            cwd=TESTS_DIR.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            start_new_session=True,  # one process group to signal: runuser and node
            **popen_user,
        )
        self._memory = TreeMemory(proc.pid)
        return proc

    def _reap(self) -> None:
        """Wait for the worker to stop by itself; then end its process group (runuser and node)."""
        proc = self._proc
        try:
            proc.wait(timeout=35)  # a graceful stop waits for the slices being worked on
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if self._memory is not None:
            self._memory.stop()

    # -- commands and events --------------------------------------------------------------------

    def state(self) -> Message:
        """``{stopping, workingSlices, queuedSlices, sandboxes, results, payments}``."""
        return self.command("state")

    def stop(self, force: bool = False, timeout: float = 60.0) -> None:
        """Stop the worker (gracefully: it finishes and submits the slices it is working on, and
        returns the ones it holds); return once it has ended. The process then exits on ``close()``."""
        self.command("stop", timeout, force=force)

    def results(self) -> list[Message]:
        """The ``result`` events so far: ``{jobId, sliceNumber, payloadLength}``."""
        return [event for event in self.events() if event.get("event") == "result"]

    def wait_results(self, count: int, timeout: float = 60.0) -> list[Message]:
        """Wait until the worker has had ``count`` results accepted; return those result events."""
        return self.wait_events("result", count, timeout)

    def seconds_to(self, event_name: str, nth: int = 1) -> float | None:
        """Seconds from the process's start to the ``nth`` event named ``event_name`` (None if none yet)."""
        seen = 0
        for when, event in self.timed_events():
            if event.get("event") == event_name:
                seen += 1
                if seen == nth:
                    return when - self.started_at
        return None

    # -- memory -------------------------------------------------------------------------------

    @property
    def peak_rss_bytes(self) -> int:
        """The largest resident memory of the worker's process tree (summed VmRSS) seen so far."""
        return 0 if self._memory is None else self._memory.peak_rss

    @property
    def peak_pss_bytes(self) -> int:
        """The largest proportional memory of the worker's process tree (summed Pss) seen so far."""
        return 0 if self._memory is None else self._memory.peak_pss

    @property
    def peak_hwm_bytes(self) -> int:
        """The sum of the kernel's per-process resident peaks (VmHWM) of the tree: an upper bound."""
        return 0 if self._memory is None else sum(self._memory.hwm.values())

    def rss_bytes(self) -> int:
        """The resident memory of the worker's process tree now."""
        return 0 if self._memory is None else self._memory.sample()


def describe(worker: OfficialWorker) -> dict[str, Any]:
    """A summary of a run, for reports: start-up and first-result seconds, results, peak memory (MiB)."""
    return {
        "startup_seconds": worker.startup_seconds,
        "first_result_seconds": worker.seconds_to("result"),
        "results": len(worker.results()),
        "peak_rss_mib": worker.peak_rss_bytes / 2**20,
    }


WorkerFactory = Callable[..., OfficialWorker]


@pytest.fixture
def official_workers() -> Iterator[WorkerFactory]:
    """Start official workers (stopped and closed after the test): ``make(url, **options)``."""
    made: list[OfficialWorker] = []

    def make(url: str, **options: Any) -> OfficialWorker:
        try:
            worker = OfficialWorker(url, **options)
        except OfficialWorkerUnavailable as exc:
            pytest.skip(f"the official dcp-client worker cannot run here: {exc}")
        made.append(worker)
        return worker

    try:
        yield make
    finally:
        for worker in made:
            worker.close()
