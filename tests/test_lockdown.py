"""Each wall of a sandbox host's lockdown, proven from inside a locked-down host.

Hosts here are real, started as the supervisor starts them, plus the test-only ``--test-probes``
(the host then tries what a test asks, in Python, after its lockdown) and, to stand for a
machine that lacks a wall, ``--test-without WALL``. What the kernel shows of a host from
outside (its ``/proc/PID`` status and limits) is read from outside.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from cli_run import ERROR_PREFIX, one_line_error, run_cli
from process_tree import sandbox_hosts

from dcp_worker.errors import LockdownError, SandboxCrashError
from dcp_worker.localexec import run
from dcp_worker.sandbox.lockdown import DISABLING_VARIABLE, LANDLOCK, SECCOMP
from dcp_worker.supervisor import host_process
from dcp_worker.supervisor.host_process import SandboxHost
from dcp_worker.supervisor.job import JobSpec
from dcp_worker.supervisor.lockdown import check_lockdown, probe

MEMORY_MB = 64
TIMEOUT_SECONDS = 30.0
IDENTITY = JobSpec("function (x) { progress(); return x; }")
PROGRAM = "/bin/true"
AS_ROOT = os.geteuid() == 0

MACHINE = probe()
landlock_abi = next(
    (int(wall.detail[1:]) for wall in MACHINE.walls if wall.name == LANDLOCK and wall.raised), 0
)
needs_landlock = pytest.mark.skipif(not landlock_abi, reason="this kernel has no Landlock")


def with_test_options(monkeypatch: pytest.MonkeyPatch, *options: str) -> None:
    """Make the supervisor start its hosts with test-only options."""
    command = host_process.host_command

    def test_command(*arguments: Any) -> list[str]:
        return [*command(*arguments), *options]

    monkeypatch.setattr(host_process, "host_command", test_command)


@asynccontextmanager
async def started_host() -> AsyncIterator[SandboxHost]:
    host = await SandboxHost.start(IDENTITY, MEMORY_MB)
    try:
        yield host
    finally:
        await host.close()


async def attempt(host: SandboxHost, action: str, argument: Any = None) -> dict[str, Any]:
    message = {"op": "probe", "action": action, "argument": argument}
    return await host.request(orjson.dumps(message), TIMEOUT_SECONDS)


def attempts(
    monkeypatch: pytest.MonkeyPatch, actions: list[tuple[str, Any]], *options: str
) -> list[dict[str, Any]]:
    """What one host answered to each (action, argument), tried in turn."""
    with_test_options(monkeypatch, "--test-probes", *options)

    async def scenario() -> list[dict[str, Any]]:
        async with started_host() as host:
            return [await attempt(host, action, argument) for action, argument in actions]

    return asyncio.run(scenario())


@pytest.fixture
def open_directory() -> Iterator[Path]:
    """A directory any user may write in, so that only the walls can refuse a write there."""
    directory = Path(tempfile.mkdtemp())
    directory.chmod(0o777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def refused(reply: dict[str, Any], code: int) -> None:
    assert "error" in reply, f"the host was allowed to do it: {reply}"
    assert reply["error"]["errno"] == code, reply["error"]


def host_facts(read: Callable[[int], str]) -> str:
    """``read(pid)`` for a host that is up, as the supervisor starts it."""

    async def scenario() -> str:
        async with started_host() as host:
            return read(host.pid)

    return asyncio.run(scenario())


def proc_file(name: str) -> Callable[[int], str]:
    return lambda pid: Path(f"/proc/{pid}/{name}").read_text()


def status_field(status: str, name: str) -> list[str]:
    line = next(line for line in status.splitlines() if line.startswith(f"{name}:"))
    return line.split()[1:]


def test_this_machine_raises_every_wall() -> None:
    """What the banner reports, on the machines the project runs its tests on."""
    assert MACHINE.complete, MACHINE.summary()
    summary = MACHINE.summary()
    for label in ("seccomp", "landlock v", "no-new-privs", "rlimits"):
        assert label in summary
    assert ("user nobody" in summary) == AS_ROOT


def test_files_network_programs_and_the_supervisor_are_out_of_reach(
    monkeypatch: pytest.MonkeyPatch, open_directory: Path
) -> None:
    target = open_directory / "written"
    replies = attempts(
        monkeypatch,
        [
            ("read-file", "/etc/passwd"),
            ("list-directory", "/"),
            ("write-file", str(target)),
            ("create-socket", None),
            ("start-program", PROGRAM),
            ("signal", os.getpid()),
        ],
    )
    # The seccomp filter answers first, with EPERM, whatever the other walls would say.
    for reply in replies:
        refused(reply, errno.EPERM)
    assert not target.exists()


def test_memory_past_the_cap_cannot_be_had(monkeypatch: pytest.MonkeyPatch) -> None:
    [small, large] = attempts(monkeypatch, [("allocate", MEMORY_MB // 2), ("allocate", 4 * MEMORY_MB)])
    assert small == {"op": "probed", "value": (MEMORY_MB // 2) << 20}
    assert large["error"]["type"] == "MemoryError"


def test_the_environment_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCP_TEST_SECRET", "must not reach a host")
    [reply] = attempts(monkeypatch, [("environment", None)])
    assert reply == {"op": "probed", "value": {}}


@needs_landlock
def test_landlock_alone_keeps_files_and_ports_out_of_reach(
    monkeypatch: pytest.MonkeyPatch, open_directory: Path
) -> None:
    """On a machine without seccomp, Landlock and the rlimits still stand."""
    target = open_directory / "written"
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        replies = attempts(
            monkeypatch,
            [
                ("read-file", "/etc/passwd"),
                ("list-directory", "/"),
                ("write-file", str(target)),
                ("connect", port),
                ("start-program", PROGRAM),
                ("signal", os.getpid()),
            ],
            "--test-without",
            SECCOMP,
        )
    read, listing, write, connect, start, signal = replies
    for reply in (read, listing, write):
        refused(reply, errno.EACCES)
    assert not target.exists()
    if landlock_abi >= 4:
        refused(connect, errno.EACCES)
    refused(start, errno.EAGAIN)  # RLIMIT_NPROC 0
    refused(signal, errno.EPERM)


def test_the_kernel_sees_a_host_locked_down() -> None:
    status = host_facts(proc_file("status"))
    assert status_field(status, "Seccomp") == ["2"]  # filtered
    assert status_field(status, "NoNewPrivs") == ["1"]
    if AS_ROOT:
        assert set(status_field(status, "Uid")) == {"65534"}
        assert set(status_field(status, "CapEff")) == {"0000000000000000"}
    else:
        assert set(status_field(status, "Uid")) == {str(os.getuid())}


def test_a_host_has_its_resource_limits() -> None:
    limits = {
        line[:26].strip(): line[26:].split()[:2] for line in host_facts(proc_file("limits")).splitlines()[1:]
    }
    for name in ("Max processes", "Max file size", "Max core file size", "Max locked memory"):
        assert limits[name] == ["0", "0"], name
    soft, hard = limits["Max open files"]
    assert soft == hard and int(soft) <= 16
    data = limits["Max data size"]
    assert data[0] == data[1] != "unlimited"


@pytest.mark.skipif(not AS_ROOT, reason="only root may list the descriptors of a non-dumpable process")
def test_a_host_holds_no_file_only_its_channel_and_v8s_own() -> None:
    def descriptors(pid: int) -> str:
        fds = Path(f"/proc/{pid}/fd")
        return "\n".join(os.readlink(fd) for fd in fds.iterdir())

    held = host_facts(descriptors).splitlines()
    # Pipes (the channel, stderr), the socket pair and epoll of mini-racer: nothing with a path.
    assert held and all(not target.startswith("/") for target in held), held
    assert sum(target.startswith("pipe:") for target in held) >= 3


def test_a_host_maps_no_openssl() -> None:
    """A host never opens a TLS connection, so OpenSSL's code is not in its address space."""
    maps = host_facts(proc_file("maps"))
    assert "libmini_racer" in maps
    assert not [line for line in maps.splitlines() if "libssl" in line or "libcrypto" in line]


def test_a_host_killed_by_its_filter_fails_its_slice_and_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with_test_options(monkeypatch, "--test-probes")
    source = f"""function (x) {{
      progress();
      globalThis.count = (globalThis.count || 0) + 1;
      if (x === 2) globalThis.lockdownProbe = {{ action: 'replace-with-program', argument: '{PROGRAM}' }};
      return globalThis.count;
    }}"""
    results = run(source, [1, 2, 3], cores=1, slice_timeout=TIMEOUT_SECONDS, memory_mb=MEMORY_MB)
    assert results[0] == 1
    crash = results[1]
    assert isinstance(crash, SandboxCrashError), crash
    assert "SIGSYS" in crash.message and "lockdown" in crash.message
    assert results[2] == 1, "slice 3 should run in a fresh host"


def test_a_host_missing_a_wall_runs_unless_lockdown_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    with_test_options(monkeypatch, "--test-without", LANDLOCK)
    source = "function (x) { progress(); return x + 1; }"
    assert run(source, [1, 2], cores=1, memory_mb=MEMORY_MB) == [2, 3]
    with pytest.raises(LockdownError, match=r"landlock unavailable \(left down for a test\)"):
        run(source, [1, 2], cores=1, memory_mb=MEMORY_MB, require_lockdown=True)


def test_lockdown_turned_off_for_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISABLING_VARIABLE, "1")
    with pytest.raises(LockdownError, match=DISABLING_VARIABLE):
        check_lockdown(require=True)

    assert status_field(host_facts(proc_file("status")), "Seccomp") == ["0"]


def test_cli_reports_degradation_once_and_refuses_when_lockdown_is_required(tmp_path: Path) -> None:
    work = tmp_path / "square.js"
    work.write_text("function (x) { progress(); return x * x; }")
    arguments = ("localexec", str(work), "--range", "1:3", "--cores", "1")

    locked = run_cli(tmp_path, *arguments, "--require-lockdown")
    assert locked.returncode == 0, locked.stderr
    assert orjson.loads(locked.stdout) == [1, 4, 9]
    assert "lockdown" not in locked.stderr

    off = run_cli(tmp_path, *arguments, **{DISABLING_VARIABLE: "1"})
    assert off.returncode == 0, off.stderr
    assert [line for line in off.stderr.splitlines() if line.startswith("lockdown:")] == [
        f"lockdown: off ({DISABLING_VARIABLE} is set; for measurement only)"
    ]

    refusal = one_line_error(run_cli(tmp_path, *arguments, "--require-lockdown", **{DISABLING_VARIABLE: "1"}))
    assert refusal.startswith(ERROR_PREFIX) and DISABLING_VARIABLE in refusal


def test_probing_leaves_the_asking_process_as_it_was() -> None:
    assert status_field(Path("/proc/self/status").read_text(), "Seccomp") == ["0"]


def test_a_host_dies_with_its_supervisor(tmp_path: Path) -> None:
    """A supervisor killed outright (SIGKILL: no cleanup) leaves no busy host running on."""
    work = tmp_path / "spin.js"
    work.write_text("function (x) { progress(); for (;;) {} }")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "dcp_worker", "localexec", str(work), "--range", "1:1", "--cores", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        host = _first_child_running_a_slice(supervisor.pid)
        watch = os.pidfd_open(host)
        supervisor.kill()
        supervisor.wait()
        ready, _, _ = select.select([watch], [], [], TIMEOUT_SECONDS)  # readable once the host has died
        os.close(watch)
        assert ready, f"host {host} outlived its supervisor"
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGKILL)
            supervisor.wait()


def _first_child_running_a_slice(parent: int) -> int:
    """The pid of ``parent``'s sandbox host, once it is busy in a slice."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for pid in sandbox_hosts(parent):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            # utime, in clock ticks: 1.5 s of CPU, more than starting takes, so the host is in the
            # slice (killed while it starts, a host would end of itself, at the end of its input)
            if int(fields[11]) > 150:
                return pid
        time.sleep(0.05)  # no event says "a host is busy"; /proc is polled
    raise AssertionError(f"no busy sandbox host under {parent} within {TIMEOUT_SECONDS} s")
