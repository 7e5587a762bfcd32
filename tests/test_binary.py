"""The single-file build and its Debian package.

``dist/dcp-worker`` (``tools/build_binary.py``, Nuitka onefile) is copied alone into an empty
folder and run with ``env -i``: no Python, no project, no PATH. Every command works from there,
sandbox hosts are the binary itself, and the package built around it (``tools/build_deb.py``)
installs, runs as the ``dcp`` user and goes away cleanly.

Slow: the first build takes 15-25 minutes on two cores (later ones reuse the compiler caches in
``.cache/``, and an unchanged build is skipped), so the tests are marked ``binary``;
``-m 'not binary'`` leaves them out.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_run import run_cli
from process_tree import sandbox_hosts
from scheduler_double import SchedulerDouble

from dcp_worker import __version__
from dcp_worker.protocol.identity import Identity
from dcp_worker.sandbox.lockdown import LockdownReport
from dcp_worker.supervisor.lockdown import probe as python_probe

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import build_binary  # noqa: E402
import build_deb  # noqa: E402

pytestmark = pytest.mark.binary

EXAMPLE = ROOT / "examples"
# A work function that compiles and runs WebAssembly (an i32 adder) inside the sandbox.
WASM_WORK = """function (x) {
  progress();
  const bytes = new Uint8Array([0,97,115,109,1,0,0,0,1,7,1,96,2,127,127,1,127,3,2,1,0,7,7,1,3,97,100,100,0,0,10,9,1,7,0,32,0,32,1,106,11]);
  const add = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.add;
  return add(x, 1000);
}"""
MODULE_WORK = "function (x) { progress(); return require('gcd').gcd(x, 12); }"
GCD_MODULE = "exports.gcd = function gcd(a, b) { return b === 0 ? a : gcd(b, a % b); };"
SPIN_WORK = "function (x) { progress(); for (;;) {} }"
SLOW_WORK = (
    "function (x) { progress(); const end = Date.now() + 300; while (Date.now() < end) {} return -x; }"
)
PAYMENT = Identity(b"\x22" * 32).address


@pytest.fixture(scope="module")
def built() -> Path:
    if importlib.util.find_spec("nuitka") is None:
        pytest.skip("Nuitka is not installed: pip install -e '.[build]' (tools/test does)")
    return build_binary.build()


class Alone:
    """The binary copied into an empty folder, run there with ``env -i`` and a HOME of its own."""

    def __init__(self, binary: Path, folder: Path, home: Path) -> None:
        self.folder = folder
        self.home = home
        folder.mkdir()
        home.mkdir()
        shutil.copy2(binary, folder / "dcp-worker")

    def command(self, *args: str) -> list[str]:
        return ["/usr/bin/env", "-i", f"HOME={self.home}", "./dcp-worker", *args]

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            cwd=self.folder,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )

    def file(self, name: str, text: str) -> str:
        (self.folder / name).write_text(text)
        return name


@pytest.fixture
def alone(built: Path, tmp_path: Path) -> Alone:
    return Alone(built, tmp_path / "empty", tmp_path / "home")


def test_version_and_help(alone: Alone) -> None:
    version = alone.run("--version")
    assert (version.returncode, version.stdout) == (0, f"dcp-worker {__version__}\n"), version
    commands = ["localexec", "evaluator", "pause", "resume", "status", "keys"]
    for args, words in [((), [*commands, "--paymentAddress"]), (("keys",), ["new", "show"])]:
        result = alone.run(*args, "--help")
        assert result.returncode == 0, result
        assert all(word in result.stdout for word in words), result.stdout
    for command in commands:
        result = alone.run(command, "--help")
        assert result.returncode == 0 and result.stdout.startswith("Usage: dcp-worker"), result


def test_the_example_job_gives_what_the_python_worker_gives(alone: Alone, tmp_path: Path) -> None:
    for name in ("collatz.js", "collatz-input.json"):
        shutil.copy(EXAMPLE / name, alone.folder / name)
    result = alone.run("localexec", "collatz.js", "collatz-input.json", "--cores", "2")
    assert result.returncode == 0, result
    python = run_cli(tmp_path, "localexec", str(EXAMPLE / "collatz.js"), str(EXAMPLE / "collatz-input.json"))
    assert python.returncode == 0, python
    assert json.loads(result.stdout) == json.loads(python.stdout)
    assert json.loads(result.stdout)[-1] == {"start": 837799, "steps": 524}


def test_webassembly_inside_the_work_function(alone: Alone) -> None:
    work = alone.file("wasm.js", WASM_WORK)
    result = alone.run("localexec", work, "--range", "1:3", "--cores", "1")
    assert result.returncode == 0, result
    assert json.loads(result.stdout) == [1001, 1002, 1003]


def test_a_job_with_a_module(alone: Alone) -> None:
    work, module = alone.file("work.js", MODULE_WORK), alone.file("gcd.js", GCD_MODULE)
    result = alone.run(
        "localexec", work, "--range", "8:10", "--require", f"gcd={module}", "--format", "jsonl"
    )
    assert result.returncode == 0, result
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [{"slice": 1, "result": 4}, {"slice": 2, "result": 3}, {"slice": 3, "result": 2}]


def test_bad_input_is_still_one_line(alone: Alone) -> None:
    result = alone.run("localexec", "missing.js", "--range", "1:2")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("dcp-worker: error: ") and len(result.stderr.splitlines()) == 1


def test_keys_new_and_show(alone: Alone) -> None:
    made = alone.run("keys", "new", "--out", "id.keystore")
    assert made.returncode == 0, made
    shown = alone.run("keys", "show", "id.keystore")
    assert shown.returncode == 0, shown
    address = shown.stdout.split()[-1]
    assert address.startswith("0x") and address in made.stdout


def test_the_packaged_config_is_accepted_as_it_is_and_uncommented(alone: Alone) -> None:
    text = (ROOT / "packaging" / "config.toml").read_text()
    uncommented = "\n".join(line[1:] if line[1:2].isalpha() else line for line in text.splitlines())
    for name, content, expected in [("as-is.toml", text, None), ("set.toml", uncommented, 4)]:
        result = alone.run("--config", alone.file(name, content), "--dumpConfig")
        assert result.returncode == 0, result
        assert json.loads(result.stdout)["maxSandboxes"] == expected


def test_the_hidden_programs_run_from_the_binary(alone: Alone) -> None:
    host = alone.run("sandbox-host", "--memory-mb", "64", timeout=60)
    assert host.returncode == 0, host  # it serves until its input closes
    probe = alone.run("sandbox-lockdown-probe", timeout=60)
    assert probe.returncode == 0, probe
    # The same walls stand as around Python's hosts: landlockpy and pyseccomp work from the binary.
    assert LockdownReport.from_json(json.loads(probe.stdout)) == python_probe()


def test_the_evaluator_serves_stdio_until_its_input_ends(alone: Alone) -> None:
    result = alone.run("evaluator", "--stdio", timeout=60)
    assert result.returncode == 0, result


def test_sandbox_hosts_are_the_binary_itself_and_stop_with_it(alone: Alone) -> None:
    work = alone.file("spin.js", SPIN_WORK)
    process = subprocess.Popen(
        alone.command("localexec", work, "--range", "1:2", "--cores", "2", "--slice-timeout", "120"),
        cwd=alone.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(hosts := sandbox_hosts(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # polling /proc: there is no event to wait on
        assert len(hosts) == 2, "no two sandbox hosts appeared"
        unpacked = alone.home / ".cache" / "dcp-worker"
        for pid in hosts:
            executable = Path(os.readlink(f"/proc/{pid}/exe"))
            assert executable.name.startswith("dcp-worker") and executable.is_relative_to(unpacked), executable
            assert not (Path(f"/proc/{pid}/environ").read_bytes().strip(b"\0")), "a host inherited variables"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not [pid for pid in hosts if Path(f"/proc/{pid}").exists()], "sandbox hosts outlived the binary"


def test_work_for_a_scheduler_and_stop_on_sigint(alone: Alone, scheduler_double: SchedulerDouble) -> None:
    job = scheduler_double.add_job(SLOW_WORK, list(range(1, 21)), slices_per_task=20)
    identity = Identity.generate()
    output = alone.folder / "worker.log"
    command = alone.command(
        "--scheduler", scheduler_double.url, "--identityKey", identity.private_key.hex(),
        "--paymentAddress", PAYMENT, "--maxSandboxes", "2",
    )  # fmt: skip
    with open(output, "w") as log:
        process = subprocess.Popen(
            command,
            cwd=alone.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            scheduler_double.wait_events(
                lambda e: e.get("event") == "result" and e.get("jobId") == job, 1, timeout=120
            )
            for control in ("pause", "status", "resume"):  # over the worker's control socket
                answered = alone.run(control, timeout=60)
                assert answered.returncode == 0, answered
            process.send_signal(signal.SIGINT)  # to the onefile launcher, which passes it on
            assert process.wait(timeout=90) == 0, output.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    status = scheduler_double.job_status(job)
    done, returned = set(status["done"]), {r["sliceNumber"] for r in status["returns"]}
    assert status["held"] == []
    assert done | returned == set(range(1, 21))
    assert done.isdisjoint(returned)
    assert "Worker has stopped" in output.read_text()


@pytest.fixture
def user_cache_dir(built: Path) -> Iterator[Path]:
    """Where the binary unpacks itself with no variable set: the user's passwd home."""
    digest = build_binary.STAMP.read_text().strip()
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    unpacked = home / ".cache" / "dcp-worker" / build_binary.unpack_name(digest)
    existed = unpacked.exists()
    yield unpacked
    if not existed:
        shutil.rmtree(unpacked, ignore_errors=True)
        with contextlib.suppress(OSError):
            unpacked.parent.rmdir()  # if no other build is unpacked there


def test_an_empty_environment_is_enough(built: Path, tmp_path: Path, user_cache_dir: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    shutil.copy2(built, folder / "dcp-worker")
    shutil.copy(EXAMPLE / "collatz.js", folder / "collatz.js")
    result = subprocess.run(
        ["/usr/bin/env", "-i", "./dcp-worker", "localexec", "collatz.js", "--range", "1:3"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result
    assert json.loads(result.stdout) == [{"start": n, "steps": s} for n, s in [(1, 0), (2, 1), (3, 7)]]
    assert (user_cache_dir / "dcp-worker.bin").is_file()  # the unpacked executable


# The Debian package


def run(*command: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        command, capture_output=True, text=True, env=environment, cwd=cwd, timeout=600, check=check
    )


def as_service_user(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``dcp-worker ARGS`` as the unit runs it: user dcp, its HOME and cache folder."""
    return run(
        "runuser", "-u", "dcp", "--", "/usr/bin/env", "-i", f"HOME={build_deb.STATE_DIR}",
        f"XDG_CACHE_HOME={build_deb.CACHE_DIR}", "/usr/bin/dcp-worker", *args,
        check=False,
    )  # fmt: skip


def package_status() -> str:
    return run("dpkg-query", "-W", "-f=${Status}", "dcp-worker", check=False).stdout


@pytest.fixture
def package(built: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("installing the package needs root")
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        pytest.skip("not a Debian system (no apt-get or dpkg-deb)")
    if "installed" in package_status():
        pytest.skip("a dcp-worker package is installed already; the test would replace it")
    return build_deb.build_deb()


def test_the_debian_package_installs_runs_and_goes_away(package: Path) -> None:
    run("apt-get", "install", "-y", f"./{package.name}", cwd=package.parent)
    try:
        assert package_status() == "install ok installed"
        files = run("dpkg-query", "-L", "dcp-worker").stdout.split()
        config = build_deb.CONFIG
        expected = {"/usr/bin/dcp-worker", build_deb.UNIT, config, "/usr/share/man/man1/dcp-worker.1.gz"}
        assert expected <= set(files)
        assert config in run("dpkg-query", "-W", "-f=${Conffiles}", "dcp-worker").stdout
        user = pwd.getpwnam("dcp")
        assert user.pw_dir == build_deb.STATE_DIR and user.pw_uid < 1000
        assert Path(build_deb.STATE_DIR).stat().st_uid == user.pw_uid
        assert as_service_user("--version").stdout == f"dcp-worker {__version__}\n"
        man = run("man", "-P", "cat", "dcp-worker", check=False) if shutil.which("man") else None
        assert man is None or ("localexec" in man.stdout and "config.toml" in man.stdout), man
        if shutil.which("systemd-analyze"):
            verified = run("systemd-analyze", "verify", "--man=no", build_deb.UNIT, check=False)
            assert verified.returncode == 0, verified.stderr

        # The service's user runs the installed binary (unpacking it into its own cache).
        jobs = Path(tempfile.mkdtemp())
        jobs.chmod(0o755)
        shutil.copy(EXAMPLE / "collatz.js", jobs / "collatz.js")
        as_dcp = as_service_user("localexec", str(jobs / "collatz.js"), "--range", "26:27", "--cores", "1")
        shutil.rmtree(jobs)
        assert as_dcp.returncode == 0, as_dcp
        assert json.loads(as_dcp.stdout)[1] == {"start": 27, "steps": 111}

        # An operator's edit survives reinstalling.
        edited = Path(config).read_text().replace("#maxSandboxes = 4", "maxSandboxes = 3")
        Path(config).write_text(edited)
        run("apt-get", "install", "-y", "--reinstall", f"./{package.name}", cwd=package.parent)
        assert Path(config).read_text() == edited
        settings = as_service_user("--dumpConfig")
        assert json.loads(settings.stdout)["maxSandboxes"] == 3, settings

        run("apt-get", "remove", "-y", "dcp-worker")
        assert package_status() == "deinstall ok config-files"
        assert [path for path in files if Path(path).is_file()] == [config]

        run("apt-get", "purge", "-y", "dcp-worker")
        assert package_status() in ("", "unknown ok not-installed")
        assert not [path for path in files if Path(path).is_file()]
        for folder in (Path(config).parent, Path(build_deb.STATE_DIR), Path(build_deb.CACHE_DIR)):
            assert not folder.exists(), folder
        assert run("getent", "passwd", "dcp", check=False).returncode == 2
    finally:
        run("apt-get", "purge", "-y", "dcp-worker", check=False)
