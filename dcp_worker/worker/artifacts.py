"""Fetching a job's work function, arguments and slice data, from allowed origins only.

A URI is a ``data:`` URI (read here) or an ``http(s):`` URL, fetched with a plain GET if its
origin is allowed for the purpose: the scheduler's origin (and its subdomains, same scheme) for
everything but ``workerFetch``; the ``allowedOrigins`` of the configuration for everything; and
the origins the scheduler grants a task's compute groups, when it is trusted to.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from dcp_worker.errors import JobValueError
from dcp_worker.worker.values import decode_body, decode_data_uri

__all__ = ["MODULES", "PURPOSES", "ArtifactFetcher", "OriginPolicy"]

PURPOSES = ("fetchWorkFunctions", "fetchArguments", "fetchData", "sendResults", "workerFetch")
# Modules come from wherever the scheduler's package manager says (see ``modules``).
MODULES = "fetchModules"
MAX_ARTIFACT_BYTES = 256 * 1024 * 1024


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class OriginPolicy:
    """Which origins may be fetched from, for which purpose."""

    def __init__(self, scheduler: str, allowed: Iterable[str] = ()) -> None:
        parts = urlsplit(scheduler)
        self._scheduler_scheme = parts.scheme
        self._scheduler_host = (parts.hostname or "").lower()
        self._scheduler_port = parts.port
        self._everywhere = {origin_of(origin) for origin in allowed}
        self._granted: dict[str, set[str]] = {}

    def grant(self, origin: str, purpose: str) -> None:
        """Allow ``origin`` for ``purpose`` (``any``: every purpose), as a task's compute groups ask."""
        self._granted.setdefault(purpose, set()).add(origin_of(origin))

    def allows(self, url: str, purpose: str) -> bool:
        if purpose == MODULES:
            return True
        origin = origin_of(url)
        if origin in self._everywhere or origin in self._granted.get("any", ()):
            return True
        if origin in self._granted.get(purpose, ()):
            return True
        return purpose != "workerFetch" and self._is_scheduler(url)

    def _is_scheduler(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        return (
            parts.scheme == self._scheduler_scheme
            and parts.port == self._scheduler_port
            and (host == self._scheduler_host or host.endswith("." + self._scheduler_host))
        )


class ArtifactFetcher:
    """Reads job values from URIs; every failure is a ``JobValueError`` naming the URI."""

    def __init__(
        self,
        policy: OriginPolicy,
        http: aiohttp.ClientSession,
        timeout: float = 300.0,
        max_bytes: int = MAX_ARTIFACT_BYTES,
    ) -> None:
        self.policy = policy
        self._http = http
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_bytes = max_bytes

    async def fetch(self, uri: object, purpose: str) -> Any:
        value, _ = await self.fetch_sized(uri, purpose)
        return value

    async def fetch_sized(self, uri: object, purpose: str) -> tuple[Any, int]:
        """The value at ``uri`` and the length of its encoded form (what DCP counts as data size)."""
        if not isinstance(uri, str) or not uri:
            raise JobValueError(f"{purpose}: no URI ({uri!r})")
        shown = uri if len(uri) <= 80 else uri[:77] + "..."
        if uri.startswith("data:"):
            try:
                return decode_data_uri(uri), len(uri)
            except JobValueError as error:
                raise JobValueError(f"{purpose}: {shown}: {error}") from None
        if urlsplit(uri).scheme not in ("http", "https"):
            raise JobValueError(f"{purpose}: {shown}: only data:, http: and https: URIs are fetched")
        if not self.policy.allows(uri, purpose):
            raise JobValueError(f"{purpose}: {shown}: origin {origin_of(uri)} is not allowed (EPERM_ORIGIN)")
        try:
            async with self._http.get(uri, timeout=self._timeout) as response:
                if response.status != 200:
                    raise JobValueError(f"{purpose}: {shown}: HTTP {response.status}")
                if (response.content_length or 0) > self._max_bytes:
                    raise JobValueError(f"{purpose}: {shown}: larger than {self._max_bytes} bytes")
                body = await response.content.read(self._max_bytes + 1)
                if len(body) > self._max_bytes:
                    raise JobValueError(f"{purpose}: {shown}: larger than {self._max_bytes} bytes")
                content_type = response.headers.get("Content-Type")
        except (aiohttp.ClientError, TimeoutError) as error:
            raise JobValueError(f"{purpose}: {shown}: {error or type(error).__name__}") from None
        try:
            return decode_body(body, content_type), len(body)
        except JobValueError as error:
            raise JobValueError(f"{purpose}: {shown}: {error}") from None
