"""A job's modules: named by its ``dependencies``, located by the scheduler's package manager.

``fetchModuleURL {modules: [name, ...]}`` answers ``{group: {name: url}}``; each URL's text is
the module's CommonJS source, which the job's work function then ``require()``s by name. As in
dcp-client, the URLs are fetched without an origin check (the package manager that gave them is
the scheduler's own, over a signed session), and a set of modules is fetched once per run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

from dcp_worker.errors import JobValueError, ModuleError, ProtocolError
from dcp_worker.protocol.identity import Identity
from dcp_worker.protocol.session import Session, SessionOptions, open_session
from dcp_worker.supervisor.job import Module
from dcp_worker.worker.artifacts import MODULES, ArtifactFetcher

__all__ = ["ModuleFetcher"]


class ModuleFetcher:
    """Opens a session to the package manager the first time a job needs modules; the caller's
    ``stack`` owns (and closes) it."""

    def __init__(
        self,
        location: str,
        identity: Identity,
        options: SessionOptions,
        fetcher: ArtifactFetcher,
        stack: contextlib.AsyncExitStack,
    ) -> None:
        self._location = location
        self._identity = identity
        self._options = options
        self._fetcher = fetcher
        self._stack = stack
        self._session: Session | None = None
        self._opening = asyncio.Lock()
        self._known: dict[tuple[str, ...], dict[str, Module]] = {}

    async def modules(self, names: Sequence[str]) -> dict[str, Module]:
        """The modules ``names`` stand for; ``ModuleError`` when one cannot be had."""
        key = tuple(names)
        if key in self._known:
            return self._known[key]
        session = await self._package_manager()
        try:
            answer = await session.request("fetchModuleURL", {"modules": list(names)})
        except ProtocolError as error:
            raise ModuleError(f"modules {', '.join(names)}: {error}") from None
        if not isinstance(answer, Mapping) or answer.get("code") == "ENOENT":
            raise ModuleError(f"the package manager has no modules {', '.join(names)}")
        found: dict[str, Module] = {}
        for group in answer.values():
            if not isinstance(group, Mapping):
                raise ModuleError("the package manager's answer is not {group: {name: url}}")
            for name, url in group.items():
                try:
                    source = await self._fetcher.fetch(url, MODULES)
                except JobValueError as error:
                    raise ModuleError(f"module {name}: {error}") from None
                if isinstance(source, bytes):
                    source = source.decode("utf-8", errors="replace")
                if not isinstance(source, str):
                    raise ModuleError(f"module {name} is not JavaScript text")
                found[str(name)] = Module(source, f"{name}.js")
        missing = [name for name in names if name not in found]
        if missing:
            raise ModuleError(f"the package manager did not locate {', '.join(missing)}")
        self._known[key] = found
        return found

    async def _package_manager(self) -> Session:
        async with self._opening:
            if self._session is None:
                self._session = await self._stack.enter_async_context(
                    open_session(self._location, self._identity, options=self._options)
                )
            return self._session
