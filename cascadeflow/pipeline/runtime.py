"""The runtime: everything a step needs besides its request and its sessions.

`cascadeflow.init()` builds one and installs it; interceptors, `@tool` and `run()` read the
installed one once, at their entry, and hand it down explicitly. Telemetry and alert delivery
live in the adapter layer above, so the runtime holds them behind two small interfaces.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

from cascadeflow.alert import Alert
from cascadeflow.breakers import breakers, model_of
from cascadeflow.config import Config
from cascadeflow.entry import NOT_FALLBACKS, Entry
from cascadeflow.guardrails.policy import Policy, PolicyStore
from cascadeflow.ledger import Ledger
from cascadeflow.pipeline.observer import Observer
from cascadeflow.pipeline.stored import StoredInputs
from cascadeflow.policy import Engine
from cascadeflow.policy.view import ChainView
from cascadeflow.secrets import scrub
from cascadeflow.session import CURRENT, Session
from cascadeflow.worker import Worker, shared, telemetry

log = logging.getLogger("cascadeflow")
# how long the exit of an outermost `run()` waits for its spans to reach the span processors
HANDOVER_S = 2.0

# Set while a cascade makes an attempt: the cascade chose the model, policies must not switch it.
attempting: ContextVar[bool] = ContextVar("cascadeflow_cascade_attempt", default=False)


class CascadeRunner(Protocol):
    """A configured cascade, called by its logical name through an intercepted client."""

    def run(self, call: Callable[..., Any], kwargs: Mapping[str, Any], client: str = ...,
            reachable: tuple[str, ...] | None = ..., operation: str = ...,
            endpoint: str | None = ...) -> Any: ...

    async def arun(self, call: Callable[..., Any], kwargs: Mapping[str, Any], client: str = ...,
                   reachable: tuple[str, ...] | None = ..., operation: str = ...,
                   endpoint: str | None = ...) -> Any: ...


class Runtime:
    """Config, policy engine, guardrail policies, cascades, telemetry, alerts, the worker."""

    def __init__(self, config: Config, *, engine: Engine | None = None, worker: Worker | None = None,
                 policies: PolicyStore | None = None,
                 cascades: Mapping[str, CascadeRunner] | None = None,
                 observer: Observer | None = None,
                 alert: Callable[[Alert], None] | None = None, ledger: Ledger | None = None,
                 telemetry_worker: Worker | None = None) -> None:
        self.config = config
        self.mode: str = config.mode
        self.enforce = config.mode == "enforce"
        self.engine = engine or Engine(config)
        self.worker = worker or shared()
        # spans and metrics: the application's processors and exporters, apart from settlements
        self.telemetry_worker = telemetry_worker or telemetry()
        self.policies = policies
        self.cascades: Mapping[str, CascadeRunner] = cascades or {}
        self.observer = observer
        self.ledger = ledger  # usage events, windowed budgets and rate limits (docs/ledger.md)
        self.stored = StoredInputs()  # what Responses calls continuing a settled response are billed
        self._alert = alert
        self.telemetry_errors = 0  # telemetry hooks that raised (a user's span processor, exporter)
        # prompt text is read after the call returns (trace content, span content)
        self.reads_prompts = config.capture_content or bool(observer and observer.capture_content)
        self.ambient = Session(config.run.model_copy(update={"budget": None, "max_steps": None,
                                                             "max_tool_calls": None}),
                               max_entries=config.ambient_max_entries, ambient=True, hooks=self)

    def take_over(self, previous: Runtime) -> None:
        """What the process measured outlives an `init()` that replaces `previous`: the ambient
        session (its totals, trace and run id), the latencies observed and the Responses ids
        settled, which calls still in flight under `previous` keep adding to. This runtime's
        settings apply to the ambient session's next calls."""
        self.engine.latency = previous.engine.latency
        self.stored = previous.stored
        ambient = previous.ambient
        ambient.rehome(self, self.ambient.limits)
        self.worker.submit(ambient.keep, self.config.ambient_max_entries)  # between its entries
        self.ambient = ambient

    # -- what steps read -------------------------------------------------------------------
    def policy(self) -> Policy | None:
        """The guardrail policy in force now (hot-reloaded from its file)."""
        return None if self.policies is None else self.policies.current()

    def view(self, chain: tuple[Session, ...], policy: Policy | None) -> ChainView:
        """What the rules need to know of `chain` (cached on its innermost session), with the
        budgets and limits it shares with other processes through the ledger."""
        shares = None if self.ledger is None else self.ledger.shares(chain)
        return self.engine.view(chain, policy, shares, () if shares is None else shares.budgets)

    def capture_allowed(self, view: ChainView) -> bool:
        """No compliance profile of the chain `view` was made for (under this runtime's config,
        when the step was admitted) forbids storing prompt content. The chain's sessions are not
        read again: a later `init()` may have given the ambient session a profile this runtime's
        config does not have."""
        return all(self.config.compliance[p].capture_content for p in view.profiles)

    def notify(self, hook: Callable[..., Any], *args: Any) -> Any:
        """Call a telemetry hook and return what it returns. Its failure (a span processor or
        exporter of the application that raises) is counted and logged, never passed on to the
        call it observes: then None."""
        try:
            return hook(*args)
        except Exception:
            self._hook_failed(hook)
            return None

    def observed(self, hook: Callable[..., Any], *args: Any) -> None:
        """Queue a telemetry hook of the worker's (a span built, metrics recorded) on the
        telemetry worker, in order: a span processor or exporter that hangs holds up telemetry
        only, never the settlements that budgets, `summary()` and `trace()` wait for."""
        self.telemetry_worker.submit(self.notify, hook, *args)

    def _hook_failed(self, hook: Callable[..., Any]) -> None:
        """Count and log (the first, then every thousandth) the exception being handled."""
        self.telemetry_errors += 1
        if self.telemetry_errors == 1 or self.telemetry_errors % 1000 == 0:
            log.exception("cascadeflow telemetry hook %s failed (%d so far); the call goes on",
                          getattr(hook, "__name__", hook), self.telemetry_errors)

    def emit(self, alert: Alert) -> None:
        """Send an alert to the sinks (they run on their own thread), which count it
        (`alert_emitted`); with none, count it here."""
        if self._alert is not None:
            self._alert(alert)
        else:
            self.alert_emitted(alert)

    def alert_emitted(self, alert: Alert) -> None:
        """Count an alert on its way to the sinks, from the runtime or from the ledger."""
        if self.observer is not None:
            self.notify(self.observer.alert_raised, alert.kind)

    def breaker_changed(self, deployment: str, old: str, new: str) -> None:
        """A circuit breaker moved (on the thread of the call that moved it): count it, record
        it in the open sessions, and alert when one opens."""
        if self.observer is not None:
            self.notify(self.observer.breaker_changed, deployment, old, new)
        model = model_of(deployment)  # the trace keeps no endpoint address
        self.note("breaker", f"{old}_to_{new}", model=model,
                  message=f"circuit breaker of {model} moved from {old} to {new}")
        if new == "open":
            self.emit(Alert("breaker_open", f"circuit breaker for {deployment} opened ({old} -> open)",
                            attributes={"deployment": deployment, "from": old}))

    # -- cascade events ----------------------------------------------------------------------
    def note(self, action: str, reason: str, *, model: str | None, message: str = "",
             degraded: bool = False) -> None:
        """Record a cascade event (retry, fallback, skip, degraded answer, breaker transition) in
        the open sessions, written by the worker in order. An event is not a step: it takes the
        number of the latest step and does not count toward `max_steps`. Cascades route in
        observe mode too, so events are always `applied`."""
        if self.mode == "off":
            return
        session = CURRENT.get() or self.ambient
        entry = Entry(action=action, reason=reason, applied=True, mode=self.mode,
                      requested_model=model, model=model, agent=session.agent_in_chain,
                      operation="cascade", run_id=session.run_id, status="ok")
        if message:
            entry.extra = {"message": scrub(message)}  # provider error texts can quote keys
        if not self.enforce:  # observe: steps are numbered by the worker's replay, so number it there
            self.worker.submit(self._noted, session, None, entry, degraded)
            return
        with session.lock:
            numbers = tuple(s.steps for s in session.chain)
            self.worker.submit(self._noted, session, numbers, entry, degraded)

    def _noted(self, session: Session, numbers: tuple[int, ...] | None, entry: Entry,
               degraded: bool) -> None:
        if numbers is None:
            numbers = tuple(s.steps for s in session.chain)
        for s, number in zip(session.chain, numbers, strict=True):
            s.add_entry(number, entry)
            if entry.action == "retry":
                s.retries += 1
            elif entry.action == "fallback" and entry.reason not in NOT_FALLBACKS:
                s.fallbacks += 1
            if degraded:
                s.degraded = True
        if self.ledger is not None:
            self.ledger.entries(session.chain, numbers[-1], [entry])
        if self.observer is not None:
            self.observed(self.observer.decisions_made, [entry])

    # -- SessionHooks: what sessions tell the runtime ----------------------------------------
    def in_force(self) -> str:
        return _installed.mode

    def opened(self, session: Session) -> None:
        if self.observer is not None:
            self.notify(self.observer.session_opened, session)

    def closed(self, session: Session) -> None:
        """Queue the session span's end after its steps. With telemetry, an outermost session
        waits for the workers, so its spans and metrics are handed over when `with run()` exits
        (for at most `HANDOVER_S`: a span processor that hangs does not hold the exit)
        (its trace is complete whenever it is read: `summary()` and `trace()` wait anyway)."""
        if self.observer is not None and session.span is not None:
            self.worker.submit(self.observed, self.observer.session_closed, session)
            if session.parent is None:
                self.worker.flush()
                self.telemetry_worker.flush_unless_stuck(HANDOVER_S)

    def outcome(self, session: Session) -> None:
        """The ledger keeps the outcome, written by the worker after the steps queued before it
        (the caller never waits on the ledger's file)."""
        if self.ledger is not None and session.outcome_label is not None:
            self.worker.submit(self.ledger.outcome, session, session.outcome_label,
                               session.outcome_value, session.outcome_ts or time.time())

    def flush(self) -> None:
        self.worker.flush()

    def activate(self, session: Session) -> Any:
        """Make the session's span current where the session is (None without one)."""
        observer = self.observer
        if observer is None or session.span is None:
            return None
        return self.notify(observer.activate, session.span)

    def deactivate(self, activation: Any) -> None:
        if self.observer is not None:
            self.notify(self.observer.deactivate, activation)

    # -- a step's span, current around the send (caller's thread) ---------------------------
    def span_started(self, session: Session, operation: str, name: str) -> Any:
        """The span the step will have, made current until `span_sent`, so spans opened
        meanwhile (HTTP clients, the tool's own code) nest under it; None when the observer
        failed. Callers check for an observer first (its absence is the common, free case)."""
        observer = self.observer
        assert observer is not None
        try:  # `notify`, inline: one frame less on every call
            return observer.step_started(session, operation, name)
        except Exception:
            self._hook_failed(observer.step_started)
            return None

    def span_sent(self, started: Any) -> None:
        observer = self.observer
        assert observer is not None
        try:  # `notify`, inline
            observer.step_sent(started)
        except Exception:
            self._hook_failed(observer.step_sent)

    def span_dropped(self, started: Any) -> None:
        """The step `span_started` was made for is none (see `Observer.step_dropped`)."""
        if self.observer is not None:
            self.notify(self.observer.step_dropped, started)


_installed = _BEFORE_INIT = Runtime(Config())


def current() -> Runtime:
    """The runtime `init()` installed (mode `off` before the first `init`)."""
    return _installed


def initialised() -> bool:
    """Whether `init()` has installed a runtime (decorators run at import, often before it)."""
    return _installed is not _BEFORE_INIT


def install(runtime: Runtime) -> Runtime:
    """Make `runtime` current; returns the one it replaces. Breaker changes go to the new one."""
    global _installed
    previous, _installed = _installed, runtime
    listeners = breakers.listeners
    if previous.breaker_changed in listeners:
        listeners.remove(previous.breaker_changed)
    listeners.append(runtime.breaker_changed)
    return previous
