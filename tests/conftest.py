"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kvin_peer import KvinPeer

# The scheduler double's fixture (`scheduler_double`) lives beside the double's driver.
pytest_plugins = ["scheduler_double"]


@pytest.fixture(scope="session")
def kvin_peer() -> Iterator[KvinPeer]:
    """node running kvin@9.0.0 (tests/node/kvin_peer.js), one process for the whole session."""
    peer = KvinPeer()
    try:
        yield peer
    finally:
        peer.close()
