"""What the ledger keeps of a run: a usage event per settled (or stopped) step, as the ledger, the
request log and a billing system read it; the run's other trace entries; its outcomes.
Never prompt text unless content capture is on, never a secret."""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import asdict, dataclass, fields
from typing import Any

from cascadeflow.secrets import scrub


@dataclass(slots=True)
class UsageEvent:
    ts: float  # when the step started, epoch seconds
    run_id: str
    step: int
    user: str | None
    project: str | None
    agent: str | None
    workflow: str | None  # the outermost session's agent, or the cascade's logical name
    operation: str  # chat | embeddings | tool | ...
    requested_model: str | None
    model: str | None  # the model called (a switch in enforce changes it)
    provider: str | None
    tokens_in: int = 0  # input tokens in all, cached ones included
    tokens_out: int = 0
    cached_tokens: int = 0  # input tokens read from the provider's prompt cache
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float | None = 0.0  # USD; None when no price is known
    latency_ms: float | None = None
    status: str = "ok"  # ok | error | stopped | truncated | unread | ...
    error: str | None = None  # the exception type, never its text
    action: str = "allow"
    reason: str = "ok"
    applied: bool = False
    mode: str = "observe"
    tool: str | None = None
    tool_calls: int = 0  # tool calls the model asked for
    root_run_id: str | None = None  # the outermost run; None for a call outside any run()
    parent_run_id: str | None = None  # the session `run_id` opened in (an @agent call's caller)
    root_step: int | None = None  # the step's number in the outermost run
    budget: float | None = None  # the outermost run's budget, USD (its burn-down's limit)
    prefix_hash: str | None = None  # keyed hash of the cacheable prompt prefix, never the text
    metadata: dict[str, Any] | None = None  # the session's metadata, secrets masked
    content: dict[str, Any] | None = None  # prompt and completion, only with capture on

    def __post_init__(self) -> None:
        # a copy with secrets masked, taken when the step settles (on the worker): the session's
        # metadata is masked when it opens, but code may add to `session.metadata` afterwards,
        # and the ledger, the metering file and every sink get what is kept here
        if self.metadata is not None:
            # a dict that holds itself, a __str__ that raises: it is no JSON either, so it stays
            # as it is and the writer loses this record alone, and says so
            with suppress(Exception):
                self.metadata = scrub(self.metadata)

    @property
    def uncached_tokens(self) -> int:
        return max(self.tokens_in - self.cached_tokens, 0)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["uncached_tokens"] = self.uncached_tokens
        return out

    def to_row(self) -> tuple[Any, ...]:
        """The event in the column order of `COLUMNS` (metadata and content as JSON)."""
        values = [getattr(self, name) for name in COLUMNS]
        meta, content = COLUMNS.index("metadata"), COLUMNS.index("content")
        for i in (meta, content):
            values[i] = None if values[i] is None else to_json(values[i])
        values[COLUMNS.index("applied")] = int(self.applied)
        return tuple(values)


def to_json(value: Any, separators: tuple[str, str] | None = None) -> str:
    """`value` as JSON, values JSON has no type for as text; a key JSON cannot hold (a tuple, a
    date, an Enum) as text too, rather than the error that would cost the whole record."""
    try:
        return json.dumps(value, default=str, separators=separators)
    except TypeError:
        return json.dumps(_text_keys(value), default=str, separators=separators)


def _text_keys(value: Any) -> Any:
    """A copy of `value` whose dict keys JSON cannot hold are text."""
    if isinstance(value, dict):
        return {k if k is None or isinstance(k, str | int | float) else str(k): _text_keys(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_text_keys(v) for v in value]
    return value


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(UsageEvent))
# the keys of a trace entry a run entry keeps: labels, numbers and cascadeflow's own words
ENTRY_KEYS = ("action", "reason", "applied", "operation", "agent", "model", "target_model",
             "tools_denied", "message", "rule", "kind", "stage", "score", "count", "primary")


@dataclass(slots=True)
class RunEntry:
    """A non-allow trace entry of a run: a decision, a guardrail finding, a cascade event or a
    breaker transition. Kept apart from the usage events because many come after their step's
    event is written (output findings, a fallback after the attempt that failed, a degraded
    answer after the last step). `entry` holds only `ENTRY_KEYS`: never a matched text, never
    a provider's message."""

    root_run_id: str
    run_id: str  # the session it was recorded in
    step: int  # its number in the outermost run
    ts: float
    user: str | None
    entry: dict[str, Any]

    def to_row(self) -> tuple[Any, ...]:
        return (self.root_run_id, self.run_id, self.step, self.ts, self.user,
                to_json(self.entry, separators=(",", ":")))


@dataclass(slots=True)
class Outcome:
    """What a run or an @agent call delivered (`session.outcome`): the latest one counts."""

    run_id: str
    ts: float
    label: str
    value: float | None
    user: str | None
    project: str | None
    agent: str | None
    root_run_id: str | None
    parent_run_id: str | None

    def to_row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))


OUTCOME_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Outcome))
