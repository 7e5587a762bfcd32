"""Memory limits for a sandbox host.

V8's own heap limit does not cover ArrayBuffer backing stores or WebAssembly memories, so a
host also caps its whole process with ``RLIMIT_DATA``. ``RLIMIT_AS`` cannot serve: V8 reserves
about a terabyte of address space for its sandbox at start. The cap is set after V8 and the
runtime are loaded, relative to what the process already holds then, so it bounds what the
job itself can take. The host opens ``/proc/self/status`` before its lockdown forbids opening
files (``StatusFile``) and reads it when it sets the cap.
"""

from __future__ import annotations

import os
import resource

# A sandbox's limits unless told otherwise (localexec, the evaluator and the worker alike).
DEFAULT_MEMORY_MB = 1024
DEFAULT_SLICE_TIMEOUT_SECONDS = 300.0
WASM_PAGE_BYTES = 64 << 10
# Room beyond the job's cap for V8's own bookkeeping, so that a job exhausting the cap with
# ArrayBuffers gets a catchable RangeError rather than starving the heap.
RESERVE_MB = 64
STATUS_READ_BYTES = 1 << 16


def v8_flags(memory_mb: int) -> tuple[str, ...]:
    if not memory_mb:
        return ("--single-threaded",)
    return ("--single-threaded", f"--wasm-max-mem-pages={max(1, (memory_mb << 20) // WASM_PAGE_BYTES)}")


class StatusFile:
    """This process's ``/proc/self/status``, held open from before the lockdown."""

    def __init__(self) -> None:
        self.fd = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)

    def data_segment_bytes(self) -> int:
        for line in os.pread(self.fd, STATUS_READ_BYTES, 0).decode("ascii").splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("/proc/self/status has no VmData line")

    def close(self) -> None:
        os.close(self.fd)


def cap_process_memory(memory_mb: int, status: StatusFile) -> None:
    if not memory_mb:
        return
    limit = status.data_segment_bytes() + ((memory_mb + RESERVE_MB) << 20)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
