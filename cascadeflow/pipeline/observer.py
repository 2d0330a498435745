"""Telemetry, as the pipeline sees it: the adapter layer implements `Observer`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from cascadeflow.entry import Entry
from cascadeflow.request import Request
from cascadeflow.session import Session
from cascadeflow.usage import Usage


class StepRecord(Protocol):
    """What an observer may read of a finished step (`cascadeflow.pipeline.Step` has it)."""

    request: Request
    kwargs: dict[str, Any]  # as sent
    session: Session
    chain: tuple[Session, ...]
    entry: Entry
    usage: Usage | None
    step_no: int

    @property
    def started_ns(self) -> int:
        """Wall clock, ns since the epoch."""

    @property
    def ended_ns(self) -> int: ...

    @property
    def sent_prompt(self) -> Any:
        """The prompt as sent, after redaction (what captured content records)."""

    content_allowed: bool  # no compliance profile of the chain forbids recording prompt text
    stop_error: str | None  # the PolicyStop enforcement raised instead of sending
    span: Any  # what `Observer.step_started` returned on the caller's thread, or None


class Observer(Protocol):
    """Every method but `session_opened` runs on the background worker."""

    capture_content: bool  # prompt and answer text go on spans (when compliance allows)

    def session_opened(self, session: Session) -> None: ...

    def activate(self, span: Any) -> Any:
        """Make a session's span current in this context (the caller's thread); returns what
        `deactivate` takes."""

    def deactivate(self, activation: Any) -> None: ...

    def step_started(self, session: Session, operation: str, name: str) -> Any:
        """On the caller's thread, just before the send (or the tool's code): the step's span
        context, made current. Kept by the step as `span`, read by `step_recorded`."""

    def step_sent(self, started: Any) -> None:
        """The send returned (or raised): the context `step_started` made current is left."""

    def step_dropped(self, started: Any) -> None:
        """On the worker: the call `step_started` was made for is no step (observe could not
        read its arguments); a span already started for it ends."""

    def session_closed(self, session: Session) -> None: ...

    def step_recorded(self, step: StepRecord) -> None:
        """The step is settled (or was stopped): its span, with its timestamps, and metrics."""

    def decisions_made(self, entries: Sequence[Entry]) -> None: ...

    def breaker_changed(self, deployment: str, old: str, new: str) -> None: ...

    def alert_raised(self, kind: str) -> None: ...
