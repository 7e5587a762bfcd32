"""``dcp-worker [options]``: work for a DCP scheduler, with the official worker's option names."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
import secrets
import signal
import string
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dcp_worker import __version__
from dcp_worker.cli.worker_output import chosen_output, log_handler, status_report
from dcp_worker.errors import (
    ConnectError,
    IdentityError,
    KeystoreError,
    LockdownError,
    UsageError,
    WorkerStartError,
)
from dcp_worker.governor.settings import OPTION_HELP as GOVERNOR_HELP
from dcp_worker.protocol.dcp_home import IDENTITY_KEYSTORE, PAYMENT_KEYSTORE, resource_dir
from dcp_worker.worker.config import WorkerConfig, load_config

if TYPE_CHECKING:
    from dcp_worker.cli.dashboard import Dashboard
    from dcp_worker.protocol.identity import Identity
    from dcp_worker.worker.runner import WorkerRun

log = logging.getLogger("dcp_worker")

WORKER_ID_ALPHABET = string.ascii_letters + string.digits
DASHBOARD_REFRESH_SECONDS = 1.0
DEFAULTS = WorkerConfig()
DEFAULT_UTILIZATION = f"{DEFAULTS.utilization_cpu:g},{DEFAULTS.utilization_gpu:g}"
EXIT_SIGNALLED = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGQUIT: 131}
# dcp-worker's exit statuses: 1 for a bad configuration or an unusable scheduler, 5 for what it
# calls unhandled errors, a keystore that cannot be read among them.
EXIT_USAGE = 1
EXIT_FATAL = 5


def _governor_option(name: str) -> Any:
    metavar, text = GOVERNOR_HELP[name]
    if metavar is None:
        return typer.Option(f"--{name}", help=text)
    return typer.Option(f"--{name}", metavar=metavar, help=text)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"dcp-worker {__version__}")
        raise typer.Exit()


def worker_options(
    ctx: typer.Context,
    payment_address: Annotated[
        str | None,
        typer.Option(
            "--paymentAddress",
            help="Account that receives earnings [default: that of ~/.dcp/default.keystore].",
        ),
    ] = None,
    cores: Annotated[
        str | None, typer.Option("--cores", "-c", metavar="CPU[,GPU]", help="Cores to use [default: all, 1].")
    ] = None,
    utilization: Annotated[
        str | None,
        typer.Option(
            "--utilization",
            "-u",
            metavar="CPU[,GPU]",
            help=f"Fraction of the cores to use [default: {DEFAULT_UTILIZATION}].",
        ),
    ] = None,
    max_sandboxes: Annotated[
        int | None,
        typer.Option("--maxSandboxes", "-m", help="Most slices at once [default: effective cores]."),
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose", "-v", count=True, show_default=False, help="Say more (repeatable) [default: 0]."
        ),
    ] = 0,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="MODE",
            help="console, dashboard, syslog or logfile"
            " [default: detect: the dashboard on a UTF-8 terminal, else console].",
        ),
    ] = None,
    join: Annotated[
        list[str] | None,
        typer.Option("--join", "-g", metavar="KEY,SECRET", help="Join a compute group (repeatable)."),
    ] = None,
    leave_public_group: Annotated[
        bool | None,
        typer.Option("--leavePublicGroup", help="Do not work for the public group [default: false]."),
    ] = None,
    public_group_fallback: Annotated[
        bool | None,
        typer.Option(
            "--publicGroupFallback", help="Public group only when yours have no work [default: false]."
        ),
    ] = None,
    job_ids: Annotated[
        list[str] | None,
        typer.Option(
            "--job-id", "-j", metavar="ID", help="Work only for this job (repeatable) [default: any]."
        ),
    ] = None,
    allowed_origins: Annotated[
        list[str] | None,
        typer.Option(
            "--allowedOrigins",
            "-a",
            metavar="ORIGIN",
            help="Also allow this origin, for every purpose (repeatable).",
        ),
    ] = None,
    identity_key: Annotated[
        str | None, typer.Option("--identityKey", metavar="HEX", help="Identity private key.")
    ] = None,
    identity_keystore: Annotated[
        str | None,
        typer.Option(
            "--identityKeystore", metavar="FILE|JSON", help="Identity keystore [default: ~/.dcp/id.keystore]."
        ),
    ] = None,
    report_interval: Annotated[
        float | None,
        typer.Option("--reportInterval", metavar="SECONDS", help="Print a status report every SECONDS."),
    ] = None,
    logfile: Annotated[
        str | None,
        typer.Option("--logfile", help=f"Log file for --output logfile [default: {DEFAULTS.logfile}]."),
    ] = None,
    syslog_address: Annotated[
        str | None,
        typer.Option("--syslogAddress", help=f"Syslog server [default: {DEFAULTS.syslog_address}]."),
    ] = None,
    syslog_facility: Annotated[
        str | None,
        typer.Option("--syslogFacility", help=f"Syslog facility [default: {DEFAULTS.syslog_facility}]."),
    ] = None,
    syslog_transport: Annotated[
        str | None,
        typer.Option("--syslogTransport", help=f"udp, tcp or unix [default: {DEFAULTS.syslog_transport}]."),
    ] = None,
    syslog_port: Annotated[
        int | None, typer.Option("--syslogPort", help=f"Syslog port [default: {DEFAULTS.syslog_port}].")
    ] = None,
    pid_file: Annotated[
        str | None, typer.Option("--pidFile", "-f", help="Write the process id here [default: none].")
    ] = None,
    max_load: Annotated[
        str | None,
        _governor_option("maxLoad"),
    ] = None,
    load_period: Annotated[
        str | None,
        _governor_option("loadPeriod"),
    ] = None,
    max_other_cpu: Annotated[
        str | None,
        _governor_option("maxOtherCpu"),
    ] = None,
    cpu_cap: Annotated[
        str | None,
        _governor_option("cpuCap"),
    ] = None,
    hours: Annotated[
        list[str] | None,
        _governor_option("hours"),
    ] = None,
    max_memory_share: Annotated[
        str | None,
        _governor_option("maxMemoryShare"),
    ] = None,
    pause_on_battery: Annotated[bool | None, _governor_option("pauseOnBattery")] = None,
    pause_when_user_active: Annotated[
        str | None,
        _governor_option("pauseWhenUserActive"),
    ] = None,
    resume_within: Annotated[
        str | None,
        _governor_option("resumeWithin"),
    ] = None,
    resume_after: Annotated[
        str | None,
        _governor_option("resumeAfter"),
    ] = None,
    governor_interval: Annotated[
        str | None,
        _governor_option("governorInterval"),
    ] = None,
    require_lockdown: Annotated[
        bool | None,
        typer.Option(
            "--requireLockdown",
            "--require-lockdown",
            help="Refuse to start unless sandbox hosts can raise every wall [default: false].",
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", metavar="URL", help=f"Scheduler URL [default: {DEFAULTS.scheduler}]."),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config", metavar="FILE", help="A TOML configuration file, over the system's and yours."
        ),
    ] = None,
    show_config: Annotated[
        str | None, typer.Option("--showConfig", metavar="KEY", help="Print one setting (or 'all') and exit.")
    ] = None,
    dump_config: Annotated[
        bool, typer.Option("--dumpConfig", help="Print the merged configuration as JSON.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """A DCP worker: runs DCP work functions in locked-down V8 sandboxes.

    Without a command, works for a DCP scheduler: asks it for work, runs each slice in a
    sandbox, and submits the results. The options are the official dcp-worker's.
    """
    if ctx.invoked_subcommand is not None:
        return
    given: dict[str, Any] = {
        "paymentAddress": payment_address,
        "cores": cores,
        "utilization": utilization,
        "maxSandboxes": max_sandboxes,
        "verbose": verbose or None,
        "output": output,
        "join": join,
        "leavePublicGroup": leave_public_group,
        "publicGroupFallback": public_group_fallback,
        "jobIds": job_ids,
        "allowedOrigins": allowed_origins,
        "identityKey": identity_key,
        "identityKeystore": identity_keystore,
        "reportInterval": report_interval,
        "logfile": logfile,
        "syslogAddress": syslog_address,
        "syslogFacility": syslog_facility,
        "syslogTransport": syslog_transport,
        "syslogPort": syslog_port,
        "pidFile": pid_file,
        "scheduler": scheduler,
        "requireLockdown": require_lockdown,
        "maxLoad": max_load,
        "loadPeriod": load_period,
        "maxOtherCpu": max_other_cpu,
        "cpuCap": cpu_cap,
        "hours": hours,
        "maxMemoryShare": max_memory_share,
        "pauseOnBattery": pause_on_battery,
        "pauseWhenUserActive": pause_when_user_active,
        "resumeWithin": resume_within,
        "resumeAfter": resume_after,
        "governorInterval": governor_interval,
    }
    try:
        status = _configured(given, config_file, dump_config, show_config)
    except (UsageError, ConnectError, LockdownError) as error:
        raise WorkerStartError(str(error), EXIT_USAGE) from None
    except IdentityError as error:
        raise WorkerStartError(str(error), EXIT_FATAL) from None
    raise typer.Exit(status)


def _configured(
    given: dict[str, Any], config_file: Path | None, dump_config: bool, show_config: str | None
) -> int:
    config = load_config({name: value for name, value in given.items() if value is not None}, config_file)
    if dump_config:
        typer.echo(json.dumps(config.as_settings(), indent=2))
        return 0
    if show_config is not None:
        _show(config, show_config)
        return 0
    return run_worker(config)


def _show(config: WorkerConfig, name: str) -> None:
    settings = config.as_settings()
    names = list(settings) if name == "all" else [name]
    for key in names:
        if key not in settings:
            raise UsageError(f"--showConfig: no setting {key!r}")
        source = config.sources.get(key, "default")
        typer.echo(f"{key} = {json.dumps(settings[key])}  # {source}")


def load_identity(config: WorkerConfig) -> Identity:
    from dcp_worker.protocol.identity import Identity
    from dcp_worker.protocol.keystore import Keystore, passphrases

    if config.identity_key:
        return Identity.from_hex(config.identity_key)
    prompt = (lambda: getpass.getpass("Identity keystore passphrase: ")) if sys.stdin.isatty() else None
    if config.identity_keystore and config.identity_keystore.lstrip().startswith("{"):
        try:
            document = json.loads(config.identity_keystore)
        except ValueError as error:
            raise KeystoreError(f"--identityKeystore: not keystore JSON ({error})") from None
        keystore = Keystore(document, "--identityKeystore")
    else:
        keystore = Keystore.load(Path(config.identity_keystore or resource_dir() / IDENTITY_KEYSTORE))
    return keystore.unlock_with(passphrases(prompt=prompt))


def payment_address(config: WorkerConfig) -> str:
    from dcp_worker.protocol.keystore import Keystore

    if config.payment_address:
        return config.payment_address
    path = resource_dir() / PAYMENT_KEYSTORE
    try:
        address = Keystore.load(path).address
    except KeystoreError as error:
        raise UsageError(f"no payment address: give --paymentAddress, or create {path} ({error})") from None
    if address is None:
        raise UsageError(f"{path} names no address; give --paymentAddress")
    return address


def worker_id() -> str:
    """This machine's worker id, made once (22 letters and digits, as dcp-client's)."""
    path = resource_dir() / "dcp-worker" / "worker-id"
    try:
        known = path.read_text().strip()
        if len(known) == 22 and all(c in WORKER_ID_ALPHABET for c in known):
            return known
    except OSError:
        pass
    made = "".join(secrets.choice(WORKER_ID_ALPHABET) for _ in range(22))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(made + "\n")
    except OSError as error:
        log.warning(" ! cannot keep the worker id in %s: %s", path, error.strerror)
    return made


def run_worker(config: WorkerConfig) -> int:
    with pid_file(config.pid_file):
        return _start(config)


def _start(config: WorkerConfig) -> int:
    from dcp_worker.supervisor.lockdown import check_lockdown
    from dcp_worker.worker import disabled

    if (refused := disabled.refusal()) is not None:
        raise UsageError(refused)
    lockdown = check_lockdown(config.require_lockdown)
    mode = chosen_output(config)
    handler = log_handler(config, mode) if mode != "dashboard" else None
    _use_log_handler(handler or logging.NullHandler(), config.verbose)
    identity = load_identity(config)
    address = payment_address(config)
    wid = worker_id()
    dashboard = None
    if mode == "dashboard":
        from dcp_worker.cli.dashboard import Dashboard  # rich costs memory; only the dashboard needs it

        dashboard = Dashboard(
            {
                "Scheduler": config.scheduler,
                "Bank Account": address,
                "Identity": identity.address,
                "Jobs": ", ".join(config.job_ids) or "<any>",
                "Compute Groups": f"{len(config.join) + (0 if config.leave_public_group else 1)}",
                "Global Compute Group": "no" if config.leave_public_group else "yes",
                "Worker Id": wid,
            }
        )
        _use_log_handler(dashboard.handler, config.verbose)
    try:
        return _announce_and_run(config, identity, address, wid, mode, dashboard, lockdown.summary())
    finally:
        if dashboard is not None:
            dashboard.close()


def _announce_and_run(
    config: WorkerConfig,
    identity: Identity,
    address: str,
    wid: str,
    mode: str,
    dashboard: Dashboard | None,
    lockdown: str,
) -> int:
    cpu, gpu = config.effective_cores()
    if config.public_group_fallback and config.leave_public_group:
        log.warning(
            " ! Global Group fallback has been requested,"
            " but the global group is blocked by local configuration"
        )
    if config.report_interval is not None and dashboard is not None:
        log.warning(" ! Ignoring --reportInterval in dashboard output mode")
    for line in (
        f" * Starting DCP Worker {wid}",
        f" . Configured for scheduler {config.scheduler}",
        f" . Earned funds will be deposited in account {address}",
        f" . Identity is {identity.address}",
        *(
            [f" * Processing only {len(config.job_ids)} job(s) {', '.join(config.job_ids)}"]
            if config.job_ids
            else []
        ),
        *(
            [f" . Joining compute group(s) {', '.join(g.join_key for g in config.join)}"]
            if config.join
            else []
        ),
        *(
            [" . Falling back on global group when preferred groups have no work"]
            if config.public_group_fallback and not config.leave_public_group
            else []
        ),
        *([" . Leaving the global compute group"] if config.leave_public_group else []),
        f" . Effective Cores: {{ cpu: {cpu:g}, gpu: {gpu:g} }}",
        f" . Maximum Sandboxes: {config.sandbox_count()}",
        f" . Sandbox {lockdown}",
        f" . Output mode: {mode}",
        " * Ready.",
    ):
        log.info(line)
    # What only a working worker needs (sessions, aiohttp, the governor) is imported here, so
    # that every other command starts without it.
    from dcp_worker.protocol.identity_cache import FILE_NAME as IDENTITY_CACHE_FILE
    from dcp_worker.protocol.identity_cache import IdentityCache
    from dcp_worker.protocol.session import SessionOptions
    from dcp_worker.worker.runner import DEFAULT_LIMITS, WorkerRun

    # Batches of up to 100 messages, where dcp-client sends 20: a receiver takes any number, and
    # each batch costs the scheduler one signature check and one signed ack.
    options = SessionOptions(
        identity_cache=IdentityCache(resource_dir() / IDENTITY_CACHE_FILE), max_messages_per_batch=100
    )
    limits = replace(DEFAULT_LIMITS, require_lockdown=config.require_lockdown)
    worker = WorkerRun(config, identity, address, wid, limits=limits, session_options=options)
    report_every = config.report_interval if dashboard is None else None
    return asyncio.run(_run(worker, config, report_every, dashboard))


async def _run(
    worker: WorkerRun, config: WorkerConfig, report_every: float | None, dashboard: Dashboard | None
) -> int:
    from dcp_worker.cli.governing import governing
    from dcp_worker.worker.runner import StopControl

    stop = StopControl()
    loop = asyncio.get_running_loop()
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum)
        if len(received) >= 3:
            log.error(" ! trapped %s again; exiting now", signum.name)
            os._exit(EXIT_SIGNALLED.get(signum, 1))
        if signum == signal.SIGQUIT or len(received) == 2:
            log.info(" ! trapped %s; returning running slices and stopping", signum.name)
            stop.soft.set()
            stop.hard.set()
        else:
            log.info(" ! trapped %s; finishing running slices, then stopping", signum.name)
            stop.soft.set()
        if len(received) == 1:
            loop.call_later(config.cleanup_timeout, _cleanup_expired, signum)

    for signum in EXIT_SIGNALLED:
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, _reopen_log)
    started = time.monotonic()
    shows: list[asyncio.Task[None]] = []
    if report_every is not None:
        shows.append(
            asyncio.create_task(
                _every(report_every, lambda: log.info(status_report(worker.status(), started)))
            )
        )
    if dashboard is not None:
        shows.append(
            asyncio.create_task(_every(DASHBOARD_REFRESH_SECONDS, lambda: dashboard.update(worker.status())))
        )

    def governed_status() -> dict[str, Any]:
        return {"worker": asdict(worker.status())}

    try:
        async with governing(worker, config.governor, config.sandbox_count(), governed_status):
            await worker.run(stop)
    except ConnectError:
        raise
    except Exception as error:  # a bug, or a scheduler that broke a rule: stop, and say so
        cause = _first_leaf(error)
        log.error(" ! trapped unhandled error -- stopping worker: %s: %s", type(cause).__name__, cause)
        log.debug("the error's traceback:", exc_info=cause)
        return EXIT_FATAL
    finally:
        for show in shows:
            show.cancel()
        await asyncio.gather(*shows, return_exceptions=True)
    log.info(
        " * Worker has stopped: %d slices submitted, %d returned",
        worker.ledger.submitted,
        worker.ledger.returned,
    )
    return worker.exit_status


async def _every(seconds: float, show: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(seconds)
        show()


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _reopen_log() -> None:
    """SIGHUP: a log file is closed and opened again by name (after a rotation); else ignored."""
    for handler in logging.getLogger("dcp_worker").handlers:
        if isinstance(handler, logging.FileHandler):
            handler.close()  # the next record opens the file again
            log.info(" . trapped SIGHUP; reopened %s", handler.baseFilename)


def _cleanup_expired(signum: signal.Signals) -> None:
    log.error(" ! cleanup took too long; exiting now")
    os._exit(EXIT_SIGNALLED.get(signum, 1))


def _use_log_handler(handler: logging.Handler, verbose: int) -> None:
    root = logging.getLogger("dcp_worker")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


@contextlib.contextmanager
def pid_file(path: str | None) -> Iterator[None]:
    """Hold ``path`` with our pid for the run; refuse to start while a live process holds it."""
    if path is None:
        yield
        return
    file = Path(path)
    try:
        other: int | None = int(file.read_text().strip())
    except (OSError, ValueError):
        other = None
    if other is not None and other != os.getpid() and _alive(other):
        raise UsageError(f"{file}: process {other} is still running")
    try:
        file.write_text(f"{os.getpid()}\n")
    except OSError as error:
        log.warning(" ! cannot write the pid file %s: %s", file, error.strerror)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if file.read_text().strip() == str(os.getpid()):
                file.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
