"""`init` and `shutdown`: build the runtime from the resolved settings, patch the client libraries.

This is the only place that knows every layer: it makes the policy engine, the guardrail policy,
the cascades, telemetry and alert delivery, hands them to a `Runtime`, installs it, and closes
what the previous one opened (after the worker has written everything queued for it).
"""

from __future__ import annotations

import atexit
import inspect
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cascadeflow import config as config_mod
from cascadeflow import interceptors
from cascadeflow.alert import Alert
from cascadeflow.breakers import breakers
from cascadeflow.cascade.clients import clients as cascade_clients
from cascadeflow.cascade.routing import build as build_cascades
from cascadeflow.config import Config
from cascadeflow.errors import ConfigError
from cascadeflow.guardrails.policy import PolicyStore
from cascadeflow.ledger import Ledger, Quotas, Sink, StoreUnavailable
from cascadeflow.ledger.breakerstore import RedisBreakerStore, open_redis_breakers
from cascadeflow.ledger.redis import open_redis
from cascadeflow.pipeline import Runtime, current, install
from cascadeflow.policy import Engine
from cascadeflow.telemetry import AlertSink, Dispatcher, Providers, Telemetry
from cascadeflow.telemetry import resolve as resolve_telemetry
from cascadeflow.worker import shared, telemetry

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price map at import
FLUSH_AT_EXIT_S = 5.0


@dataclass(frozen=True)
class InitReport:
    """What `init` did: the mode, the instrumented libraries, where each setting came from."""

    mode: str
    instrumented: list[str]
    sources: dict[str, str]
    config_file: str | None
    policy_versions: dict[str, str] = field(default_factory=dict)
    telemetry: str | None = None  # "code" | "app" | "otlp", or None when off

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


@dataclass
class _Opened:
    """What one `init` opened, closed when the next `init` or `shutdown` replaces it."""

    dispatcher: Dispatcher
    providers: Providers | None
    ledger: Ledger | None = None
    breakers: RedisBreakerStore | None = None  # circuit breakers shared through the ledger's Redis

    def close(self) -> None:
        shared().flush(FLUSH_AT_EXIT_S)  # spans and records queued for these providers first
        telemetry().flush_unless_stuck(FLUSH_AT_EXIT_S)
        if self.ledger is not None:  # settlements the worker just queued, then the sinks' alerts
            self.ledger.close(FLUSH_AT_EXIT_S)
            _closed_losses["ledger_dropped"] += self.ledger.writer.dropped
            _closed_losses["ledger_lost"] += self.ledger.writer.lost
            _closed_losses["ledger_counters_lost"] += self.ledger.counters_lost
            _closed_losses["ledger_store_errors"] += self.ledger.store_errors
            _closed_losses["usage_sink_errors"] += self.ledger.sink_errors
        self.dispatcher.close(FLUSH_AT_EXIT_S)
        _closed_losses["alerts_dropped"] += self.dispatcher.dropped
        _closed_losses["alert_sink_errors"] += self.dispatcher.failed
        if self.providers is not None and not self.providers.close(FLUSH_AT_EXIT_S):
            _closed_losses["telemetry_stalls"] += 1
        if self.breakers is not None:
            _closed_losses["breaker_store_errors"] += self.breakers.errors
            self.breakers.close()


_lock = threading.RLock()
_opened = _Opened(Dispatcher(()), None)
# of dispatchers and ledgers already closed
_closed_losses = {"alerts_dropped": 0, "alert_sink_errors": 0, "ledger_dropped": 0, "ledger_lost": 0,
                  "ledger_counters_lost": 0, "ledger_store_errors": 0, "usage_sink_errors": 0,
                  "breaker_store_errors": 0, "telemetry_stalls": 0, "telemetry_errors": 0}


def _path(setting: str, value: Any) -> Any:
    """A path argument as text; a ConfigError naming it for what is no path (`os.fspath` would
    raise a TypeError that names neither the setting nor its source)."""
    if value is None:
        return None
    try:
        path = os.fspath(value)
    except TypeError:
        path = None
    if not isinstance(path, str):  # bytes too: `Path` takes no bytes
        raise ConfigError(setting, value, "init()", "expected a file path (str or os.PathLike)")
    return path


def _check_provider(setting: str, value: Any, kind: str, method: str) -> None:
    """An OpenTelemetry provider is refused here when it is none, not as an AttributeError from
    deep in telemetry setup (or, in mode `off`, never)."""
    if value is not None and not callable(getattr(value, method, None)):
        raise ConfigError(setting, value, "init()", f"expected an OpenTelemetry {kind} (with {method}())")


def init(mode: str | None = None, *, config: str | os.PathLike[str] | None = None,
         budget: float | None = None, max_steps: int | None = None, max_tool_calls: int | None = None,
         max_latency_ms: float | None = None, compliance: str | None = None,
         kpi_weights: dict[str, float] | None = None, capture_content: bool | None = None,
         instrument: Sequence[str] | None = None, approver: Any = None,
         ambient_max_entries: int | None = None, budget_pressure: float | None = None,
         budget_alert: float | None = None, kpi_hysteresis: float | None = None,
         otel: bool | None = None, otel_client_spans: str | None = None,
         tracer_provider: Any = None, meter_provider: Any = None,
         alerts: Sequence[AlertSink] | None = None, guardrails: str | None = None,
         guardrails_file: str | os.PathLike[str] | None = None, unknown_price: str | None = None,
         run_max_entries: int | None = None,
         budget_wait_s: float | None = None, tools_exempt: Sequence[str] | None = None,
         on_usage: Sequence[Sink] | None = None) -> InitReport:
    """Resolve settings (keyword > env > file > default), patch the client libraries, report."""
    global _opened
    code: dict[str, Any] = {
        "mode": mode, "config": _path("config", config), "budget": budget,
        "max_steps": max_steps, "max_tool_calls": max_tool_calls, "max_latency_ms": max_latency_ms,
        "compliance": compliance, "kpi_weights": kpi_weights, "capture_content": capture_content,
        "instrument": tuple(instrument) if isinstance(instrument, list | tuple) else instrument,
        "ambient_max_entries": ambient_max_entries, "budget_pressure": budget_pressure,
        "kpi_hysteresis": kpi_hysteresis, "budget_alert": budget_alert, "otel": otel,
        "otel_client_spans": otel_client_spans,
        "guardrails": guardrails,
        "guardrails_file": _path("guardrails_file", guardrails_file),
        "unknown_price": unknown_price, "budget_wait_s": budget_wait_s,
        "run_max_entries": run_max_entries,
        "tools_exempt": tuple(tools_exempt) if isinstance(tools_exempt, list | tuple) else tools_exempt,
    }
    resolved = config_mod.resolve(code)
    if approver is not None and not callable(approver):
        raise ConfigError("approver", approver, "init()", "expected a callable(tool, args, kwargs) -> bool")
    if approver is not None and _is_async(approver):
        raise ConfigError("approver", approver, "init()",
                          "expected a plain function returning True or False; an async approver "
                          "cannot be awaited where a tool is approved (run its work in a thread)")
    if alerts is not None and not isinstance(alerts, list | tuple):
        raise ConfigError("alerts", alerts, "init()", "expected a list of alert sinks")
    sinks = list(alerts or ())
    for sink in sinks:
        if not callable(sink):
            raise ConfigError("alerts", sink, "init()", "each alert sink must be a callable(Alert)")
    _check_provider("tracer_provider", tracer_provider, "TracerProvider", "get_tracer")
    _check_provider("meter_provider", meter_provider, "MeterProvider", "get_meter")
    if on_usage is not None and (not isinstance(on_usage, list | tuple)
                                 or not all(callable(s) for s in on_usage)):
        raise ConfigError("on_usage", on_usage, "init()", "expected a list of callables(dict)")
    if on_usage and resolved.ledger is None:
        raise ConfigError("on_usage", on_usage, "init()", "usage events come from the ledger: add a "
                          "[ledger] section to the config file (docs/ledger.md)")
    providers = None
    if resolved.mode != "off":
        providers = resolve_telemetry(resolved.otel if resolved.sources.get("otel") != "default"
                                      else None, tracer_provider, meter_provider,
                                      "init()" if otel is not None else "config")
    opened = _Opened(Dispatcher(sinks), providers)
    try:
        if resolved.mode != "off" and resolved.ledger is not None:
            opened.ledger = _ledger(resolved, opened, list(on_usage or ()))
            opened.breakers = _shared_breakers(resolved)
        runtime = _runtime(resolved, approver, opened)
    except BaseException:  # a setting refused after the ledger opened: nothing of it stays open
        opened.close()
        raise
    with _lock:
        if resolved.mode == "off":
            interceptors.uninstrument()
            instrumented: list[str] = []
        else:
            instrumented = interceptors.instrument(resolved.instrument)
        breakers.use(opened.breakers)
        runtime.take_over(current())  # what the process measured stays; shutdown() forgets it
        replaced = install(runtime)
        previous, _opened = _opened, opened
    previous.close()
    _closed_losses["telemetry_errors"] += replaced.telemetry_errors  # its hooks have run (close)
    # atexit runs last-registered first, and the OpenTelemetry SDK's providers shut themselves
    # down at exit from where they were made (before this init): come after them, so what is
    # still queued at exit reaches their processors before they stop
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)
    versions = {"config": resolved.version} if resolved.version else {}
    if runtime.policies is not None:
        versions["guardrails"] = runtime.policies.policy.version
    return InitReport(mode=resolved.mode, instrumented=instrumented, sources=dict(resolved.sources),
                      config_file=resolved.config_file, policy_versions=versions,
                      telemetry=None if providers is None else providers.origin)


def shutdown() -> None:
    """Restore every patched function, write what is queued, flush exporters, close the HTTP
    clients cascades opened; mode `off`."""
    global _opened
    with _lock:
        interceptors.uninstrument()
        breakers.use(None)
        replaced = install(Runtime(Config()))
        previous, _opened = _opened, _Opened(Dispatcher(()), None)
    previous.close()
    _closed_losses["telemetry_errors"] += replaced.telemetry_errors
    cascade_clients.close()


def stats() -> dict[str, int]:
    """What was lost or contained so far, for monitoring cascadeflow itself: telemetry hooks
    that raised (a span processor or exporter of the application), background tasks dropped
    (queue full) or failed, alerts dropped (their queue full) and alert sinks that raised;
    reads and writes of shared breaker state that Redis failed (served from the process's own);
    the ledger's events dropped or lost, and spend Redis has not taken yet (owed, sent with the
    next batch) or never took (lost).
    The calls themselves are never affected by any of these."""
    worker, spans = shared(), telemetry()
    with _lock:
        opened = _opened
    ledger = opened.ledger.stats() if opened.ledger is not None else {}
    return {"telemetry_errors": _closed_losses["telemetry_errors"] + current().telemetry_errors,
            "tasks_dropped": worker.dropped,
            "tasks_failed": worker.failed, "telemetry_dropped": spans.dropped,
            "telemetry_stalls": spans.stalls + _closed_losses["telemetry_stalls"],
            "alerts_dropped": _closed_losses["alerts_dropped"] + opened.dispatcher.dropped,
            "alert_sink_errors": _closed_losses["alert_sink_errors"] + opened.dispatcher.failed,
            "ledger_dropped": _closed_losses["ledger_dropped"] + ledger.get("ledger_dropped", 0),
            "ledger_lost": _closed_losses["ledger_lost"] + ledger.get("ledger_lost", 0),
            "ledger_store_errors": _closed_losses["ledger_store_errors"] + ledger.get(
                "ledger_store_errors", 0),
            "ledger_counters_owed": ledger.get("ledger_counters_owed", 0),
            "ledger_counters_lost": _closed_losses["ledger_counters_lost"] + ledger.get(
                "ledger_counters_lost", 0),
            "usage_sink_errors": _closed_losses["usage_sink_errors"] + ledger.get(
                "usage_sink_errors", 0),
            "breaker_store_errors": _closed_losses["breaker_store_errors"] + (
                opened.breakers.errors if opened.breakers is not None else 0)}


def flush(timeout: float | None = None) -> bool:
    """Wait until everything queued so far is written: trace entries, guardrail findings of
    observe mode, spans and metrics (handed to your exporters), usage events (committed to the
    ledger) and alerts to their sinks.

    Calls return before their records are written (the background worker writes them); a
    session's `summary()` and `trace()`, the end of an outermost `run()` and `shutdown()` wait
    for them. Call this before reading an exporter right after calls made outside any `run()`.
    Returns False if `timeout` (seconds) passed first; without one, alerts and spans are waited
    for 5 s at most (a sink or span processor that hangs), and False says some are still queued.
    """
    done = shared().flush(timeout)
    spans = telemetry()  # without a timeout, a span processor that hangs is not waited for again
    done = (spans.flush(timeout) if timeout is not None
            else spans.flush_unless_stuck(FLUSH_AT_EXIT_S)) and done
    with _lock:
        opened = _opened
    if opened.ledger is not None:
        done = opened.ledger.flush(timeout) and done
    # alerts: at most 5 s without a timeout (a sink that hangs must not hang this), but said
    done = opened.dispatcher.flush(5.0 if timeout is None else timeout) and done
    return done


def _is_async(approver: Any) -> bool:
    """An `async def` function, or an object whose `__call__` is one."""
    return inspect.iscoroutinefunction(approver) or inspect.iscoroutinefunction(type(approver).__call__)


def _runtime(config: Config, approver: Any, opened: _Opened) -> Runtime:
    telemetry = None
    if opened.providers is not None:
        telemetry = Telemetry(opened.providers, _otel_capture(config), config.otel_client_spans)
    cascades = build_cascades(config.cascades, f"file {config.config_file}") if config.cascades else {}
    runtime = Runtime(config, engine=Engine(config, approver=approver), cascades=cascades,
                      observer=telemetry, alert=opened.dispatcher.emit, ledger=opened.ledger)
    opened.dispatcher.on_alert = runtime.alert_emitted  # the ledger's alerts are counted too
    if config.mode != "off":
        runtime.policies = _policy_store(config, runtime)
    return runtime


def _ledger(config: Config, opened: _Opened, sinks: list[Sink]) -> Ledger:
    """The ledger of `[ledger]`, `[budgets]` and `[limits]`: a SQLite file, and Redis with `url`."""
    spec = config.ledger
    assert spec is not None
    where = f"file {config.config_file}"
    store = None
    redis = spec.redis_url(os.environ, config.config_file)
    if redis is not None:
        store = open_redis(*redis)
    try:
        return Ledger(spec, Quotas(config.budgets, config.limits, spec.time_zone),
                      opened.dispatcher.emit, sinks, store)
    except StoreUnavailable as exc:
        raise ConfigError("ledger.path", spec.path, where, str(exc)) from None


def _shared_breakers(config: Config) -> RedisBreakerStore | None:
    """With `[ledger] url` and `breakers = true`, circuit breakers keep their state in Redis."""
    spec = config.ledger
    redis = None if spec is None or not spec.breakers else spec.redis_url(os.environ,
                                                                           config.config_file)
    return None if redis is None else open_redis_breakers(*redis)


def _policy_store(config: Config, runtime: Runtime) -> PolicyStore:
    """The guardrail policy: the configured file (relative to the config file), else the built-in."""
    path = None
    if config.guardrails_file:
        path = Path(config.guardrails_file)
        if not path.is_absolute() and config.sources.get("guardrails_file") == "file" and config.config_file:
            path = Path(config.config_file).parent / path

    def rejected(kind: str, error: str) -> None:
        runtime.emit(Alert(kind, error, severity="error", attributes={"file": str(path)}))

    store = PolicyStore(path, on_error=rejected, origin=config.origin("guardrails_file"))
    policy = store.current()
    names = [("guardrails", config.run.guardrails, config.origin("guardrails")),
             *((f"agents.{n}.guardrails", a.guardrails, f"file {config.config_file}")
               for n, a in config.agents.items()),
             *((f"compliance.{n}.guardrails", c.guardrails, f"file {config.config_file}")
               for n, c in config.compliance.items())]
    for setting, name, origin in names:
        if name is not None and name not in policy.profiles:
            raise ConfigError(setting, name, origin, f"no such guardrail profile in {policy.source}; "
                                                     f"known: {sorted(policy.profiles)}")
    return store


# OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: the legacy true/false and the content
# capturing modes of the GenAI instrumentations (case-insensitive); cascadeflow emits no events,
# so only the modes that put content on spans turn it on
CAPTURE_VAR = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURE_VALUES = {"true": True, "1": True, "yes": True, "span_only": True, "span_and_event": True,
                   "false": False, "0": False, "no": False, "event_only": False, "no_content": False}


def _otel_capture(config: Config) -> bool:
    """Content on spans: cascadeflow's own setting where one is given (init(), its variable, the
    config file: an explicit no must not be turned into a yes by an environment shared with
    other instrumented services), else the conventional OpenTelemetry variable."""
    raw = os.environ.get(CAPTURE_VAR, "")
    flag = _CAPTURE_VALUES.get(raw.strip().lower(), None if raw.strip() else False)
    if flag is None:
        raise ConfigError(CAPTURE_VAR, raw, f"env {CAPTURE_VAR}",
                          "expected true, false, span_only, event_only, span_and_event or no_content")
    if config.sources.get("capture_content", "default") != "default":
        return config.capture_content
    return flag


@atexit.register
def _at_exit() -> None:
    """At interpreter exit, write what is queued (bounded in time), hand spans and metrics to the
    providers before they shut down (`init` registers this again) and deliver pending alerts."""
    with _lock:
        opened = _opened
    opened.close()
