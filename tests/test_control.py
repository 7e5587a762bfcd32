"""The control socket: `dcp-worker pause|resume|status` as subprocesses against a served socket,
its permissions, a worker that is not there, and clients that send garbage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cli_run import isolated_environment, one_line_error, run_cli

from dcp_worker.errors import ControlError
from dcp_worker.governor.control import (
    MAX_CLIENTS,
    MAX_LINE_BYTES,
    ControlHandlers,
    control_socket_path,
    governor_handlers,
    request,
    serve_control,
)
from dcp_worker.governor.governor import MANUAL_PAUSE, Decision, Governor
from dcp_worker.governor.settings import GovernorSettings

NOBODY = 65534


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose resource dir both this process (the server) and the CLI subprocesses use."""
    monkeypatch.setenv("DCP_RESOURCE_DIR", str(tmp_path / ".dcp"))
    return tmp_path


async def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dcp-worker ARGS`` as a subprocess, without blocking the event loop serving the socket."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dcp_worker", *args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=isolated_environment(home),
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return subprocess.CompletedProcess(list(args), process.returncode, out.decode(), err.decode())


@asynccontextmanager
async def running_governor(
    on_decision: Callable[[Decision], None], worker_status: Callable[[], dict[str, Any]]
) -> AsyncIterator[Governor]:
    """A governor with its run loop and the control server, as the worker runs them."""
    governor = Governor(GovernorSettings(poll_interval=3600), max_sandboxes=2)
    async with asyncio.TaskGroup() as tasks:
        loop = tasks.create_task(governor.run(on_decision))
        async with serve_control(governor_handlers(governor, worker_status)):
            yield governor
        loop.cancel()


def test_pause_resume_and_status_from_the_command_line(home: Path) -> None:
    decisions: list[Decision] = []

    async def scenario() -> None:
        worker_status = {"slices": {"held": 3, "running": 1}}
        async with running_governor(decisions.append, lambda: worker_status):
            status = await cli(home, "status")
            assert status.returncode == 0, status.stderr
            assert status.stdout.splitlines() == [
                "state: running (up to 2 sandboxes)",
                'slices: {"held": 3, "running": 1}',
            ]
            paused = await cli(home, "pause")
            assert paused.returncode == 0, paused.stderr
            assert paused.stdout.splitlines()[:2] == ["state: paused", f"  because {MANUAL_PAUSE}"]
            assert decisions[-1].sandboxes == 0  # the worker heard it before the command returned
            shown = await cli(home, "status", "--json")
            answer = json.loads(shown.stdout)
            assert answer["governor"]["paused"] and answer["governor"]["manualPause"]
            assert answer["governor"]["reasons"] == [MANUAL_PAUSE]
            assert answer["slices"] == {"held": 3, "running": 1}
            resumed = await cli(home, "resume")
            assert resumed.stdout.splitlines()[0] == "state: running (up to 2 sandboxes)"
            assert decisions[-1].sandboxes == 2

    asyncio.run(scenario())
    assert [decision.sandboxes for decision in decisions] == [2, 0, 2]


def test_the_socket_is_its_owners_alone_and_removed_after(home: Path) -> None:
    directory = home / ".dcp" / "dcp-worker"
    directory.mkdir(parents=True, mode=0o755)
    os.chmod(directory, 0o755)

    async def scenario() -> None:
        async with serve_control(quiet_handlers()) as path:
            assert path == control_socket_path() == directory / "control.sock"
            assert stat.S_ISSOCK(path.stat().st_mode)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert not path.exists()

    asyncio.run(scenario())


def quiet_handlers() -> ControlHandlers:
    state = {"paused": False}
    return ControlHandlers(
        pause=lambda: state.update(paused=True),
        resume=lambda: state.update(paused=False),
        status=lambda: dict(state),
    )


SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
@pytest.mark.skipif(SYSTEM_PYTHON is None, reason="needs a python3 in /usr/bin that another user may run")
def test_another_user_cannot_reach_the_socket() -> None:
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        "    s.connect(sys.argv[1])\n"
        "except PermissionError:\n"
        "    sys.exit(print('refused'))\n"
        "try:\n"
        '    s.sendall(b\'{"command": "pause"}\\n\')\n'
        "    print(s.recv(100) or 'hung up')\n"
        "except OSError:\n"
        "    print('hung up')\n"
    )

    def as_nobody(path: Path) -> str:
        assert SYSTEM_PYTHON is not None
        return subprocess.run(
            [SYSTEM_PYTHON, "-c", probe, str(path)], user=NOBODY, capture_output=True, text=True, check=True
        ).stdout.strip()

    async def scenario(base: Path) -> None:
        handlers = quiet_handlers()
        async with serve_control(handlers, base / "dcp-worker" / "control.sock") as path:
            assert await asyncio.to_thread(as_nobody, path) == "refused"  # the 0700 directory
            # Even with the file modes opened up, the server checks who is connecting.
            os.chmod(path.parent, 0o711)
            os.chmod(path, 0o666)
            assert await asyncio.to_thread(as_nobody, path) == "hung up"
            assert handlers.status() == {"paused": False}

    # Not under pytest's temporary directory, which only root may enter.
    with tempfile.TemporaryDirectory() as base:
        os.chmod(base, 0o711)
        asyncio.run(scenario(Path(base)))


def test_no_worker_running_is_one_line(home: Path) -> None:
    path = home / ".dcp" / "dcp-worker" / "control.sock"
    error = one_line_error(run_cli(home, "status"))
    assert error == f"dcp-worker: error: no worker is running (nothing listens on {path})"
    # A socket left behind by a worker that died answers the same.
    path.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as left:
        left.bind(str(path))
    assert one_line_error(run_cli(home, "pause")) == error

    async def scenario() -> None:
        async with serve_control(quiet_handlers()):  # and a new worker replaces it
            assert (await asyncio.to_thread(request, "pause")) == {"paused": True}

    asyncio.run(scenario())


def test_a_second_worker_cannot_take_the_socket(home: Path) -> None:
    async def scenario() -> None:
        async with serve_control(quiet_handlers()) as path:
            with pytest.raises(ControlError) as caught:
                async with serve_control(quiet_handlers()):
                    pass
            assert str(caught.value) == (
                f"control socket {path} is in use: another worker is running with this resource dir"
            )
            assert path.exists()  # still the first one's

    asyncio.run(scenario())


def test_a_socket_path_too_long_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 120) / "control.sock"
    with pytest.raises(ControlError, match=r"^control socket path .* is longer than 107 bytes$"):
        request("status", path)


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> dict[str, Any]:
    writer.write(line)
    await writer.drain()
    answer = json.loads(await reader.readline())
    assert isinstance(answer, dict)
    return answer


def served(scenario: Callable[[Path], Coroutine[Any, Any, None]]) -> None:
    async def run() -> None:
        async with serve_control(quiet_handlers()) as path:
            await scenario(path)

    asyncio.run(run())


def test_garbage_lines_get_errors_and_the_connection_goes_on(home: Path) -> None:
    async def scenario(path: Path) -> None:
        reader, writer = await asyncio.open_unix_connection(str(path))
        for line, error in [
            (b"garbage\n", "not a JSON line"),
            (b"\xff\xfe\x00\n", "not a JSON line"),
            (b"[" * 50_000 + b"\n", "not a JSON line"),
            (b"[1, 2]\n", "unknown command (not an object); expected one of pause, resume, status"),
            (b'{"command": 5}\n', "unknown command 5; expected one of pause, resume, status"),
            (
                b'{"command": "shutdown"}\n',
                'unknown command "shutdown"; expected one of pause, resume, status',
            ),
            (b"\n", "not a JSON line"),
        ]:
            assert await exchange(reader, writer, line) == {"ok": False, "error": error}
        assert await exchange(reader, writer, b'{"command": "pause"}\n') == {
            "ok": True,
            "status": {"paused": True},
        }
        writer.close()

    served(scenario)


def test_a_huge_line_is_refused_and_the_server_goes_on(home: Path) -> None:
    async def scenario(path: Path) -> None:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"x" * (4 * MAX_LINE_BYTES))
        answer = json.loads(await reader.readline())
        assert answer == {"ok": False, "error": "line too long"}
        with contextlib.suppress(ConnectionResetError):  # our unread bytes make its hang-up a reset
            assert await reader.read() == b""
        writer.close()
        assert await asyncio.to_thread(request, "status") == {"paused": False}

    served(scenario)


def test_too_many_idle_clients_do_not_lock_out_the_owner_for_good(home: Path) -> None:
    async def scenario(path: Path) -> None:
        idle = [await asyncio.open_unix_connection(str(path)) for _ in range(MAX_CLIENTS)]
        extra_reader, extra_writer = await asyncio.open_unix_connection(str(path))
        assert await extra_reader.read() == b""  # turned away while the others hold their places
        extra_writer.close()
        for _, writer in idle:
            writer.close()
            await writer.wait_closed()
        # The server notices the idle clients left; the next command gets through.
        for _ in range(100):
            try:
                assert await asyncio.to_thread(request, "resume") == {"paused": False}
                break
            except ControlError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the server never took a new client")

    served(scenario)


def test_a_client_that_hangs_up_mid_line_does_not_stop_the_server(home: Path) -> None:
    async def scenario(path: Path) -> None:
        for partial in (b'{"command": "pa', b"", b'{"command": "status"}\n'):
            _, writer = await asyncio.open_unix_connection(str(path))
            writer.write(partial)
            writer.close()
            await writer.wait_closed()
        assert await asyncio.to_thread(request, "status") == {"paused": False}

    served(scenario)
