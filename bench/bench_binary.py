"""The single-file build against the pip-installed worker: size, start-up, the example job.

Usage: ``.venv/bin/python bench/bench_binary.py [--runs N]`` after ``tools/build-binary``.

- size: ``dist/dcp-worker``, and what it unpacks to;
- cold start of ``dcp-worker --version``: the binary with an empty cache folder (it unpacks
  itself), Python with an empty bytecode cache (it compiles every module it imports);
- warm start of ``--version``, and of ``--help`` (which loads the whole CLI), caches in place;
- the example job (``localexec examples/collatz.js examples/collatz-input.json``), warm.

Each figure is the median of ``--runs`` runs (default 5; 3 for cold starts). The Python
figures are for the project's ``.venv`` (``pip install -e .``), run through its
``dcp-worker`` script.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "dist" / "dcp-worker"
PYTHON_SCRIPT = Path(sys.executable).parent / "dcp-worker"
EXAMPLES = ROOT / "examples"
EXAMPLE_JOB = ("localexec", str(EXAMPLES / "collatz.js"), str(EXAMPLES / "collatz-input.json"))


def timed(command: list[str], environment: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


class Flavour:
    """One way of running dcp-worker, with a home and cache of its own."""

    def __init__(self, command: Path, scratch: Path, name: str) -> None:
        self.command = str(command)
        self.home = scratch / name
        self.home.mkdir()

    def environment(self, cold: bool) -> dict[str, str]:
        """Cold: a cache folder that was never used (the binary's unpack folder, Python's bytecode)."""
        cache = Path(tempfile.mkdtemp(dir=self.home)) if cold else self.home / "cache"
        return {
            "HOME": str(self.home),
            "XDG_CACHE_HOME": str(cache),
            "PYTHONPYCACHEPREFIX": str(cache / "pycache"),
        }

    def run(self, cold: bool, *args: str) -> float:
        return timed([self.command, *args], self.environment(cold))

    def median(self, runs: int, cold: bool, *args: str) -> float:
        return statistics.median(self.run(cold, *args) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    if not BINARY.exists():
        sys.exit(f"bench_binary: {BINARY} is missing: run tools/build-binary first")
    with tempfile.TemporaryDirectory() as scratch:
        binary = Flavour(BINARY, Path(scratch), "binary")
        python = Flavour(PYTHON_SCRIPT, Path(scratch), "python")
        rows: list[tuple[str, float, float, str]] = []
        for flavour in (binary, python):
            flavour.run(False, "--version")  # fills the warm cache
        cold_runs = max(1, min(runs, 3))
        for label, cold, args, count in [
            ("cold start, --version", True, ("--version",), cold_runs),
            ("warm start, --version", False, ("--version",), runs),
            ("warm start, --help (whole CLI)", False, ("--help",), runs),
            ("example job (localexec collatz, 6 slices)", False, EXAMPLE_JOB, runs),
        ]:
            figures = [flavour.median(count, cold, *args) for flavour in (binary, python)]
            rows.append((label, figures[0], figures[1], "s"))
        unpacked = next((binary.home / "cache" / "dcp-worker").iterdir())
        size, unpacked_size = BINARY.stat().st_size / 1e6, folder_size(unpacked) / 1e6
        print(f"binary: {size:.1f} MB ({BINARY}), unpacked {unpacked_size:.0f} MB in {unpacked}")
        print(f"{'measure':<44} {'binary':>9} {'python':>9} {'binary/python':>14}")
        for label, ours, theirs, unit in rows:
            print(f"{label:<44} {ours:>8.3f}{unit} {theirs:>8.3f}{unit} {ours / theirs:>14.2f}")


if __name__ == "__main__":
    main()
