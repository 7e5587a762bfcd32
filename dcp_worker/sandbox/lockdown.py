"""The walls a sandbox host raises around itself before it receives a job.

If V8 were broken, the code that broke it would hold a process that can still compute and
talk to its supervisor over the descriptors it has, and do nothing else. The walls:

- descriptors: every one closed but the channel and stderr (V8 then opens its own few);
- user: a host started as root becomes ``nobody``;
- no-new-privs: ``PR_SET_NO_NEW_PRIVS``, and the process is made non-dumpable, so that no
  other process of its user can trace it or read its memory;
- landlock: a ruleset that grants no file access at all (and, from ABI 4, no TCP bind or
  connect; from ABI 6, no signal to a process outside the host and no abstract Unix socket);
- rlimits: no new descriptor above those held, no new process or thread, no file written, no
  core dump, no locked memory (``RLIMIT_DATA``, the memory cap, is the sandbox's own limit
  and stands with lockdown off: see ``limits``);
- environment: emptied;
- seccomp: an allow-list of the system calls the host was measured to make once V8 runs; any
  other call fails with EPERM, and the most dangerous ones (``execve``, ``ptrace``, reading or
  writing another process's memory) kill the host with SIGSYS.

They go up in two steps (``Lockdown``): ``before_threads`` once V8 is loaded but before the
isolate starts its threads, because a Landlock ruleset binds only the calling thread and the
threads it starts later (until ABI 8's TSYNC); ``seal`` once the isolate and its runtime are
loaded, with the seccomp filter synchronised to every thread. A wall this machine cannot
raise is reported and the others stand (``LockdownReport``); a host told ``required`` then
refuses to serve.

Run as ``python -m dcp_worker.sandbox.lockdown``, this module raises the walls around itself
and prints its report as JSON: how the supervisor learns what this machine supports.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import importlib
import os
import pwd
import resource
import signal
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from types import ModuleType
from typing import Any

import orjson

from dcp_worker.errors import LockdownError

# Set (to anything but the empty string) to start hosts with no lockdown: for measurement only.
DISABLING_VARIABLE = "DCP_WORKER_NO_LOCKDOWN"

SECCOMP = "seccomp"
LANDLOCK = "landlock"
NO_NEW_PRIVS = "no-new-privs"
RLIMITS = "rlimits"
USER = "user"
WALLS = (SECCOMP, LANDLOCK, NO_NEW_PRIVS, RLIMITS, USER)

# prctl(2) options, from linux/prctl.h.
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_VMA = 0x53564D41

# What a host needs once V8 runs: the calls seen with strace on x86-64 over work functions
# that exercise Intl, dates, JSON, ArrayBuffers, Wasm, promises, timers, Atomics, garbage
# collection, large strings, memory bombs and timeouts (see SECURITY.md), and the few marked
# "unseen" that other machines or paths call in their place. No thread or process is started
# once V8 runs: clone is refused.
ALLOWED_SYSCALLS = (
    # memory: Python's and V8's allocators, and JIT code
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    "pkey_mprotect",  # unseen: V8's JIT on CPUs with memory protection keys
    # the threads that exist, waiting, and randomness
    "futex",
    "getpid",
    "gettid",
    "getrandom",  # unseen: V8 draws randomness at start, and may again
    # unseen: clocks, which the vDSO answers without a system call where the clock source allows
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    # its own signals: abort() (masks and SIGABRT; rt_sigaction unseen), returning from a
    # handler (unseen: Python's, for a terminal's SIGINT), resuming a wait after a stop (a
    # terminal's Ctrl-Z)
    "rt_sigprocmask",
    "rt_sigaction",
    "rt_sigreturn",
    "restart_syscall",
    # the descriptors it holds: its channel, stderr, and mini-racer's epoll and socket pair
    "read",
    "write",
    "writev",  # unseen: the C library's fatal error messages
    "close",
    "recvfrom",
    "epoll_wait",
    "epoll_pwait",  # unseen: what the C library calls where epoll_wait does not exist
    "epoll_ctl",
    "exit",
    "exit_group",
)
# Calls no host makes unless something has gone badly wrong: the process is killed.
KILLING_SYSCALLS = ("execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev")

# The highest descriptor searched for when sizing RLIMIT_NOFILE: everything inherited above
# the channel was closed before V8 opened its own, which therefore take the lowest numbers.
DESCRIPTOR_SEARCH_LIMIT = 1024


class Mode(StrEnum):
    """How a host treats its walls: ``off`` is for measuring what lockdown costs, only."""

    OFF = "off"
    BEST_EFFORT = "best-effort"
    REQUIRED = "required"


def requested_mode(require: bool) -> Mode:
    """The mode a supervisor starts its hosts in: ``required`` or ``best-effort``, or ``off``
    when ``DCP_WORKER_NO_LOCKDOWN`` is set (to measure what lockdown costs), which contradicts
    ``require``."""
    if not os.environ.get(DISABLING_VARIABLE):
        return Mode.REQUIRED if require else Mode.BEST_EFFORT
    if require:
        raise LockdownError(f"lockdown is required, but {DISABLING_VARIABLE} turns it off")
    return Mode.OFF


class WallUnavailable(Exception):
    """This machine cannot raise a wall; the message says why."""


@dataclass(frozen=True)
class Wall:
    name: str
    raised: bool
    detail: str = ""

    @property
    def label(self) -> str:
        if not self.raised:
            return f"{self.name} unavailable ({self.detail})"
        return f"{self.name} {self.detail}" if self.detail else self.name


@dataclass(frozen=True)
class LockdownReport:
    """Which walls stand around a host (or stood around the probe: see ``probe``)."""

    walls: tuple[Wall, ...] = ()
    off: bool = False

    @property
    def missing(self) -> tuple[Wall, ...]:
        return tuple(wall for wall in self.walls if not wall.raised)

    @property
    def complete(self) -> bool:
        return not self.off and not self.missing

    def summary(self) -> str:
        """One line for a banner: the walls raised, then those missing and why."""
        if self.off:
            return f"lockdown: off ({DISABLING_VARIABLE} is set; for measurement only)"
        raised = ", ".join(wall.label for wall in self.walls if wall.raised) or "none"
        missing = "; ".join(wall.label for wall in self.missing)
        return f"lockdown: {raised}" + (f"; {missing}" if missing else "")

    def to_json(self) -> dict[str, Any]:
        return {"walls": [[wall.name, wall.raised, wall.detail] for wall in self.walls]}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> LockdownReport:
        return cls(
            tuple(Wall(str(name), bool(raised), str(detail)) for name, raised, detail in value["walls"])
        )


class Lockdown:
    """Raises the walls around this process, in two steps (see the module's docstring).

    ``keep`` are the descriptors to keep open besides stdout and stderr; ``without`` names
    walls to leave down, so that tests can stand for a machine that lacks them.
    """

    def __init__(self, keep: Collection[int], without: Collection[str] = ()) -> None:
        self._keep = frozenset({1, 2, *keep})
        self._parent = os.getppid()
        self._without = frozenset(without)
        self._walls: list[Wall] = []
        # Imported now: a host that has left root and raised Landlock can import nothing.
        self._landlock = Binding("landlockpy")
        self._seccomp = Binding("pyseccomp")

    def before_threads(self) -> None:
        close_descriptors_except(self._keep)
        if os.getuid() == 0 or os.geteuid() == 0:
            self._raise(USER, leave_root)
        die_with_parent(self._parent)
        self._raise(NO_NEW_PRIVS, forbid_new_privileges)
        self._raise(LANDLOCK, lambda: forbid_file_access(self._landlock.module()))

    def seal(self) -> LockdownReport:
        self._raise(RLIMITS, restrict_resources)
        os.environ.clear()
        self._raise(SECCOMP, lambda: load_syscall_filter(self._seccomp.module()))
        return LockdownReport(tuple(self._walls))

    def _raise(self, name: str, step: Callable[[], str]) -> None:
        if name in self._without:
            self._walls.append(Wall(name, raised=False, detail="left down for a test"))
            return
        try:
            detail = step()
        except (OSError, WallUnavailable) as error:
            self._walls.append(Wall(name, raised=False, detail=describe_failure(error)))
        else:
            self._walls.append(Wall(name, raised=True, detail=detail))


class Binding:
    """A Python binding to a kernel interface, or why it cannot be loaded."""

    def __init__(self, name: str) -> None:
        self._module: ModuleType | None = None
        try:
            self._module = importlib.import_module(name)
        except (ImportError, RuntimeError) as error:  # pyseccomp raises RuntimeError without libseccomp
            self._problem = f"{name} cannot be loaded: {error}"

    def module(self) -> ModuleType:
        if self._module is None:
            raise WallUnavailable(self._problem)
        return self._module


def describe_failure(error: Exception) -> str:
    if isinstance(error, OSError) and error.errno is not None:
        return f"{errno.errorcode.get(error.errno, error.errno)}: {error.strerror or error}"
    return str(error)


def close_descriptors_except(keep: frozenset[int]) -> None:
    previous = -1
    for fd in sorted(keep):
        os.closerange(previous + 1, fd)
        previous = fd
    os.closerange(previous + 1, os.sysconf("SC_OPEN_MAX"))


def leave_root() -> str:
    try:
        nobody = pwd.getpwnam("nobody")
        uid, gid = nobody.pw_uid, nobody.pw_gid
    except KeyError:
        uid = gid = 65534
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as error:
        raise WallUnavailable(f"still root: {describe_failure(error)}") from None
    return "nobody"


@functools.cache
def libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def prctl(option: int, argument: int = 0) -> int:
    result = int(libc().prctl(ctypes.c_int(option), ctypes.c_ulong(argument), 0, 0, 0))
    if result == -1:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def die_with_parent(parent: int) -> None:
    """Be killed when the supervisor dies, so that no host runs on, busy, without one. Set after
    leaving root, which clears it; a parent gone already is checked for by hand."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def forbid_new_privileges() -> str:
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_DUMPABLE, 0)
    if prctl(PR_GET_NO_NEW_PRIVS) != 1:
        raise WallUnavailable("the kernel did not keep the flag")
    return ""


def forbid_file_access(landlockpy: ModuleType) -> str:
    abi = landlockpy.abi_version()
    if abi == 0:
        raise WallUnavailable("this kernel has no Landlock, or it is disabled at boot")
    # Every access right this kernel knows is handled and none is granted.
    with landlockpy.Ruleset(
        scoped=landlockpy.Scope.ABSTRACT_UNIX_SOCKET | landlockpy.Scope.SIGNAL
    ) as ruleset:
        ruleset.restrict(no_new_privs=False)
    return f"v{abi}"


def highest_open_descriptor() -> int:
    highest = -1
    for fd in range(DESCRIPTOR_SEARCH_LIMIT):
        try:
            os.get_inheritable(fd)
        except OSError:
            continue
        highest = fd
    return highest


def restrict_resources() -> str:
    for limit, value in (
        (resource.RLIMIT_NOFILE, highest_open_descriptor() + 1),
        (resource.RLIMIT_NPROC, 0),
        (resource.RLIMIT_FSIZE, 0),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_MEMLOCK, 0),
        (resource.RLIMIT_MSGQUEUE, 0),
    ):
        _, hard = resource.getrlimit(limit)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(limit, (value, value))
    return ""


def load_syscall_filter(seccomp: ModuleType) -> str:
    refused = seccomp.ERRNO(errno.EPERM)
    syscall_filter = seccomp.SyscallFilter(refused)
    # V8's threads exist by now: the filter must bind them all.
    syscall_filter.set_attr(seccomp.Attr.CTL_TSYNC, 1)
    # A call through another system-call ABI (i386 or x32 on x86-64) would dodge the rules.
    syscall_filter.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)

    def allow(name: str, *conditions: Any) -> None:
        # A name this libseccomp does not know stays refused.
        if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) >= 0:
            syscall_filter.add_rule(seccomp.ALLOW, name, *conditions)

    for name in ALLOWED_SYSCALLS:
        allow(name)
    pid = os.getpid()
    # Signals to itself only (abort() raises SIGABRT with tgkill).
    allow("kill", seccomp.Arg(0, seccomp.EQ, pid))
    allow("tgkill", seccomp.Arg(0, seccomp.EQ, pid))
    # Only on the socket pair it holds, which is connected: never to an address.
    allow("sendto", seccomp.Arg(4, seccomp.EQ, 0))
    # Naming anonymous memory, which V8's allocator does.
    allow("prctl", seccomp.Arg(0, seccomp.EQ, PR_SET_VMA))
    for name in KILLING_SYSCALLS:
        if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) >= 0:
            syscall_filter.add_rule(seccomp.KILL_PROCESS, name)
    syscall_filter.load()
    return ""


def main() -> None:
    """Raise every wall around this process and print which stood, as JSON."""
    lockdown = Lockdown(keep=())
    lockdown.before_threads()
    report = lockdown.seal()
    os.write(1, orjson.dumps(report.to_json()))
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
