"""Builds ``dist/dcp-worker_<version>_<arch>.deb`` around ``dist/dcp-worker``, with ``dpkg-deb``.

Run through ``tools/build-deb``. The package installs the binary as ``/usr/bin/dcp-worker``, the
systemd unit, a commented default ``/etc/dcp-worker/config.toml`` (a conffile: upgrades keep the
operator's edits) and a man page made from the binary's ``--help``; its maintainer scripts make
the ``dcp`` system user and, on purge, remove it with its state and cache folders.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import build_binary

ROOT = build_binary.ROOT
PACKAGING = ROOT / "packaging"
STAGING = build_binary.WORK / "deb"
STATE_DIR = "/var/lib/dcp-worker"
CACHE_DIR = "/var/cache/dcp-worker"
CONFIG = "/etc/dcp-worker/config.toml"
UNIT = "/lib/systemd/system/dcp-worker.service"
MAINTAINER = "dcp-worker (Python) developers <dcp-worker@localhost>"
SUMMARY = "DCP worker: runs DCP work functions in locked-down V8 sandboxes"
DESCRIPTION = """\
 A worker for the Distributive Compute Platform: it runs DCP work functions
 (untrusted JavaScript and WebAssembly) in V8 sandboxes, each in a process of
 its own, for a DCP scheduler or, with `dcp-worker localexec`, on this machine.
 One self-contained executable: no Python or Node.js is needed.
"""
COMMANDS = (("localexec",), ("keys", "new"), ("keys", "show"))

POSTINST = f"""#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if ! getent group dcp >/dev/null; then
        groupadd --system dcp
    fi
    if ! getent passwd dcp >/dev/null; then
        useradd --system --gid dcp --home-dir {STATE_DIR} --no-create-home \\
            --shell /usr/sbin/nologin --comment "DCP worker" dcp
    fi
    install -d -o dcp -g dcp -m 0750 {STATE_DIR} {CACHE_DIR}
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
        systemctl try-restart dcp-worker.service || true
    fi
fi
"""
PRERM = """#!/bin/sh
set -e
if [ "$1" = remove ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop dcp-worker.service || true
    fi
    if command -v systemctl >/dev/null; then
        systemctl --no-reload disable dcp-worker.service >/dev/null 2>&1 || true
    fi
fi
"""
POSTRM = f"""#!/bin/sh
set -e
if [ "$1" = purge ]; then
    rm -rf {STATE_DIR} {CACHE_DIR}
    # Only the user this package made (its home is the package's state folder).
    if [ "$(getent passwd dcp | cut -d: -f6)" = {STATE_DIR} ]; then
        userdel dcp || true
    fi
    if getent group dcp >/dev/null && [ -z "$(getent group dcp | cut -d: -f4)" ]; then
        groupdel dcp 2>/dev/null || true
    fi
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
"""
COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: dcp-worker (Python)

Files: *
License: MIT

Comment: /usr/bin/dcp-worker is a Nuitka onefile build. Besides this project it contains
 CPython 3.11 (PSF-2.0), V8 through mini-racer (BSD-3-Clause, MIT), the Python packages
 the worker depends on (aiohttp, coincurve/libsecp256k1, orjson, pycryptodome,
 python-socketio, typer and their dependencies, each under its own licence) and
 Nuitka's runtime (AGPL-3.0 with the Nuitka Runtime Library Exception).
"""


def architecture() -> str:
    answer = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True)
    return answer.stdout.strip()


def help_text(binary: Path, *command: str) -> str:
    """``dcp-worker COMMAND --help``, as a user with nothing set up would see it, 80 columns wide."""
    with tempfile.TemporaryDirectory() as home:
        result = subprocess.run(
            [str(binary), *command, "--help"],
            capture_output=True,
            text=True,
            env={"HOME": home, "COLUMNS": "80"},
            check=True,
        )
    return result.stdout


def troff_verbatim(text: str) -> str:
    lines = []
    for line in text.rstrip("\n").splitlines():
        line = line.replace("\\", "\\e")
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return ".nf\n" + "\n".join(lines) + "\n.fi\n"


def man_page(binary: Path, version: str) -> str:
    sections = [
        f'.TH DCP-WORKER 1 "" "dcp-worker {version}" "User Commands"',
        ".SH NAME",
        "dcp-worker \\- " + SUMMARY.partition(": ")[2],
        ".SH SYNOPSIS",
        ".B dcp-worker\n[\\fIOPTIONS\\fR]\n.br",
        ".B dcp-worker localexec\n\\fIWORK_FUNCTION_FILE\\fR [\\fIINPUT_FILE\\fR] [\\fIOPTIONS\\fR]\n.br",
        ".B dcp-worker keys\n\\fBnew\\fR|\\fBshow\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        "Without a command, \\fBdcp-worker\\fR works for a DCP scheduler: it fetches slices, runs each "
        "in a sandbox of its job's own, submits the results and, on SIGINT or SIGTERM, finishes the "
        "running slices and returns the others. \\fBlocalexec\\fR runs a job on this machine; "
        "\\fBkeys\\fR makes and reads DCP keystores.",
    ]
    sections += [".SH OPTIONS", troff_verbatim(help_text(binary)), ".SH COMMANDS"]
    for command in COMMANDS:
        sections += [f'.SS "dcp-worker {" ".join(command)}"', troff_verbatim(help_text(binary, *command))]
    sections += [
        ".SH FILES",
        f".TP\n.I {CONFIG}\nSystem-wide settings (TOML, keyed by the option names).",
        ".TP\n.I ~/.dcp/dcp-worker/config.toml\nThe user's settings, over the system's.",
        ".TP\n.I ~/.dcp/id.keystore\nThe worker's identity keystore.",
        f".TP\n.I {UNIT}\nThe service, run as the user \\fBdcp\\fR with {STATE_DIR} as its home.",
        ".TP\n.I $XDG_CACHE_HOME/dcp-worker/\nWhere the executable unpacks itself on its first start "
        "(~/.cache/dcp-worker without XDG_CACHE_HOME).",
        ".SH SEE ALSO",
        "\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1)",
    ]
    return "\n".join(sections) + "\n"


def glibc_requirement(binary: Path) -> str:
    """The newest glibc symbol version the binary or anything it unpacks asks for, e.g. '2.34'."""
    dist = build_binary.WORK / "build" / "dcp_worker.dist"
    elf_files = [binary, *(p for p in dist.rglob("*") if p.is_file() and p.read_bytes()[:4] == b"\x7fELF")]
    found: set[str] = set()
    for path in elf_files:
        symbols = subprocess.run(["objdump", "-T", str(path)], capture_output=True, text=True).stdout
        found.update(re.findall(r"GLIBC_(\d+\.\d+(?:\.\d+)?)", symbols))
    if not found:
        raise build_binary.BuildError("objdump found no glibc symbol versions in the binary")
    return max(found, key=lambda v: tuple(int(part) for part in v.split(".")))


def install(source: Path | str, target: Path, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, Path):
        shutil.copyfile(source, target)
    else:
        target.write_text(source)
    target.chmod(mode)


def build_deb() -> Path:
    binary = build_binary.build()
    version = build_binary.version()
    arch = architecture()
    shutil.rmtree(STAGING, ignore_errors=True)
    install(binary, STAGING / "usr/bin/dcp-worker", 0o755)
    install(PACKAGING / "dcp-worker.service", STAGING / UNIT.lstrip("/"), 0o644)
    install(PACKAGING / "config.toml", STAGING / CONFIG.lstrip("/"), 0o644)
    install(COPYRIGHT, STAGING / "usr/share/doc/dcp-worker/copyright", 0o644)
    man = STAGING / "usr/share/man/man1/dcp-worker.1.gz"
    man.parent.mkdir(parents=True, exist_ok=True)
    with open(man, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as packed:
        packed.write(man_page(binary, version).encode())
    installed_kib = sum(p.stat().st_size for p in STAGING.rglob("*") if p.is_file()) // 1024 + 1
    control = {
        "Package": "dcp-worker",
        "Version": version,
        "Architecture": arch,
        "Maintainer": MAINTAINER,
        "Installed-Size": str(installed_kib),
        # libseccomp: the sandbox hosts' seccomp filter (pyseccomp loads it by name).
        "Depends": f"libc6 (>= {glibc_requirement(binary)}), libseccomp2, passwd",
        "Section": "net",
        "Priority": "optional",
        "Description": f"{SUMMARY}\n{DESCRIPTION.rstrip()}",
    }
    debian = STAGING / "DEBIAN"
    install("".join(f"{key}: {value}\n" for key, value in control.items()), debian / "control", 0o644)
    install(CONFIG + "\n", debian / "conffiles", 0o644)
    install(POSTINST, debian / "postinst", 0o755)
    install(PRERM, debian / "prerm", 0o755)
    install(POSTRM, debian / "postrm", 0o755)
    package = binary.parent / f"dcp-worker_{version}_{arch}.deb"
    # The binary is compressed already: gzip keeps dpkg-deb quick and costs little.
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(STAGING), str(package)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(f"built {package} ({package.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return package


def main() -> None:
    try:
        build_deb()
    except (build_binary.BuildError, subprocess.CalledProcessError) as error:
        sys.exit(f"build-deb: {error}")


if __name__ == "__main__":
    main()
