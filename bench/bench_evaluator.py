"""Benchmark ``dcp-worker evaluator --stdio`` against dcp-client's ``evaluator-node.js``, driven identically.

Run from the project root, after ``tools/test`` has installed the npm peers::

    .venv/bin/python bench/bench_evaluator.py [--slices N] [--starts N]

Both evaluators are driven over standard input and output by the same Python supervisor stand-in
(``tests/evaluator_peer.py``), which writes exactly what dcp-client's Sandbox writes:

* start-up: from spawning the process to the ``assigned`` reply, with ``describe``,
  ``applyRequirements`` and ``assign`` written as soon as the process exists (as the supervisor
  queues them before the evaluator has loaded); the median of ``--starts`` runs;
* per slice: ``resetState``, then ``main``, waiting for each slice's ``complete`` before the next,
  for a trivial work function (``progress(); return x + 1``); the mean over ``--slices`` slices
  after a warm-up.

evaluator-node.js refuses root, so as root it runs as the unprivileged test user (runuser adds a
few milliseconds to its start-up). Figures and ratios are printed; nothing is asserted.

Then, for where our time goes, the same slice through each layer underneath: one call into the
sandbox's mini-racer isolate in this process (``Sandbox.run``), a round trip to a sandbox host
process (``SandboxHost``, frames over pipes), and the start-up of a host process to its first
answer and of the ``dcp-worker`` command line's imports; and, with ``--port``, the time from a
connection to ``assigned`` when the evaluator's spare host is ready.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

import orjson  # noqa: E402
from evaluator_peer import (  # noqa: E402
    LinePeer,
    PortEvaluator,
    SocketPeer,
    StdioEvaluator,
    job,
    our_stdio_command,
    reference_command,
    request_name,
    start,
)
from official_worker import OfficialWorkerUnavailable  # noqa: E402

from dcp_worker.supervisor.host_process import SandboxHost  # noqa: E402
from dcp_worker.supervisor.job import JobSpec  # noqa: E402

TRIVIAL = "function (x) { progress(); return x + 1; }"
WARM_UP_SLICES = 50
# What dcp-client's evaluator-node.js measured on this machine (issue 9), and the targets: a tenth.
REFERENCE_SLICE_US = 3666
REFERENCE_START_S = 0.3


def wait_for(peer: LinePeer, name: str) -> None:
    lines = peer.until(lambda line: request_name(line) == name, timeout=120)
    if request_name(lines[-1]) != name:
        raise RuntimeError(f"expected {name!r}, got {lines[-3:]!r}")


def start_to_assigned(command: Sequence[str]) -> tuple[float, StdioEvaluator]:
    peer = StdioEvaluator(command)
    peer.request({"request": "describe"})
    peer.request({"request": "applyRequirements", "webgpu": 0, "offscreenCanvas": 0, "worktime": "map-basic"})
    peer.request({"request": "assign", "job": job(TRIVIAL), "sandboxConfig": {}})
    wait_for(peer, "assigned")
    return time.perf_counter() - peer.started, peer


def slice_seconds(peer: LinePeer, count: int) -> float:
    began = time.perf_counter()
    for datum in range(count):
        peer.request({"request": "resetState"})
        wait_for(peer, "resetStateDone")
        peer.request({"request": "main", "data": datum})
        wait_for(peer, "complete")
    return (time.perf_counter() - began) / count


def measure(command_of: Callable[[], Sequence[str]], starts: int, slices: int) -> tuple[float, float]:
    """(median seconds to ``assigned``, mean seconds per slice, timed on the last one started)."""
    command = command_of()
    times = []
    for _ in range(starts - 1):
        seconds, peer = start_to_assigned(command)
        peer.close()
        times.append(seconds)
    seconds, peer = start_to_assigned(command)
    times.append(seconds)
    try:
        slice_seconds(peer, WARM_UP_SLICES)
        per_slice = slice_seconds(peer, slices)
    finally:
        peer.close()
    return statistics.median(times), per_slice


async def in_process_call_seconds(count: int) -> float:
    from dcp_worker.sandbox.host import Sandbox, load_v8

    sandbox = Sandbox(0, load_v8(0))
    try:
        job = JobSpec(TRIVIAL).assign_message()
        assert sandbox.assign(orjson.loads(job)["job"]) is None
        for datum in range(WARM_UP_SLICES):
            await sandbox.run(orjson.dumps({"first": datum, "data": [datum]}).decode())
        began = time.perf_counter()
        for datum in range(count):
            await sandbox.run(orjson.dumps({"first": datum, "data": [datum]}).decode())
        return (time.perf_counter() - began) / count
    finally:
        sandbox.close()


async def host_round_trip(count: int) -> tuple[float, float]:
    """(seconds from spawning a host to its answer to assign, seconds per one-slice batch)."""
    began = time.perf_counter()
    host = await SandboxHost.start(JobSpec(TRIVIAL), 0)
    started = time.perf_counter() - began
    try:
        for datum in range(WARM_UP_SLICES + count):
            if datum == WARM_UP_SLICES:
                began = time.perf_counter()
            host.send_batch(orjson.dumps({"first": datum, "data": [datum]}))
            await host.receive(None)
        return started, (time.perf_counter() - began) / count
    finally:
        await host.close()


def command_line_import_seconds() -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import dcp_worker.cli.main"], check=True)
    return time.perf_counter() - began


def port_connection_to_assigned(connections: int) -> float:
    """Median seconds from connecting to ``dcp-worker evaluator --port`` to ``assigned``, once the
    evaluator has its spare host ready (as it has between a supervisor's sandboxes)."""
    times = []
    with PortEvaluator() as evaluator:
        for _ in range(connections):
            with SocketPeer(evaluator.port) as warm:  # waits for the spare host being ready
                start(warm)
            began = time.perf_counter()
            with SocketPeer(evaluator.port) as peer:
                peer.request({"request": "describe"})
                peer.request({"request": "applyRequirements", "webgpu": 0, "offscreenCanvas": 0})
                peer.request({"request": "assign", "job": job(TRIVIAL), "sandboxConfig": {}})
                wait_for(peer, "assigned")
                times.append(time.perf_counter() - began)
    return statistics.median(times)


def breakdown(slices: int) -> None:
    call = asyncio.run(in_process_call_seconds(slices))
    host_start, round_trip = asyncio.run(host_round_trip(slices))
    imports = command_line_import_seconds()
    print("\nwhere our time goes (per slice, then start-up):")
    print(f"  one mini-racer call running the slice, in process   {call * 1e6:>9,.0f} µs")
    print(f"  a round trip to a sandbox host process (pipes)      {round_trip * 1e6:>9,.0f} µs")
    print(f"  a sandbox host from spawn to its answer to assign   {host_start:>9.3f} s")
    print(f"  python -c 'import dcp_worker.cli.main'              {imports:>9.3f} s")
    print(f"  --port: a connection to assigned, spare host ready  {port_connection_to_assigned(3):>9.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=1000, help="slices timed per evaluator")
    parser.add_argument("--starts", type=int, default=5, help="start-ups timed per evaluator")
    options = parser.parse_args()

    ours_start, ours_slice = measure(our_stdio_command, options.starts, options.slices)
    try:
        ref_start, ref_slice = measure(reference_command, options.starts, options.slices)
        measured = "measured now"
    except (OfficialWorkerUnavailable, OSError, RuntimeError, TimeoutError) as why:
        print(f"evaluator-node.js cannot run here ({why}); using the issue's figures", file=sys.stderr)
        ref_start, ref_slice = REFERENCE_START_S, REFERENCE_SLICE_US / 1e6
        measured = "from issue 9"

    print(f"{'':28}{'per slice':>14}{'start-up (to assigned)':>26}")
    print(f"{'dcp-worker evaluator':28}{ours_slice * 1e6:>11,.0f} µs{ours_start:>24.3f} s")
    print(f"{'evaluator-node.js':28}{ref_slice * 1e6:>11,.0f} µs{ref_start:>24.3f} s   ({measured})")
    print(f"{'ours / reference':28}{ours_slice / ref_slice:>14.3f}{ours_start / ref_start:>26.3f}")
    print(f"{'target (ours / reference)':28}{'<= 0.100':>14}{'<= 0.100':>26}")
    issue = (ours_slice * 1e6 / REFERENCE_SLICE_US, ours_start / REFERENCE_START_S)
    print(f"{'ours / issue 9 figures':28}{issue[0]:>14.3f}{issue[1]:>26.3f}")
    breakdown(options.slices)


if __name__ == "__main__":
    main()
