"""Benchmark ``dcp_worker.kvin`` against ``kvin@9.0.0`` in node on the same payloads.

Run from the project root, after ``tools/test`` has installed the npm peers::

    .venv/bin/python bench/bench_kvin.py [--quick] [--node-timeout SECONDS]

Strings come twice: ASCII, and a mix of Latin-1 and CJK characters, which Python holds in two
bytes a character and JSON carries in UTF-8, so that each direction pays a transcoding node does
not. For each payload it times serialize and deserialize here (compiled codec and pure twin) and in
node with kvin@9, prints the ratio, and for the arrays of small objects how time grows with
size. kvin@9's serializer grows much faster than linearly; node runs that do not finish within
the timeout are reported as such. Nothing is asserted about timing; results are checked.
"""

from __future__ import annotations

import argparse
import array
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from dcp_worker import kvin

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "tests" / "node" / "node_modules"
IMPLEMENTATIONS = {
    "compiled": "dcp_worker.sandbox_ext._kvin_codec",
    "pure": "dcp_worker.sandbox_ext.kvin_codec",
}

# Builds the same payload in node as payload() does in Python, then times kvin on it.
NODE_SCRIPT = r"""
const kvin = require('kvin');
const [kind, size, repeats] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
function payload() {
  if (kind === 'float64') {
    const a = new Float64Array(size);
    for (let i = 0; i < size; i++) a[i] = i * 0.5 + 0.25;
    return a;
  }
  if (kind === 'string') return 'x\u00e9\u4e2d'.repeat(Math.floor(size / 3));
  if (kind === 'ascii') return 'abc'.repeat(Math.floor(size / 3));
  const out = [];
  for (let i = 0; i < size; i++) out.push({ id: i, name: 'name' + i, score: i / 7, tags: ['x', 'y'] });
  return out;
}
const value = payload();
const timings = { serialize: [], deserialize: [] };
let text;
for (let r = 0; r < repeats; r++) {
  let t = process.hrtime.bigint();
  text = kvin.serialize(value);
  timings.serialize.push(Number(process.hrtime.bigint() - t) / 1e6);
  t = process.hrtime.bigint();
  kvin.deserialize(text);
  timings.deserialize.push(Number(process.hrtime.bigint() - t) / 1e6);
}
console.log(JSON.stringify({ timings, length: text.length }));
"""


def payload(kind: str, size: int) -> Any:
    if kind == "float64":
        return array.array("d", (i * 0.5 + 0.25 for i in range(size)))
    if kind == "string":
        return "x\u00e9\u4e2d" * (size // 3)
    if kind == "ascii":
        return "abc" * (size // 3)
    return [{"id": i, "name": f"name{i}", "score": i / 7, "tags": ["x", "y"]} for i in range(size)]


def timed_ms(action: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    samples, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), result


def ours(codec: ModuleType, value: Any, repeats: int) -> tuple[float, float]:
    """dcp_worker.kvin's public functions, running on ``codec``."""
    kvin._codec = codec
    serialize_ms, text = timed_ms(lambda: kvin.serialize(value), repeats)
    deserialize_ms, back = timed_ms(lambda: kvin.deserialize(text), repeats)
    if back != value:
        raise SystemExit(f"{codec.__name__} did not read back what it wrote")
    return serialize_ms, deserialize_ms


def node(script: Path, kind: str, size: int, repeats: int, timeout: float) -> tuple[float, float] | None:
    try:
        finished = subprocess.run(
            ["node", str(script), kind, str(size), str(repeats)],
            capture_output=True, text=True, timeout=timeout, check=True,
            env={"NODE_PATH": str(NODE_MODULES), "PATH": "/usr/local/bin:/usr/bin:/bin"},
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    timings = json.loads(finished.stdout)["timings"]
    return statistics.median(timings["serialize"]), statistics.median(timings["deserialize"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller payloads, one repeat")
    parser.add_argument("--node-timeout", type=float, default=120.0, help="seconds per node run")
    options = parser.parse_args(argv)
    if not (NODE_MODULES / "kvin").is_dir():
        raise SystemExit("kvin@9 is not installed: run tools/test (or npm ci --prefix tests/node)")
    repeats = 1 if options.quick else 3
    cases = [
        ("float64", 100_000 if options.quick else 1_000_000),
        ("ascii", 1_000_000),
        ("string", 1_000_000),
    ]
    cases += [("objects", n) for n in ((1_000, 10_000) if options.quick else (1_000, 10_000, 100_000))]
    codecs = {name: importlib.import_module(module) for name, module in IMPLEMENTATIONS.items()}
    mode = "quick" if options.quick else "full"
    print(f"dcp_worker.kvin against kvin@9 in node ({mode}; median of {repeats})")
    columns = ("node ser/deser ms", 22), ("compiled ser/deser ms", 24), ("pure ser/deser ms", 20)
    header = "".join(f"{title:>{width}}" for title, width in columns)
    print(f"{'payload':<22}{header}{'node/compiled':>16}")
    with tempfile.TemporaryDirectory() as workdir:
        script = Path(workdir) / "kvin_bench.js"
        script.write_text(NODE_SCRIPT)
        per_object: dict[str, list[tuple[int, float]]] = {name: [] for name in codecs}
        for kind, size in cases:
            value = payload(kind, size)
            mine = {name: ours(codec, value, repeats) for name, codec in codecs.items()}
            theirs = node(script, kind, size, repeats, options.node_timeout)
            label = f"{kind} {size:,}"
            node_text = "did not finish" if theirs is None else f"{theirs[0]:.1f} / {theirs[1]:.1f}"
            ratio = "" if theirs is None else f"{sum(theirs) / sum(mine['compiled']):.1f}x"
            figures = [f"{serialize:.1f} / {deserialize:.1f}" for serialize, deserialize in mine.values()]
            print(f"{label:<22}{node_text:>22}{figures[0]:>24}{figures[1]:>20}{ratio:>16}")
            if kind == "objects":
                for name, (serialize_ms, deserialize_ms) in mine.items():
                    per_object[name].append((size, (serialize_ms + deserialize_ms) * 1000 / size))
    for name, rows in per_object.items():
        growth = ", ".join(f"{size:,}: {micros:.2f} µs" for size, micros in rows)
        print(f"{name}: serialize+deserialize per object ({growth})")
    print(f"targets: float64 and string no slower than node; objects linear, faster than node at 10,000, "
          f"100,000 under 1 s; python {sys.version.split()[0]}")  # fmt: skip


if __name__ == "__main__":
    main()
