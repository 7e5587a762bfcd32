"""Where a scheduler's services live: its ``/etc/dcp-config.kvin``, as dcp-client reads it.

A scheduler publishes its configuration as KVIN (``?ver=2.1.0``: KVIN v9); the worker needs the
locations of the task distributor, the result submitter and the event router from it. A service
it does not name is taken to live at the scheduler's own location.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from dcp_worker import kvin
from dcp_worker.errors import ConnectError, KVINError
from dcp_worker.jsvalues import JSObject

__all__ = ["Services", "discover"]

CONFIG_PATH = "etc/dcp-config.kvin?ver=2.1.0"
# The DCP protocol this worker speaks, for the scheduler's scheduler.compatibility.minimum.dcp.
PROTOCOL_MAJOR = 5


@dataclass(frozen=True, slots=True)
class Services:
    task_distributor: str
    result_submitter: str
    event_router: str
    package_manager: str


async def discover(http: aiohttp.ClientSession, scheduler: str, timeout: float = 60.0) -> Services:
    """Read the scheduler's configuration; ``ConnectError`` says why it cannot be had or used."""
    url = scheduler + CONFIG_PATH
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                raise ConnectError(
                    f"cannot fetch the scheduler's configuration at {url}: HTTP {response.status}"
                )
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as error:
        raise ConnectError(
            f"cannot fetch the scheduler's configuration at {url}: {error or type(error).__name__}"
        ) from None
    try:
        config = kvin.deserialize(text)
    except KVINError as error:
        raise ConnectError(f"the scheduler's configuration at {url} is not KVIN: {error}") from None
    scheduler_config = _mapping(_mapping(config).get("scheduler"))
    minimum = _mapping(_mapping(scheduler_config.get("compatibility")).get("minimum")).get("dcp")
    if isinstance(minimum, str) and not _compatible(minimum):
        raise ConnectError(f"{scheduler} needs DCP protocol {minimum}; this worker speaks {PROTOCOL_MAJOR}.x")
    services = _mapping(scheduler_config.get("services"))
    return Services(
        *(_location(_mapping(services.get(name)).get("location")) or scheduler for name in _SERVICE_NAMES)
    )


_SERVICE_NAMES = ("taskDistributor", "resultSubmitter", "eventRouter", "packageManager")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _location(value: Any) -> str | None:
    """A URL as the configuration holds it: a string, a ``DcpURL`` object, or ``{href}``."""
    if isinstance(value, JSObject):
        value = value.arg if isinstance(value.arg, str) else value.props.get("href")
    elif isinstance(value, Mapping):
        value = value.get("href")
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        return None
    return value if value.endswith("/") else value + "/"


def _compatible(requirement: str) -> bool:
    """Does protocol 5.x meet ``requirement`` (``^5.0.0``, ``>=5``, ``5.2.0``...)?"""
    digits = requirement.lstrip("^~>=v ").split(".")[0]
    if not digits.isdigit():
        return True  # a form not understood here is left to the scheduler to enforce
    if requirement.startswith(">"):
        return int(digits) <= PROTOCOL_MAJOR
    return int(digits) == PROTOCOL_MAJOR
