"""Memory limits for a sandbox host.

V8's own heap limit does not cover ArrayBuffer backing stores or WebAssembly memories, so a
host also caps its whole process with ``RLIMIT_DATA``. ``RLIMIT_AS`` cannot serve: V8 reserves
about a terabyte of address space for its sandbox at start. The cap is set after V8 and the
runtime are loaded, relative to what the process already holds then, so it bounds what the
job itself can take.
"""

from __future__ import annotations

import resource

WASM_PAGE_BYTES = 64 << 10
# Room beyond the job's cap for V8's own bookkeeping, so that a job exhausting the cap with
# ArrayBuffers gets a catchable RangeError rather than starving the heap.
RESERVE_MB = 64


def v8_flags(memory_mb: int) -> tuple[str, ...]:
    if not memory_mb:
        return ("--single-threaded",)
    return ("--single-threaded", f"--wasm-max-mem-pages={max(1, (memory_mb << 20) // WASM_PAGE_BYTES)}")


def data_segment_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmData line")


def cap_process_memory(memory_mb: int) -> None:
    if not memory_mb:
        return
    limit = data_segment_bytes() + ((memory_mb + RESERVE_MB) << 20)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
