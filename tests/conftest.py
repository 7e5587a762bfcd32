"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kvin_peer import KvinPeer

# Fixtures that live beside their helpers: `scheduler_double`, `start_worker`, `official_workers`.
pytest_plugins = ["scheduler_double", "worker_process", "official_worker"]


@pytest.fixture(scope="session")
def kvin_peer() -> Iterator[KvinPeer]:
    """node running kvin@9.0.0 (tests/node/kvin_peer.js), one process for the whole session."""
    peer = KvinPeer()
    try:
        yield peer
    finally:
        peer.close()
