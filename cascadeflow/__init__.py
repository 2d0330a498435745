"""cascadeflow: tracing, budgets, policies, cascades and guardrails around every LLM call.

The public names are those of the API contract; everything else is internal.
"""

from cascadeflow._version import __version__
from cascadeflow.agents import agent, current_session, run
from cascadeflow.errors import (
    AllProvidersFailed,
    BudgetExceeded,
    CascadeflowError,
    ComplianceViolation,
    ConfigError,
    GuardrailBlocked,
    PolicyStop,
    RateLimited,
    StepLimitReached,
    StoreUnreachable,
    ToolDenied,
)
from cascadeflow.lifecycle import InitReport, flush, init, shutdown, stats
from cascadeflow.session import LoadedSession, Session, load_session
from cascadeflow.tools import tool

__all__ = [
    "AllProvidersFailed",
    "BudgetExceeded",
    "CascadeflowError",
    "ComplianceViolation",
    "ConfigError",
    "GuardrailBlocked",
    "InitReport",
    "LoadedSession",
    "PolicyStop",
    "RateLimited",
    "Session",
    "StepLimitReached",
    "StoreUnreachable",
    "ToolDenied",
    "__version__",
    "agent",
    "current_session",
    "flush",
    "init",
    "load_session",
    "run",
    "shutdown",
    "stats",
    "tool",
]
