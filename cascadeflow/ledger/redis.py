"""Redis as the ledger's store across machines (see docs/ledger.md)."""

from __future__ import annotations

from cascadeflow.errors import ConfigError
from cascadeflow.ledger.store import Store


def open_redis(url: str, source: str) -> Store:
    """The store at `url`; a ConfigError naming `ledger.url` when it cannot be used."""
    raise ConfigError("ledger.url", url, source, "the Redis store is not available in this build")
