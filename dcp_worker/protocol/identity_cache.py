"""Trust on first use: the address each DCP service had when we first met it.

The file is dcp-client's own ``identity-cache.json`` (``{"<origin><path>": "0x…"}``) in the
resource directory, so this worker and dcp-client agree on what they have seen. A service whose
address later differs is refused; the message says how to forget it if the change is genuine.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

from dcp_worker.errors import IdentityError, PeerIdentityError
from dcp_worker.protocol.identity import checksum_address
from dcp_worker.protocol.private_file import write_private

__all__ = ["IdentityCache"]

FILE_NAME = "identity-cache.json"
WRITE_DISABLE_VARIABLE = "DCP_IDENTITY_CACHE_WRITE_DISABLE"


class IdentityCache:
    """Addresses by service base URL, persisted in ``path`` (``None``: kept in memory only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._identities: dict[str, str] = {}
        if path is not None and path.is_file():
            try:
                stored = json.loads(path.read_text())
            except (OSError, ValueError):
                stored = {}  # dcp-client also starts afresh from a corrupt cache
            if isinstance(stored, dict):
                for base, address in stored.items():
                    try:
                        self._identities[base] = checksum_address(address)
                    except (IdentityError, TypeError):
                        continue

    def known(self, location: str) -> str | None:
        """The address first met at ``location``, if any."""
        return self._identities.get(_base_href(location))

    def learn(self, location: str, address: str) -> None:
        """Remember ``address`` for ``location``, or refuse it if another was seen there first."""
        base = _base_href(location)
        known = self._identities.get(base)
        if known is not None:
            if known != address:
                raise PeerIdentityError(
                    f"{base} answered as {address}, but was {known} when first met;"
                    f" if the change is genuine, remove its line from {self.path or 'the identity cache'}"
                )
            return
        self._identities[base] = address
        self._save()

    def _save(self) -> None:
        if self.path is None or os.environ.get(WRITE_DISABLE_VARIABLE):
            return
        # An unwritable cache costs only the memory of this run, as in dcp-client.
        with contextlib.suppress(OSError):
            write_private(self.path, json.dumps(self._identities))


def _base_href(location: str) -> str:
    parts = urlsplit(location)
    return f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"
