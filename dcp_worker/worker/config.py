"""The worker's configuration: one ``WorkerConfig``, merged from layers, each naming its source.

Layers, lowest precedence first:

1. built-in defaults;
2. the system file, ``$DCP_ETCDIR/dcp-worker/config.toml`` (``/etc/dcp-worker/config.toml``);
3. the user's file, ``<resource dir>/dcp-worker/config.toml`` (``~/.dcp/dcp-worker/config.toml``);
4. ``--config FILE``;
5. ``DCP_WORKER_<NAME>`` environment variables (``DCP_WORKER_MAX_SANDBOXES=4``);
6. the command line.

Files are TOML, keyed by the official worker's option names (``paymentAddress``, ``cores``,
``maxSandboxes``, ...). A value may be written in TOML's own types or as the string the command
line takes (``cores = "4,1"`` or ``cores = {cpu = 4, gpu = 1}``). Configuration is data: nothing
in it is executed. An unknown key, a bad value or an unreadable file is a ``UsageError`` naming
the key and the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dcp_worker.errors import IdentityError, UsageError
from dcp_worker.governor.settings import OPTION_NAMES, GovernorSettings, parse_option
from dcp_worker.protocol.dcp_home import resource_dir
from dcp_worker.worker.compute_groups import ComputeGroup

__all__ = [
    "DEFAULT_SCHEDULER",
    "ENVIRONMENT_PREFIX",
    "ConfigLayer",
    "WorkerConfig",
    "load_config",
    "setting_names",
]

DEFAULT_SCHEDULER = "https://scheduler.distributed.computer/"
ENVIRONMENT_PREFIX = "DCP_WORKER_"
GOVERNOR_PREFIX = "governor."  # marks a governor setting's field in a layer's changes
OUTPUT_MODES = ("detect", "console", "dashboard", "syslog", "logfile")
SYSLOG_TRANSPORTS = ("udp", "tcp", "unix")
SYSLOG_FACILITIES = ("user", "daemon", *(f"local{n}" for n in range(8)))
# DCP_WORKER_* variables that are not settings: this package's own switches and the official
# worker's (which an operator may still have set).
RESERVED_VARIABLES = frozenset(
    {
        "DCP_WORKER_PASSPHRASE",
        "DCP_WORKER_NO_EXTENSIONS",
        "DCP_WORKER_NO_LOCKDOWN",
        "DCP_WORKER_UNHANDLED_REJECTION_LOG",
        "DCP_WORKER_CHECK_SEMVER",
    }
)
_EH1 = re.compile(r"eh1-[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    scheduler: str = DEFAULT_SCHEDULER
    payment_address: str | None = None
    cores_cpu: float | None = None  # None: every core this process may use
    cores_gpu: float | None = None
    utilization_cpu: float = 1.0
    utilization_gpu: float = 0.75
    max_sandboxes: int | None = None  # None: one per effective core
    verbose: int = 0
    output: str = "detect"
    join: tuple[ComputeGroup, ...] = ()
    leave_public_group: bool = False
    public_group_fallback: bool = False
    job_ids: tuple[str, ...] = ()  # empty: any job
    allowed_origins: tuple[str, ...] = ()
    identity_key: str | None = None
    identity_keystore: str | None = None
    report_interval: float | None = None
    logfile: str = "dcp-worker.log"
    syslog_address: str = "loghost"
    syslog_facility: str = "local7"
    syslog_transport: str = "udp"
    syslog_port: int = 514
    pid_file: str | None = None
    cleanup_timeout: float = 60.0
    minimum_wage: tuple[tuple[str, float], ...] = (("CPU", 0.0), ("GPU", 0.0), ("in", 0.0), ("out", 0.0))
    trust_scheduler: bool = True  # let tasks grant their compute groups' origins
    require_lockdown: bool = False  # refuse to start unless sandbox hosts raise every wall
    governor: GovernorSettings = field(default_factory=GovernorSettings)
    # Where each setting came from, for --showConfig: name -> source.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def effective_cores(self) -> tuple[float, float]:
        cpu = self.cores_cpu if self.cores_cpu is not None else float(_usable_cpus())
        gpu = self.cores_gpu if self.cores_gpu is not None else 1.0
        return cpu * self.utilization_cpu, gpu * self.utilization_gpu

    def sandbox_count(self) -> int:
        if self.max_sandboxes is not None:
            return self.max_sandboxes
        return max(1, int(self.effective_cores()[0]))

    def as_settings(self) -> dict[str, Any]:
        """The settings by their official names, as plain values (for --dumpConfig)."""
        return {setting.name: setting.show(self) for setting in SETTINGS}


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# -- parsing values ------------------------------------------------------------------------------


class _Bad(ValueError):
    """A value that cannot be used; the message says what was expected."""


def _number(value: object, what: str = "a number", minimum: float | None = 0.0) -> float:
    if isinstance(value, bool):
        raise _Bad(f"expected {what}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _Bad(f"expected {what}, not {value!r}") from None
    if not isinstance(value, int | float) or value != value or value in (float("inf"), float("-inf")):
        raise _Bad(f"expected {what}")
    if minimum is not None and value < minimum:
        raise _Bad(f"expected {what} of at least {minimum:g}, not {value:g}")
    return float(value)


def _integer(value: object, minimum: int = 0) -> int:
    number = _number(value, "a whole number", minimum)
    if number != int(number):
        raise _Bad(f"expected a whole number, not {number:g}")
    return int(number)


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad("expected a non-empty string")
    return value.strip()


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise _Bad(f"expected true or false, not {value!r}")


def _pair(value: object, names: tuple[str, str]) -> tuple[float | None, float | None]:
    """``"cpu[,gpu]"``, ``",gpu"`` or ``{cpu, gpu}``, as the official -c and -u take them."""
    if isinstance(value, Mapping):
        unknown = set(value) - set(names)
        if unknown:
            raise _Bad(f"unknown key {sorted(unknown)[0]!r} (expected {names[0]} and {names[1]})")
        return tuple(  # type: ignore[return-value]
            None if value.get(name) is None else _number(value[name]) for name in names
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number(value), None
    if not isinstance(value, str):
        raise _Bad(f"expected {names[0]}[,{names[1]}]")
    parts = value.split(",")
    if len(parts) > 2:
        raise _Bad(f"expected {names[0]}[,{names[1]}], not {value!r}")
    first = _number(parts[0]) if parts[0].strip() else None
    second = _number(parts[1]) if len(parts) == 2 and parts[1].strip() else None
    if first is None and second is None:
        raise _Bad(f"expected {names[0]}[,{names[1]}], not {value!r}")
    return first, second


def _list(value: object) -> list[object]:
    """A list, or a string of ``;``-separated items (the form environment variables take)."""
    if isinstance(value, str):
        return [item for item in (part.strip() for part in value.split(";")) if item]
    if isinstance(value, list | tuple):
        return list(value)
    raise _Bad("expected a list")


def _group(value: object) -> ComputeGroup:
    """``"joinKey,joinSecret"``, ``"joinKey,eh1-<64 hex>"`` or ``{joinKey, joinSecret|joinHash}``."""
    if isinstance(value, Mapping):
        key = _text(value.get("joinKey", ""))
        if "joinHash" in value:
            joined = re.sub(r"\s", "", str(value["joinHash"]))
            if not _EH1.fullmatch(joined):
                raise _Bad(f"the joinHash of {key!r} is not eh1- and 64 hex digits")
            return ComputeGroup(key, joined)
        if not isinstance(value.get("joinSecret"), str):
            raise _Bad(f"the group {key!r} needs a joinSecret or a joinHash")
        return ComputeGroup.from_secret(key, value["joinSecret"])
    text = _text(value)
    key, separator, credential = text.partition(",")
    if not separator or not key.strip() or not credential:
        raise _Bad(f"expected joinKey,joinSecret or joinKey,eh1-<hash>, not {text!r}")
    key = key.strip()
    if credential.startswith("eh1-") and len(credential) == 68:
        if not _EH1.fullmatch(credential):
            raise _Bad(f"the hash for {key!r} is not eh1- and 64 hex digits")
        return ComputeGroup(key, credential)
    return ComputeGroup.from_secret(key, credential)


def _url(value: object) -> str:
    text = _text(value)
    if not re.match(r"https?://[^/\s]+", text):
        raise _Bad(f"expected an http:// or https:// URL, not {text!r}")
    return text if text.endswith("/") else text + "/"


def _origin(value: object) -> str:
    text = _text(value)
    match = re.fullmatch(r"(https?://[^/\s?#]+)/?", text)
    if match is None:
        raise _Bad(f"expected an origin such as http://host:port, not {text!r}")
    return match.group(1).lower()


def _address(value: object) -> str:
    from dcp_worker.protocol.identity import checksum_address  # keccak, only when an address is given

    try:
        return checksum_address(_text(value))
    except IdentityError as error:
        raise _Bad(str(error)) from None


def _choice(choices: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = _text(value).lower()
        if text not in choices:
            raise _Bad(f"expected one of {', '.join(choices)}, not {value!r}")
        return text

    return parse


def _wage(value: object) -> tuple[tuple[str, float], ...]:
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",")]
        if len(parts) != 4:
            raise _Bad(f"expected CPU,GPU,in,out (four numbers), not {value!r}")
        return tuple(zip(("CPU", "GPU", "in", "out"), map(_number, parts), strict=True))
    if not isinstance(value, Mapping):
        raise _Bad("expected {CPU, GPU, in, out}")
    unknown = set(value) - {"CPU", "GPU", "in", "out"}
    if unknown:
        raise _Bad(f"unknown key {sorted(unknown)[0]!r} (expected CPU, GPU, in, out)")
    return tuple((name, _number(value.get(name, 0))) for name in ("CPU", "GPU", "in", "out"))


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its official name, the WorkerConfig fields it fills, and how to read it."""

    name: str
    apply: Callable[[object], dict[str, Any]]
    show: Callable[[WorkerConfig], Any]
    repeatable: bool = False


def _single(attribute: str, parse: Callable[[object], Any]) -> Callable[[object], dict[str, Any]]:
    return lambda value: {attribute: parse(value)}


def _shown(attribute: str) -> Callable[[WorkerConfig], Any]:
    return lambda config: getattr(config, attribute)


def _cores(value: object) -> dict[str, Any]:
    cpu, gpu = _pair(value, ("cpu", "gpu"))
    return {key: number for key, number in (("cores_cpu", cpu), ("cores_gpu", gpu)) if number is not None}


def _governor_option(name: str) -> Callable[[object], dict[str, Any]]:
    """A governor option's value, as ``{"governor.<field>": value}`` (see ``apply_layers``)."""

    def parse(value: object) -> dict[str, Any]:
        if name == "hours" and isinstance(value, list | tuple):
            value = ", ".join(str(window) for window in value)
        try:
            parsed = parse_option(name, value)
        except ValueError as error:
            raise _Bad(str(error)) from None
        return {GOVERNOR_PREFIX + field: item for field, item in parsed.items()}

    return parse


def _governor_shown(name: str) -> Callable[[WorkerConfig], Any]:
    return lambda config: config.governor.as_options()[name]


def _utilization(value: object) -> dict[str, Any]:
    cpu, gpu = _pair(value, ("cpu", "gpu"))
    for number in (cpu, gpu):
        if number is not None and not 0 < number <= 1:
            raise _Bad(f"expected fractions above 0 and at most 1, not {number:g}")
    return {
        key: number
        for key, number in (("utilization_cpu", cpu), ("utilization_gpu", gpu))
        if number is not None
    }


SETTINGS: tuple[Setting, ...] = (
    Setting("scheduler", _single("scheduler", _url), _shown("scheduler")),
    Setting("paymentAddress", _single("payment_address", _address), _shown("payment_address")),
    Setting("cores", _cores, lambda c: {"cpu": c.cores_cpu, "gpu": c.cores_gpu}),
    Setting("utilization", _utilization, lambda c: {"cpu": c.utilization_cpu, "gpu": c.utilization_gpu}),
    Setting("maxSandboxes", _single("max_sandboxes", lambda v: _integer(v, 0)), _shown("max_sandboxes")),
    Setting("verbose", _single("verbose", lambda v: _integer(v, 0)), _shown("verbose")),
    Setting("output", _single("output", _choice(OUTPUT_MODES)), _shown("output")),
    Setting(
        "join",
        _single("join", lambda v: tuple(_group(item) for item in _list(v))),
        lambda c: [{"joinKey": g.join_key, "joinHash": g.join_hash} for g in c.join],
        repeatable=True,
    ),
    Setting("leavePublicGroup", _single("leave_public_group", _flag), _shown("leave_public_group")),
    Setting("publicGroupFallback", _single("public_group_fallback", _flag), _shown("public_group_fallback")),
    Setting(
        "jobIds",
        _single("job_ids", lambda v: tuple(_text(item) for item in _list(v))),
        lambda c: list(c.job_ids),
        repeatable=True,
    ),
    Setting(
        "allowedOrigins",
        _single("allowed_origins", lambda v: tuple(_origin(item) for item in _list(v))),
        lambda c: list(c.allowed_origins),
        repeatable=True,
    ),
    Setting("identityKey", _single("identity_key", _text), lambda c: "(set)" if c.identity_key else None),
    Setting("identityKeystore", _single("identity_keystore", _text), _shown("identity_keystore")),
    Setting(
        "reportInterval",
        _single("report_interval", lambda v: _number(v, "seconds", 0.1)),
        _shown("report_interval"),
    ),
    Setting("logfile", _single("logfile", _text), _shown("logfile")),
    Setting("syslogAddress", _single("syslog_address", _text), _shown("syslog_address")),
    Setting(
        "syslogFacility",
        _single("syslog_facility", _choice(SYSLOG_FACILITIES)),
        _shown("syslog_facility"),
    ),
    Setting(
        "syslogTransport", _single("syslog_transport", _choice(SYSLOG_TRANSPORTS)), _shown("syslog_transport")
    ),
    Setting("syslogPort", _single("syslog_port", lambda v: _integer(v, 1)), _shown("syslog_port")),
    Setting("pidFile", _single("pid_file", _text), _shown("pid_file")),
    Setting(
        "cleanupTimeout",
        _single("cleanup_timeout", lambda v: _number(v, "seconds", 0)),
        _shown("cleanup_timeout"),
    ),
    Setting("minimumWage", _single("minimum_wage", _wage), lambda c: dict(c.minimum_wage)),
    Setting("trustScheduler", _single("trust_scheduler", _flag), _shown("trust_scheduler")),
    Setting("requireLockdown", _single("require_lockdown", _flag), _shown("require_lockdown")),
    *(
        Setting(name, _governor_option(name), _governor_shown(name), repeatable=name == "hours")
        for name in OPTION_NAMES
    ),
)
_BY_NAME = {setting.name: setting for setting in SETTINGS}


def setting_names() -> list[str]:
    return [setting.name for setting in SETTINGS]


def environment_name(name: str) -> str:
    """``maxSandboxes`` -> ``DCP_WORKER_MAX_SANDBOXES``."""
    return ENVIRONMENT_PREFIX + re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


_BY_ENVIRONMENT = {environment_name(setting.name): setting for setting in SETTINGS}


@dataclass(frozen=True, slots=True)
class ConfigLayer:
    """Values by setting name, from one source (a file, the environment, the command line)."""

    source: str
    values: Mapping[str, object]


def file_layer(path: Path, required: bool) -> ConfigLayer | None:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise UsageError(f"{path}: no such configuration file") from None
        return None
    except OSError as error:
        raise UsageError(f"{path}: cannot read the configuration file: {error.strerror}") from None
    try:
        values = tomllib.loads(text.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UsageError(f"{path}: not TOML: {error}") from None
    return ConfigLayer(str(path), values)


def environment_layer(environment: Mapping[str, str]) -> ConfigLayer:
    values: dict[str, object] = {}
    for variable, value in environment.items():
        if not variable.startswith(ENVIRONMENT_PREFIX) or variable in RESERVED_VARIABLES:
            continue
        setting = _BY_ENVIRONMENT.get(variable)
        if setting is None:
            raise UsageError(f"environment: {variable} is not a dcp-worker setting")
        values[setting.name] = value
    return ConfigLayer("environment", values)


def default_files(environment: Mapping[str, str]) -> list[Path]:
    etc = Path(environment.get("DCP_ETCDIR") or "/etc")
    return [etc / "dcp-worker" / "config.toml", resource_dir() / "dcp-worker" / "config.toml"]


def apply_layers(layers: Iterable[ConfigLayer], base: WorkerConfig | None = None) -> WorkerConfig:
    """Each layer over the last; a repeatable setting on the command line adds to the layers below."""
    config = base or WorkerConfig()
    sources: dict[str, str] = dict(config.sources)
    for layer in layers:
        changes: dict[str, Any] = {}
        for name, value in layer.values.items():
            setting = _BY_NAME.get(name)
            if setting is None:
                raise UsageError(f"{layer.source}: unknown setting {name!r}{_suggestion(name)}")
            try:
                parsed = setting.apply(value)
            except _Bad as error:
                raise UsageError(f"{layer.source}: {name}: {error}") from None
            if setting.repeatable and layer.source == "command line":
                parsed = {key: (*_field(config, key), *items) for key, items in parsed.items()}
            changes.update(parsed)
            sources[name] = layer.source
        governed = {
            key.removeprefix(GOVERNOR_PREFIX): changes.pop(key)
            for key in list(changes)
            if key.startswith(GOVERNOR_PREFIX)
        }
        if governed:
            changes["governor"] = replace(config.governor, **governed)
        config = replace(config, **changes)
    return replace(config, sources=sources)


def _field(config: WorkerConfig, key: str) -> Any:
    """A WorkerConfig field, or a governor setting's field for a ``governor.`` key."""
    if key.startswith(GOVERNOR_PREFIX):
        return getattr(config.governor, key.removeprefix(GOVERNOR_PREFIX))
    return getattr(config, key)


def _suggestion(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, setting_names(), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_config(
    command_line: Mapping[str, object],
    config_file: Path | None = None,
    environment: Mapping[str, str] | None = None,
) -> WorkerConfig:
    """The merged configuration: files, then ``--config FILE``, the environment, the command line."""
    environment = os.environ if environment is None else environment
    layers = [layer for path in default_files(environment) if (layer := file_layer(path, required=False))]
    if config_file is not None:
        layer = file_layer(config_file, required=True)
        assert layer is not None
        layers.append(layer)
    layers.append(environment_layer(environment))
    layers.append(ConfigLayer("command line", command_line))
    return apply_layers(layers)
