"""Finding or making the tracer and meter providers, the ecosystem's way.

1. Providers passed to `init(tracer_provider=..., meter_provider=...)` win.
2. Else, if the application already set global providers, cascadeflow uses them.
3. Else `init(otel=True)` or the standard `OTEL_EXPORTER_OTLP_*` / `OTEL_TRACES_EXPORTER=otlp`
   variables make cascadeflow build its own: a batch span processor and a periodic metric reader
   exporting over OTLP/HTTP (the `otlp` extra). They export only cascadeflow's telemetry and are
   not installed as the global providers, which stay the application's to choose.
4. Else there is no telemetry, and no cost on the call path.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from cascadeflow.errors import ConfigError

log = logging.getLogger("cascadeflow.telemetry")

# providers whose flush has not returned yet (id of the tracer provider -> set when it returns):
# one that hangs is waited for once, not at every later init() and shutdown()
_closing: dict[int, threading.Event] = {}
_closing_lock = threading.Lock()

_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# the protocol the standard variables may ask for; cascadeflow's own exporters speak only this
_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
              "OTEL_EXPORTER_OTLP_PROTOCOL")
_HTTP_PROTOBUF = "http/protobuf"


@dataclass
class Providers:
    tracer_provider: Any
    meter_provider: Any
    origin: str  # "code" | "app" | "otlp"
    owned: bool  # created by cascadeflow: flushed and shut down by `shutdown()`

    def flush(self) -> None:
        for provider in (self.tracer_provider, self.meter_provider):
            flush = getattr(provider, "force_flush", None)
            if callable(flush):
                flush()

    def close(self, timeout: float) -> bool:
        """Flush, and shut down what cascadeflow made, waiting at most `timeout` seconds; False
        when that ran out. The SDK's batch processor blocks in `force_flush`, whatever timeout it
        is given, while its exporter hangs (a wedged collector): that must not hang `shutdown()`,
        `init()` or the interpreter's exit. What raises is logged, never passed on."""
        key = id(self.tracer_provider)
        with _closing_lock:
            if key in _closing and not _closing[key].is_set():
                return False  # still stuck in the flush an earlier close started
            done = _closing[key] = threading.Event()

        def close() -> None:
            try:
                self._close()
            except Exception:
                log.exception("cascadeflow: flushing or shutting down the telemetry providers failed")
            finally:
                done.set()
                with _closing_lock:
                    if _closing.get(key) is done:
                        del _closing[key]

        threading.Thread(target=close, name="cascadeflow-otel-close", daemon=True).start()
        if done.wait(timeout):
            return True
        log.error("cascadeflow: the telemetry providers did not flush within %.1fs (an exporter "
                  "that hangs?); not waiting for them", timeout)
        return False

    def _close(self) -> None:
        self.flush()
        if self.owned:
            for provider in (self.tracer_provider, self.meter_provider):
                stop = getattr(provider, "shutdown", None)
                if callable(stop):
                    stop()


def _app_configured() -> tuple[Any, Any] | None:
    from opentelemetry import metrics, trace

    tracer_provider = trace.get_tracer_provider()
    if isinstance(tracer_provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    meter_provider = metrics.get_meter_provider()
    return tracer_provider, meter_provider


def wanted_by_env(environ: dict[str, str] | os._Environ[str]) -> bool:
    if any(environ.get(key) for key in _ENV):
        return True
    return environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "otlp"


def resolve(otel: bool | None, tracer_provider: Any, meter_provider: Any, source: str) -> Providers | None:
    """The providers to use, or None when telemetry is off."""
    if otel is False:
        return None
    if tracer_provider is not None or meter_provider is not None:
        from opentelemetry import metrics, trace

        return Providers(tracer_provider or trace.get_tracer_provider(),
                         meter_provider or metrics.get_meter_provider(), "code", owned=False)
    app = _app_configured()
    if app is not None:
        return Providers(app[0], app[1], "app", owned=False)
    if not (otel or wanted_by_env(os.environ)):
        return None
    return _otlp(source)


def _otlp(source: str) -> Providers:
    for variable in _PROTOCOLS:
        protocol = os.environ.get(variable, "").strip()
        if protocol and protocol.lower() != _HTTP_PROTOBUF:
            # else every export would go over HTTP to an endpoint that speaks another protocol
            # (a gRPC collector port), failing in the exporter's log lines only
            raise ConfigError(variable, protocol, f"env {variable}",
                              "cascadeflow's own OTLP exporters send http/protobuf only; for "
                              "another protocol configure a global TracerProvider and MeterProvider "
                              "with its exporter, which cascadeflow then uses")
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigError("otel", True, source, "exporting over OTLP needs the exporter: "
                          "pip install 'cascadeflow[otlp]'") from None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()  # reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    # shut down by `shutdown()` or at exit by cascadeflow, after what is queued is handed over
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
    return Providers(tracer_provider, meter_provider, "otlp", owned=True)
