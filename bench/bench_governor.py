"""What the governor costs and how closely the throttler holds a busy sandbox host to its CPU cap.

Run from the project root::

    .venv/bin/python bench/bench_governor.py [--seconds N]

Prints: the time one ``Governor.evaluate()`` takes with every condition on and the machine's real
readings (the /proc scan for the worker's process tree dominates), and, for a busy child process
under the throttler at several caps, the CPU share it got against the share it got unthrottled
(on a loaded machine the unthrottled share is below 100%). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

from dcp_worker.governor.governor import Decision, Governor
from dcp_worker.governor.proc import process_stat
from dcp_worker.governor.settings import GovernorSettings
from dcp_worker.governor.throttle import Throttler

TICKS = os.sysconf("SC_CLK_TCK")
BURN = "while True: pass"


def evaluate_cost(rounds: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds one evaluate() takes."""
    settings = GovernorSettings.from_options(
        {
            "maxLoad": 1000,
            "maxOtherCpu": 100,
            "hours": "00:00-24:00",
            "maxMemoryShare": 1,
            "pauseOnBattery": True,
            "pauseWhenUserActive": 1,
        }
    )
    governor = Governor(settings, max_sandboxes=2, hosts=lambda: [os.getpid()])
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        governor.evaluate()
    return (time.perf_counter() - started) / rounds, (time.process_time() - cpu_started) / rounds


def cpu_ticks(pid: int) -> int:
    stat = process_stat(pid)
    assert stat is not None
    return stat.cpu_ticks


async def share(pid: int, cap: float | None, seconds: float) -> float:
    """The share of one CPU ``pid`` used over ``seconds``, throttled to ``cap`` (None: not at all)."""
    throttler = Throttler(lambda: [pid])
    throttler.apply(Decision(sandboxes=1, fetch=True, cpu_cap=cap or 100.0))
    before, started = cpu_ticks(pid), time.monotonic()
    async with asyncio.TaskGroup() as tasks:
        running = tasks.create_task(throttler.run())
        await asyncio.sleep(seconds)
        running.cancel()
    return (cpu_ticks(pid) - before) / TICKS / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time at each cap")
    options = parser.parse_args()
    processes = sum(1 for name in os.listdir("/proc") if name.isdigit())
    wall, cpu = evaluate_cost(50)
    print(f"Governor.evaluate(), every condition on, {processes} processes: {wall * 1e3:.2f} ms")
    print(f"  of which CPU {cpu * 1e3:.2f} ms: {cpu / 5 * 100:.3f}% of one core at the default 5 s interval")
    burner = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        free = asyncio.run(share(burner.pid, None, options.seconds))
        print(f"busy child unthrottled: {free * 100:.0f}% of a core")
        print("cap    share   share/unthrottled   target")
        for cap in (75.0, 50.0, 25.0, 10.0):
            got = asyncio.run(share(burner.pid, cap, options.seconds))
            print(f"{cap:3.0f}%  {got * 100:5.1f}%   {got / free:6.2f}              {cap / 100:.2f}")
    finally:
        burner.kill()
        burner.wait()


if __name__ == "__main__":
    main()
