"""The durable ledger: usage events, windowed budgets and rate limits shared across processes."""

from cascadeflow.ledger.events import UsageEvent
from cascadeflow.ledger.ledger import Ledger, Sink
from cascadeflow.ledger.quotas import Quotas, SharedBudget, Shares
from cascadeflow.ledger.sqlite import SQLiteStore
from cascadeflow.ledger.store import Refusal, Settlement, Store, StoreUnavailable, nano

__all__ = ["Ledger", "Quotas", "Refusal", "SQLiteStore", "Settlement", "SharedBudget", "Shares",
           "Sink", "Store", "StoreUnavailable", "UsageEvent", "nano"]
