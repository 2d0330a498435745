"""Process-wide state: the resolved config, the policy engine, the ambient session; `init`/`shutdown`."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cascadeflow import config as config_mod
from cascadeflow.config import Config
from cascadeflow.session import Session
from cascadeflow.telemetry import Alert, AlertSink, Dispatcher, Providers, Telemetry
from cascadeflow.telemetry import resolve as resolve_telemetry

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price map at import


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


class Runtime:
    """Everything a step needs besides its request and its sessions."""

    def __init__(self, config: Config, approver: Any = None, providers: Providers | None = None,
                 sinks: Sequence[AlertSink] = ()) -> None:
        from cascadeflow.policy.engine import Engine

        self.config = config
        self.providers = providers
        self.telemetry = None if providers is None else Telemetry(providers, _otel_capture(config))
        self.alerts = Dispatcher(sinks, on_alert=self._count_alert)
        self.mode = config.mode
        self.engine = Engine(config, approver=approver)
        from cascadeflow.cascade.routing import build

        self.cascades = build(config.cascades, f"file {config.config_file}") if config.cascades else {}
        self.guardrails = _policy_store(config, self.alerts) if config.mode != "off" else None
        self.engine.guardrails = self.guardrails
        self.ambient = Session(config.run.model_copy(update={"budget": None, "max_steps": None,
                                                             "max_tool_calls": None}),
                               max_entries=config.ambient_max_entries, ambient=True)
        self.ambient.mode = config.mode
        self.instrumented: list[str] = []

    def capture_allowed(self, chain: Sequence[Session]) -> bool:
        """No enclosing compliance profile forbids storing prompt content."""
        profiles = self.engine.view(chain).profiles
        return all(self.config.compliance[p].capture_content for p in profiles)

    def capture_content(self, chain: Sequence[Session]) -> bool:
        """Content goes into the trace: opted in, and allowed here."""
        return self.config.capture_content and self.capture_allowed(chain)

    def _count_alert(self, alert: Alert) -> None:
        if self.telemetry is not None:
            self.telemetry.alert_raised(alert.kind)

    def close(self) -> None:
        """Deliver pending alerts and flush (and, if cascadeflow made them, shut down) exporters."""
        self.alerts.close()
        if self.providers is not None:
            self.providers.close()


def _policy_store(config: Config, alerts: Dispatcher) -> Any:
    """The guardrail policy: the configured file (relative to the config file), else the built-in."""
    from pathlib import Path

    from cascadeflow.guardrails.policy import PolicyStore

    path = None
    if config.guardrails_file:
        path = Path(config.guardrails_file)
        if not path.is_absolute() and config.sources.get("guardrails_file") == "file" and config.config_file:
            path = Path(config.config_file).parent / path

    def rejected(error: str) -> None:
        alerts.emit(Alert("guardrail_policy_rejected", error, severity="error",
                          attributes={"file": str(path)}))

    store = PolicyStore(path, on_error=rejected)
    policy = store.current()
    names = [config.run.guardrails, *(a.guardrails for a in config.agents.values()),
             *(c.guardrails for c in config.compliance.values())]
    for name in names:
        if name is not None and name not in policy.profiles:
            from cascadeflow.errors import ConfigError

            raise ConfigError("guardrails", name, policy.source,
                              f"no such guardrail profile; the policy has {sorted(policy.profiles)}")
    return store


def _otel_capture(config: Config) -> bool:
    """Content on spans: the cascadeflow setting or the conventional OpenTelemetry variable."""
    flag = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").strip().lower()
    return config.capture_content or flag in ("1", "true", "yes")


_lock = threading.RLock()
_state = Runtime(Config())


def state() -> Runtime:
    return _state


def mode() -> str:
    return _state.mode


def init(mode: str | None = None, *, config: str | os.PathLike[str] | None = None,
         budget: float | None = None, max_steps: int | None = None, max_tool_calls: int | None = None,
         max_latency_ms: float | None = None, compliance: str | None = None,
         kpi_weights: dict[str, float] | None = None, capture_content: bool | None = None,
         instrument: Sequence[str] | None = None, approver: Any = None,
         ambient_max_entries: int | None = None, budget_pressure: float | None = None,
         budget_alert: float | None = None, kpi_hysteresis: float | None = None,
         otel: bool | None = None, tracer_provider: Any = None, meter_provider: Any = None,
         alerts: Sequence[AlertSink] | None = None, guardrails: str | None = None,
         guardrails_file: str | os.PathLike[str] | None = None) -> InitReport:
    """Resolve settings (keyword > env > file > default), patch the client libraries, report."""
    from cascadeflow import interceptors

    global _state
    code: dict[str, Any] = {
        "mode": mode, "config": None if config is None else os.fspath(config), "budget": budget,
        "max_steps": max_steps, "max_tool_calls": max_tool_calls, "max_latency_ms": max_latency_ms,
        "compliance": compliance, "kpi_weights": kpi_weights, "capture_content": capture_content,
        "instrument": None if instrument is None else tuple(instrument),
        "ambient_max_entries": ambient_max_entries, "budget_pressure": budget_pressure,
        "kpi_hysteresis": kpi_hysteresis, "budget_alert": budget_alert, "otel": otel,
        "guardrails": guardrails,
        "guardrails_file": None if guardrails_file is None else os.fspath(guardrails_file),
    }
    resolved = config_mod.resolve(code)
    if approver is not None and not callable(approver):
        from cascadeflow.errors import ConfigError

        raise ConfigError("approver", approver, "init()", "expected a callable(tool, args, kwargs) -> bool")
    sinks = list(alerts or ())
    for sink in sinks:
        if not callable(sink):
            from cascadeflow.errors import ConfigError

            raise ConfigError("alerts", sink, "init()", "each alert sink must be a callable(Alert)")
    providers = None
    if resolved.mode != "off":
        providers = resolve_telemetry(resolved.otel if resolved.sources.get("otel") != "default"
                                      else None, tracer_provider, meter_provider,
                                      "init()" if otel is not None else "config")
    with _lock:
        runtime = Runtime(resolved, approver=approver, providers=providers, sinks=sinks)
        if resolved.mode == "off":
            interceptors.uninstrument()
        else:
            runtime.instrumented = interceptors.instrument(resolved.instrument)
        previous, _state = _state, runtime
    previous.close()
    versions = {"config": resolved.version} if resolved.version else {}
    if runtime.guardrails is not None:
        versions["guardrails"] = runtime.guardrails.policy.version
    return InitReport(mode=resolved.mode, instrumented=list(runtime.instrumented),
                      sources=dict(resolved.sources), config_file=resolved.config_file,
                      policy_versions=versions,
                      telemetry=None if providers is None else providers.origin)


def shutdown() -> None:
    """Restore every patched function and go back to mode `off`."""
    from cascadeflow import interceptors

    global _state
    with _lock:
        interceptors.uninstrument()
        previous, _state = _state, Runtime(Config())
    previous.close()
