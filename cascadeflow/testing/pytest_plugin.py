"""pytest fixtures for the built-in provider (loaded automatically through the pytest11 entry point)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cascadeflow.testing.server import ProviderServer


@pytest.fixture(scope="session")
def _cascadeflow_provider_server() -> Iterator[ProviderServer]:
    server = ProviderServer().start()
    yield server
    server.stop()


@pytest.fixture
def cascadeflow_provider(_cascadeflow_provider_server: ProviderServer) -> Iterator[ProviderServer]:
    """A started built-in provider, with faults, replies and recorded requests reset per test."""
    _cascadeflow_provider_server.reset()
    yield _cascadeflow_provider_server
    _cascadeflow_provider_server.reset()
