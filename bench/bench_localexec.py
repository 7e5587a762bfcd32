"""Benchmark ``dcp_worker.localexec.run``: per-slice overhead, scaling, and speed against plain node.

Run from the project root::

    .venv/bin/python bench/bench_localexec.py [--quick]

Four parts, each printed as a table:

1. Trivial slices (``x => { progress(); return x * x; }``) with one and two sandboxes: wall time
   of ``run()``, the fixed start-up cost (``run()`` of as many inputs as there are sandboxes,
   since a run starts all its hosts together), slices per second, overhead per slice once
   start-up is taken out, how two sandboxes compare with one, and how the CPU time splits
   between this (supervisor) process and the sandbox hosts.
2. Light slices: the same figures for a work function that does a few tens of microseconds of
   real work per slice (a numeric loop seeded by the input), the case where the pool's own
   per-slice cost no longer dominates.
3. CPU-bound work functions (prime counting, Mandelbrot escape counts, sorting a typed array,
   churning objects and strings through a Map) run in plain ``node`` and in our sandboxes, taking
   turns: median time per slice in each and their ratio, kernel by kernel; for prime counting
   also ``run()`` with one and two sandboxes.
4. The machine and engines: core count, mini-racer's V8 and node's V8.

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

from dcp_worker.localexec import run
from dcp_worker.sandbox.limits import DEFAULT_MEMORY_MB, DEFAULT_SLICE_TIMEOUT_SECONDS
from dcp_worker.supervisor.batch import SliceBatch
from dcp_worker.supervisor.host_process import SandboxHost
from dcp_worker.supervisor.job import JobSpec
from dcp_worker.supervisor.outcomes import batch_outcome
from dcp_worker.tagged_json import from_json, to_json

TRIVIAL_WORK_FUNCTION = "x => { progress(); return x * x; }"

# A few tens of microseconds per slice once optimised (about 26 µs in node 20 and in mini-racer
# on a current x86 server core), with only locals in the hot loop. Every step is exact below
# 2**53 before `| 0` wraps it to 32 bits, so each variable is affine in the seed modulo 2**32
# and light_expected() can compose the steps once and answer for any seed at once. (A `%` in
# the loop would do as well in node but runs several times slower in mini-racer's V8.)
LIGHT_MULTIPLIER = 1103
LIGHT_INCREMENT = 12345
LIGHT_MIX = 31
LIGHT_ITERATIONS = 20_000
LIGHT_WORK_FUNCTION = f"""function lightSlice(seed) {{
  let x = seed | 0;
  let y = 0;
  for (let i = 0; i < {LIGHT_ITERATIONS}; i++) {{
    x = (x * {LIGHT_MULTIPLIER} + {LIGHT_INCREMENT}) | 0;
    y = (y * {LIGHT_MIX} + x) | 0;
  }}
  progress();
  return y;
}}"""

# The CPU-bound kernels: deterministic, each about 0.35-0.45 s per slice in node 20 on a current
# x86 server core, each calling progress() once, after its work.

# Integer arithmetic and branches; the hot loop touches only locals.
PRIMES_WORK_FUNCTION = """function countPrimesBelow(bound) {
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

# Floating point: escape counts over a size x size grid. JavaScript rounds every operation
# (no fused multiply-add), so both engines must count alike.
MANDELBROT_WORK_FUNCTION = """function mandelbrotEscapes(size) {
  const maxIterations = 256;
  let total = 0;
  for (let row = 0; row < size; row++) {
    const ci = -1.25 + (2.5 * row) / size;
    for (let column = 0; column < size; column++) {
      const cr = -2.1 + (2.7 * column) / size;
      let zr = 0;
      let zi = 0;
      let n = 0;
      while (n < maxIterations && zr * zr + zi * zi <= 4) {
        const t = zr * zr - zi * zi + cr;
        zi = 2 * zr * zi + ci;
        zr = t;
        n++;
      }
      total += n;
    }
  }
  progress(1);
  return total;
}"""

# Typed arrays and a built-in: fill a million doubles from xorshift32, sort them, three times.
SORT_WORK_FUNCTION = """function sortFloat64(seed) {
  const length = 1 << 20;
  const values = new Float64Array(length);
  let x = seed | 0 || 1;
  let checksum = 0;
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      values[i] = x / 4294967296;
    }
    values.sort();
    for (let i = 0; i < length; i += 4096) checksum = (checksum * 31 + ((values[i] * 1e9) | 0)) | 0;
  }
  progress(1);
  return checksum;
}"""

# Allocation: short-lived strings and objects churned through a Map of about 40,000 entries.
MAP_WORK_FUNCTION = """function mapChurn(seed) {
  const entries = new Map();
  let x = seed | 0 || 1;
  for (let i = 0; i < 700000; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const key = 'k' + ((x >>> 0) % 40000);
    const entry = entries.get(key);
    if (entry === undefined) {
      entries.set(key, { hits: 1, last: key + ':' + i });
    } else if (entry.hits === 30) {
      entries.delete(key);
    } else {
      entry.hits++;
      entry.last = key + ':' + i;
    }
  }
  let checksum = 0;
  for (const [key, entry] of entries) {
    checksum = (checksum * 31 + entry.hits * key.length + entry.last.length) | 0;
  }
  progress(1);
  return entries.size + ':' + checksum;
}"""


@dataclass(frozen=True)
class Kernel:
    name: str
    source: str
    inputs: tuple[Any, ...]
    inputs_note: str


PRIMES_INPUTS = tuple(2_000_000 + 1_000 * k for k in range(6))
PRIMES = Kernel(
    "countPrimesBelow",
    PRIMES_WORK_FUNCTION,
    PRIMES_INPUTS,
    f"bounds {PRIMES_INPUTS[0]:,}..{PRIMES_INPUTS[-1]:,}",
)
KERNELS = (
    PRIMES,
    Kernel("mandelbrotEscapes", MANDELBROT_WORK_FUNCTION, tuple(range(1400, 1406)), "grids 1400²..1405²"),
    Kernel("sortFloat64", SORT_WORK_FUNCTION, tuple(range(1, 7)), "3 x 2²⁰ doubles, seeds 1..6"),
    Kernel("mapChurn", MAP_WORK_FUNCTION, tuple(range(1, 7)), "700,000 Map updates, seeds 1..6"),
)

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
CORE_COUNTS = (1, 2)


@dataclass(frozen=True)
class Settings:
    trivial_slices: int
    light_slices: int
    repeats: int
    startup_samples: int


def parse_settings(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="200,000 trivial and 30,000 light slices, one repetition instead of three",
    )
    options = parser.parse_args(argv)
    if options.quick:
        return Settings(trivial_slices=200_000, light_slices=30_000, repeats=1, startup_samples=3)
    return Settings(trivial_slices=2_000_000, light_slices=100_000, repeats=3, startup_samples=5)


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


def startup(source: str, cores: int, samples: int, inputs: Sequence[Any]) -> Sample:
    """Median of ``run()`` on ``inputs``, meant to be one quick input per sandbox: the run starts
    that many hosts together, so this is the fixed cost of a run with ``cores`` sandboxes."""
    return median_sample([timed(partial(quiet_run, source, inputs, cores))[0] for _ in range(samples)])


def light_expected(seeds: Sequence[int]) -> list[int]:
    """What LIGHT_WORK_FUNCTION returns for each seed (each in 0 <= seed < 2**31).

    Both loop variables are affine in the seed modulo 2**32: x = ax * seed + bx and
    y = ay * seed + by. Composing the loop's steps once gives every slice's answer in O(1);
    JavaScript's `| 0` reads the low 32 bits as a signed integer.
    """
    mask, a, c, mix = 0xFFFF_FFFF, LIGHT_MULTIPLIER, LIGHT_INCREMENT, LIGHT_MIX
    ax, bx, ay, by = 1, 0, 0, 0
    for _ in range(LIGHT_ITERATIONS):
        ax, bx = a * ax & mask, (a * bx + c) & mask
        ay, by = (mix * ay + ax) & mask, (mix * by + bx) & mask
    unsigned = ((ay * seed + by) & mask for seed in seeds)
    return [value - (1 << 32) if value >> 31 else value for value in unsigned]


@dataclass(frozen=True)
class Scaling:
    """``run()`` of n slices with one and with two sandboxes, and each one's start-up."""

    slices: int
    starts: dict[int, Sample]
    samples: dict[int, list[Sample]]

    def total(self, cores: int) -> Sample:
        return median_sample(self.samples[cores])

    def net_wall(self, cores: int) -> float:
        return max(self.total(cores).wall - self.starts[cores].wall, 1e-9)

    def net_cpu(self, cores: int) -> tuple[float, float]:
        """CPU seconds of the supervisor and of the hosts, start-up taken out."""
        total, start = self.total(cores), self.starts[cores]
        return total.supervisor_cpu - start.supervisor_cpu, total.children_cpu - start.children_cpu


def measure_scaling(source: str, expected: Sequence[Any], settings: Settings) -> Scaling:
    n = len(expected)
    starts = {
        cores: startup(source, cores, settings.startup_samples, list(range(cores))) for cores in CORE_COUNTS
    }
    samples: dict[int, list[Sample]] = {cores: [] for cores in CORE_COUNTS}
    for _ in range(settings.repeats):
        for cores in CORE_COUNTS:  # interleaved, so drift affects both alike
            sample, results = timed(partial(quiet_run, source, range(n), cores))
            check(results == expected, f"{source[:40]!r}... with cores={cores}")
            samples[cores].append(sample)
    return Scaling(n, starts, samples)


def scaling_rows(scaling: Scaling, settings: Settings, *, overhead_target: bool) -> list[tuple[str, ...]]:
    n = scaling.slices
    body: list[tuple[str, ...]] = []
    for cores in CORE_COUNTS:
        label = f"{cores} sandbox{'es' if cores > 1 else ''}"
        inputs = f"{cores} input{'s' if cores > 1 else ''}"
        total, net = scaling.total(cores), scaling.net_wall(cores)
        walls = [sample.wall for sample in scaling.samples[cores]]
        body += [
            (f"{label}: start-up, run() of {inputs}", ms(scaling.starts[cores].wall), "", ""),
            (f"{label}: total, run() of {n:,} inputs", ms(total.wall) + spread(walls, settings), "", ""),
            (f"{label}: slices/s, raw", rate(n, total.wall), "", ""),
            (f"{label}: slices/s, start-up excluded", rate(n, net), "", ""),
        ]
        if overhead_target and cores == 1:
            per_slice = net / n
            target = f"<= {OVERHEAD_TARGET_US:.0f} µs"
            ok = per_slice * 1e6 <= OVERHEAD_TARGET_US
            body.append((f"{label}: overhead per slice", us(per_slice), target, verdict(ok)))
        else:
            body.append((f"{label}: wall time per slice, start-up excluded", us(net / n), "", ""))
        supervisor, hosts = scaling.net_cpu(cores)
        body += [
            (f"{label}: CPU per slice, supervisor (this process)", us(supervisor / n), "", ""),
            (f"{label}: CPU per slice, sandbox hosts", us(hosts / n), "", ""),
            (
                f"{label}: cores busy, supervisor + hosts, start-up excluded",
                f"{supervisor / net:.2f} + {hosts / net:.2f} = {(supervisor + hosts) / net:.2f}",
                "",
                "",
            ),
        ]
    net_ratio = scaling.net_wall(1) / scaling.net_wall(2)
    raw_ratio = scaling.total(1).wall / scaling.total(2).wall
    for how, ratio in (("start-up excluded", net_ratio), ("raw", raw_ratio)):
        target = f">= {SCALING_TARGET}x"
        body.append(
            (f"throughput 2 / 1 sandboxes, {how}", f"{ratio:.2f}x", target, verdict(ratio >= SCALING_TARGET))
        )
    return body


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
    (the pool sends them one to a batch, with no second batch queued), so host start-up is left
    out of it.
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
        batch = SliceBatch(range(number, number + 1), [to_json(value)])
        message = batch.to_json()
        started = time.perf_counter()
        host.send_batch(message)
        report = await host.batch_report(DEFAULT_SLICE_TIMEOUT_SECONDS)
        paired.host_seconds.append(time.perf_counter() - started)
        (outcome,) = batch_outcome(batch.numbers, report, DEFAULT_MEMORY_MB)
        check(outcome.error is None, f"slice {number} failed in the sandbox: {outcome.error}")
        check(outcome.called_progress and not outcome.console, f"slice {number} ran oddly: {report}")
        paired.host_results.append(from_json(outcome.value))

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


@dataclass
class KernelFigures:
    """Per repetition: median seconds per slice in node and in ours, taking turns, and the median
    of the per-slice ratios ours / node."""

    node: list[float]
    host: list[float]
    ratio: list[float]

    def medians(self) -> tuple[float, float]:
        return statistics.median(self.node), statistics.median(self.host)


def measure_kernel(node: str, driver: Path, kernel: Kernel, figures: KernelFigures) -> list[Any]:
    """One repetition of the paired measurement; returns the results, checked to agree."""
    paired = asyncio.run(paired_per_slice(node, driver, kernel.source, kernel.inputs))
    check(
        paired.host_results == paired.node_results,
        f"{kernel.name}: sandbox {paired.host_results} != node {paired.node_results}",
    )
    figures.node.append(statistics.median(paired.node_seconds))
    figures.host.append(statistics.median(paired.host_seconds))
    pairs = zip(paired.host_seconds, paired.node_seconds, strict=True)
    figures.ratio.append(statistics.median(host / node for host, node in pairs))
    return paired.host_results


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


# ---- the four parts ----


def trivial_throughput(settings: Settings) -> None:
    n = settings.trivial_slices
    rows: list[tuple[str, str, str, str]] = []
    with foreign_load(rows):
        scaling = measure_scaling(TRIVIAL_WORK_FUNCTION, [x * x for x in range(n)], settings)
    table(
        f"1. Trivial slices: {TRIVIAL_WORK_FUNCTION}  ({n:,} slices, {runs_note(settings)}; "
        f"start-up median of {settings.startup_samples})",
        ("measure", "value", "target", "status"),
        [*scaling_rows(scaling, settings, overhead_target=True), *rows],
    )


def light_throughput(settings: Settings) -> None:
    n = settings.light_slices
    rows: list[tuple[str, str, str, str]] = []
    with foreign_load(rows):
        scaling = measure_scaling(LIGHT_WORK_FUNCTION, light_expected(range(n)), settings)
    table(
        f"2. Light slices: lightSlice(seed), {LIGHT_ITERATIONS:,} steps of a 32-bit recurrence "
        f"({n:,} slices, {runs_note(settings)}; start-up median of {settings.startup_samples})",
        ("measure", "value", "target", "status"),
        [*scaling_rows(scaling, settings, overhead_target=False), *rows],
    )


def cpu_heavy(settings: Settings) -> None:
    node = shutil.which("node")
    if node is None:
        print("\n3. CPU-heavy work functions: skipped, `node` is not on PATH")
        return
    figures = {kernel.name: KernelFigures([], [], []) for kernel in KERNELS}
    reference: dict[str, list[Any]] = {}
    batch_node: list[float] = []  # prime counting, per repetition: median seconds per slice
    walls: dict[int, list[float]] = {cores: [] for cores in CORE_COUNTS}
    rows: list[tuple[str, str, str, str]] = []
    with foreign_load(rows), tempfile.TemporaryDirectory(prefix="bench-localexec-") as tmp:
        drivers = {}
        for kernel in KERNELS:
            workdir = Path(tmp) / kernel.name
            workdir.mkdir()
            drivers[kernel.name] = write_node_driver(kernel.source, workdir)
        for _ in range(settings.repeats):
            for kernel in KERNELS:
                results = measure_kernel(node, drivers[kernel.name], kernel, figures[kernel.name])
                expected = reference.setdefault(kernel.name, results)
                check(results == expected, f"{kernel.name} gave {expected}, then {results}")

            seconds, node_results = node_per_slice(node, drivers[PRIMES.name], PRIMES.inputs)
            batch_node.append(statistics.median(seconds))
            check(node_results == reference[PRIMES.name], f"node driver alone gave {node_results}")
            for cores in CORE_COUNTS:
                sample, results = timed(partial(quiet_run, PRIMES.source, PRIMES.inputs, cores))
                check(results == reference[PRIMES.name], f"run(cores={cores}) gave {results}")
                walls[cores].append(sample.wall)
        # Bound 2: the smallest input the kernel takes, so this is start-up alone.
        start = {
            cores: startup(PRIMES.source, cores, settings.startup_samples, [2] * cores).wall
            for cores in CORE_COUNTS
        }

    body: list[tuple[str, str, str, str]] = [
        ("results identical (node, sandbox), every kernel and run", "yes", "", "")
    ]
    for kernel in KERNELS:
        node_median, host_median = figures[kernel.name].medians()
        ratio = host_median / node_median
        body.append(
            (
                f"{kernel.name}: ours / node ({ms(host_median)} / {ms(node_median)} per slice)",
                f"{ratio:.3f}",
                f"<= {NODE_RATIO_TARGET:.2f}",
                verdict(ratio <= NODE_RATIO_TARGET),
            )
        )
    for kernel in KERNELS:
        body.append(
            (
                f"{kernel.name}: median of per-slice ratios (info)",
                f"{statistics.median(figures[kernel.name].ratio):.3f}",
                "",
                "",
            )
        )

    count = len(PRIMES.inputs)
    node_batch = statistics.median(batch_node)
    node_median, host_median = figures[PRIMES.name].medians()
    wall = {cores: statistics.median(walls[cores]) for cores in walls}
    run_mean = (wall[1] - start[1]) / count
    ratio = host_median / node_median
    body += [
        ("countPrimesBelow in detail:", "", "", ""),
        ("node: median per slice, driver run alone", ms(node_batch), "", ""),
        ("node: median per slice, taking turns with ours", ms(node_median), "", ""),
        ("ours: median per slice, taking turns with node", ms(host_median), "", ""),
        (
            "ratio ours / node (medians, taking turns)",
            f"{ratio:.3f}",
            f"<= {NODE_RATIO_TARGET:.2f}",
            verdict(ratio <= NODE_RATIO_TARGET),
        ),
        ("ratio ours / node driver run alone (info)", f"{host_median / node_batch:.3f}", "", ""),
        ("ours: run() start-up, 1 sandbox (1 tiny input)", ms(start[1]), "", ""),
        ("ours: run() start-up, 2 sandboxes (2 tiny inputs)", ms(start[2]), "", ""),
        (f"ours: run(cores=1) total, {count} slices", ms(wall[1]) + spread(walls[1], settings), "", ""),
        ("ours: run(cores=1) mean per slice, start-up excluded", ms(run_mean), "", ""),
        ("ratio run(cores=1) mean / node driver alone (info)", f"{run_mean / node_batch:.3f}", "", ""),
        (f"ours: run(cores=2) total, {count} slices", ms(wall[2]) + spread(walls[2], settings), "", ""),
        ("speed-up run(cores=2) vs run(cores=1), raw", f"{wall[1] / wall[2]:.2f}x", "ideal 2.00x", ""),
    ]
    if wall[2] > start[2]:
        speedup = (wall[1] - start[1]) / (wall[2] - start[2])
        body.append(("speed-up, start-up excluded", f"{speedup:.2f}x", "ideal 2.00x", ""))
    notes = "; ".join(f"{kernel.name}: {kernel.inputs_note}" for kernel in KERNELS)
    table(
        f"3. CPU-heavy work functions, ours against plain node, taking turns "
        f"({len(KERNELS)} kernels x {count} slices, {runs_note(settings)})\n   {notes}",
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
        "4. Machine and engines",
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
    light_throughput(settings)
    cpu_heavy(settings)
    environment()
    print(f"\n(benchmark took {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
