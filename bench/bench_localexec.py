"""Benchmark ``dcp_worker.localexec.run``: per-slice overhead, scaling, and speed against plain node.

Run from the project root::

    .venv/bin/python bench/bench_localexec.py [--quick]

Three parts, each printed as a table:

1. Trivial slices (``x => { progress(); return x * x; }``) with one and two sandboxes: wall time
   of ``run()``, the fixed start-up cost (``run()`` of one input), slices per second, overhead per
   slice once start-up is taken out, how two sandboxes compare with one, and how the CPU time
   splits between this (supervisor) process and the sandbox hosts.
2. A CPU-bound work function (prime counting by trial division) run in plain ``node`` and in our
   sandboxes: median time per slice in each and their ratio, plus ``run()`` with two sandboxes.
3. The machine and engines: core count, mini-racer's V8 and node's V8.

Each part also reports how much CPU other processes on the machine used while it ran, since
figures taken on a shared machine are only as good as the machine was quiet.

This is a benchmark, not a test: it measures and compares with targets, and asserts nothing about
timing. It does check that every run computed the right results, since a fast wrong answer is not
a figure worth printing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from dcp_worker.jsvalues import from_json, to_json
from dcp_worker.localexec import run
from dcp_worker.localexec.runner import DEFAULT_MEMORY_MB, DEFAULT_SLICE_TIMEOUT_SECONDS
from dcp_worker.supervisor.host_process import SandboxHost
from dcp_worker.supervisor.job import JobSpec

TRIVIAL_WORK_FUNCTION = "x => { progress(); return x * x; }"

# Deterministic and CPU-bound; the hot loop touches only locals. About 0.4-0.5 s per slice in
# node 20 on a current x86 server core. progress() is called once, after the loop.
CPU_WORK_FUNCTION = """function countPrimesBelow(bound) {
  let count = 0;
  for (let i = 2; i < bound; i++) {
    let prime = true;
    for (let d = 2; d * d <= i; d++) {
      if (i % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) count++;
  }
  progress(1);
  return count;
}"""
CPU_INPUTS = [2_000_000 + 1_000 * k for k in range(6)]

# Runs the work function sequentially and reports each slice's result and time (hrtime, ms) as
# JSON. `driver.js INPUTS.json` runs every input and prints one object; `driver.js --serve` reads
# one JSON input per line and answers each with one line. The work function is spliced in
# verbatim, as the sandbox host does; progress() is a no-op global, as outside a slice in a sandbox.
NODE_DRIVER_TEMPLATE = """'use strict';
const fs = require('fs');
globalThis.progress = () => true;
const workFunction = (__WORK_FUNCTION__
);
function timeSlice(input) {
  const started = process.hrtime.bigint();
  const result = workFunction(input);
  const finished = process.hrtime.bigint();
  return { result, ms: Number(finished - started) / 1e6 };
}
if (process.argv[2] === '--serve') {
  const lines = require('readline').createInterface({ input: process.stdin });
  lines.on('line', (line) => process.stdout.write(JSON.stringify(timeSlice(JSON.parse(line))) + '\\n'));
} else {
  const slices = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')).map(timeSlice);
  const results = slices.map((slice) => slice.result);
  process.stdout.write(JSON.stringify({ results, ms: slices.map((slice) => slice.ms) }));
}
"""

OVERHEAD_TARGET_US = 100.0
SCALING_TARGET = 1.7
NODE_RATIO_TARGET = 1.10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Settings:
    trivial_slices: int
    repeats: int
    startup_samples: int


def parse_settings(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="20,000 trivial slices and one repetition instead of three"
    )
    options = parser.parse_args(argv)
    if options.quick:
        return Settings(trivial_slices=20_000, repeats=1, startup_samples=3)
    return Settings(trivial_slices=200_000, repeats=3, startup_samples=5)


# ---- measuring ----


@dataclass(frozen=True)
class Sample:
    """One timed call: wall seconds, and CPU seconds of this process and of its reaped children."""

    wall: float
    supervisor_cpu: float
    children_cpu: float


def own_cpu() -> tuple[float, float]:
    """CPU seconds used so far by this process and by its children that have been waited for."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def timed(action: Callable[[], Any]) -> tuple[Sample, Any]:
    """How long ``action`` took, and what it returned."""
    gc.collect()
    self_before, children_before = own_cpu()
    started = time.perf_counter()
    value = action()
    wall = time.perf_counter() - started
    self_after, children_after = own_cpu()
    return Sample(wall, self_after - self_before, children_after - children_before), value


def median_sample(samples: Sequence[Sample]) -> Sample:
    return Sample(
        statistics.median(s.wall for s in samples),
        statistics.median(s.supervisor_cpu for s in samples),
        statistics.median(s.children_cpu for s in samples),
    )


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes on the machine have used since boot, or None if unknown."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(field) for field in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / CLOCK_TICKS


@contextmanager
def foreign_load(rows: list[tuple[str, str, str, str]]) -> Iterator[None]:
    """Append a row saying how much CPU other processes used while the block ran."""
    busy_before = machine_busy_seconds()
    own_before = sum(own_cpu())
    started = time.perf_counter()
    yield
    wall = time.perf_counter() - started
    busy_after = machine_busy_seconds()
    if busy_before is None or busy_after is None:
        return
    foreign = max(0.0, (busy_after - busy_before) - (sum(own_cpu()) - own_before))
    cores = os.cpu_count() or 1
    rows.append(
        (
            "CPU used by other processes meanwhile (noise)",
            f"{foreign:.1f} core-s ({foreign / (wall * cores):.0%} of machine)",
            "",
            "",
        )
    )


def quiet_run(source: str, inputs: Sequence[Any], cores: int) -> list[Any]:
    return run(source, inputs, cores=cores, on_console=None)


def check(condition: bool, what: str) -> None:
    """Stop with a message if a run computed the wrong thing (correctness, not timing)."""
    if not condition:
        sys.exit(f"bench_localexec: wrong results: {what}")


def startup(source: str, cores: int, samples: int, inputs: Sequence[Any] = (0,)) -> Sample:
    """Median of ``run()`` on ``inputs`` (by default one trivial input)."""
    return median_sample([timed(partial(quiet_run, source, inputs, cores))[0] for _ in range(samples)])


def write_node_driver(source: str, workdir: Path) -> Path:
    driver = workdir / "driver.js"
    driver.write_text(NODE_DRIVER_TEMPLATE.replace("__WORK_FUNCTION__", source), encoding="utf-8")
    return driver


def node_per_slice(node: str, driver: Path, inputs: Sequence[Any]) -> tuple[list[float], list[Any]]:
    """Seconds per slice in plain node, every input in one run of the driver, and the results."""
    data = driver.parent / "inputs.json"
    data.write_text(json.dumps(list(inputs)), encoding="utf-8")
    completed = subprocess.run(
        [node, str(driver), str(data)], capture_output=True, text=True, check=True, timeout=600
    )
    output = json.loads(completed.stdout)
    return [ms / 1e3 for ms in output["ms"]], output["results"]


@dataclass
class PairedRun:
    """Per-slice seconds in node and in our sandbox host, taken turn about, and both results."""

    node_seconds: list[float]
    host_seconds: list[float]
    node_results: list[Any]
    host_results: list[Any]


async def paired_per_slice(node: str, driver: Path, source: str, inputs: Sequence[Any]) -> PairedRun:
    """Run each input in a node process and on one sandbox host, alternating which goes first.

    Taking the two turn about puts both under the same conditions, which matters on a shared
    machine whose speed drifts by tens of percent from one second to the next. Our time is the
    round trip of a one-slice batch to the host, the path ``run(cores=1)`` takes for slow slices
    (the pool's batches stay at one slice), so host start-up is left out of it.
    """
    paired = PairedRun([], [], [], [])
    server = await asyncio.create_subprocess_exec(
        node, str(driver), "--serve", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert server.stdin is not None and server.stdout is not None
    stdin, stdout = server.stdin, server.stdout
    host = await SandboxHost.start(JobSpec(work_function=source, arguments=to_json([])), DEFAULT_MEMORY_MB)

    async def in_node(value: Any) -> None:
        stdin.write(json.dumps(value).encode() + b"\n")
        await stdin.drain()
        answer = json.loads(await stdout.readline())
        paired.node_seconds.append(answer["ms"] / 1e3)
        paired.node_results.append(answer["result"])

    async def in_host(number: int, value: Any) -> None:
        started = time.perf_counter()
        (report,) = await host.run([(number, to_json(value))], DEFAULT_SLICE_TIMEOUT_SECONDS)
        paired.host_seconds.append(time.perf_counter() - started)
        check(report["ok"], f"slice {number} failed in the sandbox: {report.get('error')}")
        paired.host_results.append(from_json(report["value"]))

    try:
        for number, value in enumerate(inputs, start=1):
            if number % 2:
                await in_node(value)
                await in_host(number, value)
            else:
                await in_host(number, value)
                await in_node(value)
    finally:
        await host.close()
        stdin.close()
        await server.wait()
    return paired


# ---- printing ----


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        right = (cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True))
        return "  ".join([first.ljust(widths[0]), *right]).rstrip()

    print(f"\n{title}")
    print(line(header))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print(line(row))


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.2f} µs"


def rate(slices: int, seconds: float) -> str:
    return f"{slices / seconds:,.0f}/s" if seconds > 0 else "n/a"


def runs_note(settings: Settings) -> str:
    return f"median of {settings.repeats}" if settings.repeats > 1 else "1 run"


def spread(samples: Sequence[float], settings: Settings) -> str:
    return f" (runs: {', '.join(f'{s:.2f}' for s in samples)} s)" if settings.repeats > 1 else ""


# ---- the three parts ----


def trivial_throughput(settings: Settings) -> None:
    n = settings.trivial_slices
    core_counts = (1, 2)
    rows: list[tuple[str, str, str, str]] = []
    with foreign_load(rows):
        starts = {
            cores: startup(TRIVIAL_WORK_FUNCTION, cores, settings.startup_samples) for cores in core_counts
        }
        # With one input only one host starts, whatever `cores` says. This is what starting both
        # sandboxes costs when no work overlaps the second start, for reading the figures.
        start_both = startup(TRIVIAL_WORK_FUNCTION, 2, settings.startup_samples, inputs=[0, 1])
        samples: dict[int, list[Sample]] = {cores: [] for cores in core_counts}
        expected = [x * x for x in range(n)]
        for _ in range(settings.repeats):
            for cores in core_counts:  # interleaved, so drift affects both alike
                sample, results = timed(partial(quiet_run, TRIVIAL_WORK_FUNCTION, range(n), cores))
                check(results == expected, f"trivial work function with cores={cores}")
                samples[cores].append(sample)
    total = {cores: median_sample(samples[cores]) for cores in core_counts}
    net = {cores: max(total[cores].wall - starts[cores].wall, 1e-9) for cores in core_counts}

    body: list[tuple[str, str, str, str]] = []
    for cores in core_counts:
        label = f"{cores} sandbox{'es' if cores > 1 else ''}"
        walls = [sample.wall for sample in samples[cores]]
        body += [
            (f"{label}: start-up, run() of 1 input", ms(starts[cores].wall), "", ""),
            (
                f"{label}: total, run() of {n:,} inputs",
                ms(total[cores].wall) + spread(walls, settings),
                "",
                "",
            ),
            (f"{label}: slices/s, raw", rate(n, total[cores].wall), "", ""),
            (f"{label}: slices/s, start-up excluded", rate(n, net[cores]), "", ""),
        ]
        if cores == 1:
            per_slice = net[cores] / n
            target = f"<= {OVERHEAD_TARGET_US:.0f} µs"
            ok = per_slice * 1e6 <= OVERHEAD_TARGET_US
            body.append((f"{label}: overhead per slice", us(per_slice), target, verdict(ok)))
        else:
            body.append((f"{label}: wall time per slice, start-up excluded", us(net[cores] / n), "", ""))
        # CPU adds up whether or not starts overlap work, so take out the start of every host.
        started_hosts = starts[1] if cores == 1 else start_both
        supervisor = (total[cores].supervisor_cpu - started_hosts.supervisor_cpu) / n
        hosts = (total[cores].children_cpu - started_hosts.children_cpu) / n
        body += [
            (f"{label}: CPU per slice, supervisor (this process)", us(supervisor), "", ""),
            (f"{label}: CPU per slice, sandbox hosts", us(hosts), "", ""),
        ]
    body.append(("start-up, run() of 2 inputs, 2 sandboxes (info)", ms(start_both.wall), "", ""))
    for how, ratio in (("start-up excluded", net[1] / net[2]), ("raw", total[1].wall / total[2].wall)):
        target = f">= {SCALING_TARGET}x"
        body.append(
            (f"throughput 2 / 1 sandboxes, {how}", f"{ratio:.2f}x", target, verdict(ratio >= SCALING_TARGET))
        )
    table(
        f"1. Trivial slices: {TRIVIAL_WORK_FUNCTION}  ({n:,} slices, {runs_note(settings)}; "
        f"start-up median of {settings.startup_samples})",
        ("measure", "value", "target", "status"),
        body + rows,
    )


def cpu_heavy(settings: Settings) -> None:
    node = shutil.which("node")
    if node is None:
        print("\n2. CPU-heavy work function: skipped, `node` is not on PATH")
        return
    inputs = CPU_INPUTS
    count = len(inputs)
    batch_node: list[float] = []  # per repetition: median seconds per slice
    paired_node: list[float] = []
    paired_host: list[float] = []
    paired_ratio: list[float] = []
    walls: dict[int, list[float]] = {1: [], 2: []}
    reference: list[Any] | None = None
    rows: list[tuple[str, str, str, str]] = []
    with foreign_load(rows), tempfile.TemporaryDirectory(prefix="bench-localexec-") as tmp:
        driver = write_node_driver(CPU_WORK_FUNCTION, Path(tmp))
        for _ in range(settings.repeats):
            seconds, node_results = node_per_slice(node, driver, inputs)
            batch_node.append(statistics.median(seconds))
            reference = node_results if reference is None else reference
            check(node_results == reference, f"node gave {node_results}, then {reference}")

            paired = asyncio.run(paired_per_slice(node, driver, CPU_WORK_FUNCTION, inputs))
            check(paired.node_results == reference, f"node gave {paired.node_results}, then {reference}")
            check(paired.host_results == reference, f"sandbox {paired.host_results} != node {reference}")
            paired_node.append(statistics.median(paired.node_seconds))
            paired_host.append(statistics.median(paired.host_seconds))
            pairs = zip(paired.host_seconds, paired.node_seconds, strict=True)
            paired_ratio.append(statistics.median(host / node for host, node in pairs))

            for cores in (1, 2):
                sample, results = timed(partial(quiet_run, CPU_WORK_FUNCTION, inputs, cores))
                check(results == reference, f"run(cores={cores}) {results} != node {reference}")
                walls[cores].append(sample.wall)
        start = startup(CPU_WORK_FUNCTION, 1, settings.startup_samples, inputs=[2]).wall
    node_batch = statistics.median(batch_node)
    node_median = statistics.median(paired_node)
    host_median = statistics.median(paired_host)
    wall = {cores: statistics.median(walls[cores]) for cores in walls}
    run_mean = (wall[1] - start) / count
    ratio = host_median / node_median
    body = [
        ("results identical (node, sandbox, run())", "yes", "", ""),
        ("node: median per slice, driver run alone", ms(node_batch), "", ""),
        ("node: median per slice, taking turns with ours", ms(node_median), "", ""),
        ("ours: median per slice, taking turns with node", ms(host_median), "", ""),
        (
            "ratio ours / node (medians, taking turns)",
            f"{ratio:.3f}",
            f"<= {NODE_RATIO_TARGET:.2f}",
            verdict(ratio <= NODE_RATIO_TARGET),
        ),
        (
            "ratio ours / node, median of per-slice ratios (info)",
            f"{statistics.median(paired_ratio):.3f}",
            "",
            "",
        ),
        ("ratio ours / node driver run alone (info)", f"{host_median / node_batch:.3f}", "", ""),
        ("ours: run() start-up (1 tiny input)", ms(start), "", ""),
        (f"ours: run(cores=1) total, {count} slices", ms(wall[1]) + spread(walls[1], settings), "", ""),
        ("ours: run(cores=1) mean per slice, start-up excluded", ms(run_mean), "", ""),
        ("ratio run(cores=1) mean / node driver alone (info)", f"{run_mean / node_batch:.3f}", "", ""),
        (f"ours: run(cores=2) total, {count} slices", ms(wall[2]) + spread(walls[2], settings), "", ""),
        ("speed-up run(cores=2) vs run(cores=1), raw", f"{wall[1] / wall[2]:.2f}x", "ideal 2.00x", ""),
    ]
    if wall[2] > start:
        speedup = (wall[1] - start) / (wall[2] - start)
        body.append(("speed-up, start-up excluded", f"{speedup:.2f}x", "ideal 2.00x", ""))
    table(
        f"2. CPU-heavy work function: countPrimesBelow(bound), bounds {inputs[0]:,}..{inputs[-1]:,} "
        f"({count} slices, {runs_note(settings)})",
        ("measure", "value", "target", "status"),
        body + rows,
    )


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> None:
    from py_mini_racer import MiniRacer

    racer = MiniRacer()
    try:
        racer_v8 = str(racer.v8_version)
    finally:
        racer.close()
    node = shutil.which("node")
    node_v8 = "node not found"
    if node is not None:
        node_v8 = subprocess.run(
            [node, "-p", "process.version + ' / V8 ' + process.versions.v8"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    table(
        "3. Machine and engines",
        ("item", "value"),
        [
            ("cores (os.cpu_count)", str(os.cpu_count())),
            ("cores usable by this process", str(usable)),
            ("cpu", cpu_model()),
            ("load average (1, 5, 15 min)", ", ".join(f"{load:.2f}" for load in os.getloadavg())),
            ("python", platform.python_version()),
            ("mini-racer V8", racer_v8),
            ("node / node V8", node_v8),
        ],
    )


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_settings(argv)
    mode = "quick" if settings.repeats == 1 else "full"
    print(f"bench_localexec ({mode}): dcp_worker.localexec.run, V8 sandboxes in sandbox-host subprocesses")
    started = time.perf_counter()
    trivial_throughput(settings)
    cpu_heavy(settings)
    environment()
    print(f"\n(benchmark took {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
