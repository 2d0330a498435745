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
    # of cascadeflow's own OTLP providers: the reader to collect again for what a call in flight
    # through `close` records after it (its exporter outlives the shutdown)
    reader: Any = None
    closed: bool = False

    def deliver_late(self) -> None:
        """After `close`, export what was just recorded, here and now: a call in flight through
        `shutdown()` or a reloading `init()` records its spans and metrics on these providers, and
        those cascadeflow made were shut down (their spans go out as they end, see `_late_spans`;
        metrics are collected here). The exporter's own timeout bounds it."""
        if not self.closed or self.reader is None:
            return
        try:
            self.reader.collect()
        except Exception:
            log.exception("cascadeflow: exporting metrics recorded after shutdown failed")

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
        self.closed = True  # from here on what a call in flight records is delivered as it comes
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

    resource = Resource.create()  # reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    # shut down by `shutdown()` or at exit by cascadeflow, after what is queued is handed over
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(_late_spans(OTLPSpanExporter()))
    metrics = OTLPMetricExporter()
    reader = PeriodicExportingMetricReader(_kept_metrics(metrics))
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
    return Providers(tracer_provider, meter_provider, "otlp", owned=True, reader=reader)


# cascadeflow's own providers are shut down by `shutdown()` and a reloading `init()` while a call
# may still be in flight on another thread or task; it records its spans and metrics on them when
# it ends. Their exporters therefore outlive the shutdown (which stops the batching threads), and
# what comes later is exported as it comes, on the thread recording it, as the closed ledger
# writer and alert dispatcher deliver theirs: dropped by the shut-down processors, it was lost.
def _late_spans(exporter: Any) -> Any:
    """A batch span processor whose exporter outlives its shutdown: after it, each span is
    exported as it ends."""
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    class Kept(SpanExporter):  # the batch processor's `shutdown()` leaves it open for late spans
        def export(self, spans: Any) -> Any:
            return exporter.export(spans)

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(exporter.force_flush(timeout_millis))

        def shutdown(self) -> None:
            return None

    class LateSpans(SpanProcessor):
        def __init__(self) -> None:
            self._batch: Any = BatchSpanProcessor(Kept())
            self._closed = False
            self._lock = threading.Lock()

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            self._batch.on_start(span, parent_context=parent_context)

        def on_end(self, span: Any) -> None:
            with self._lock:  # queued before the batch's shutdown took its queue, or exported here
                if not self._closed:
                    self._batch.on_end(span)
                    return
            if span.context is not None and span.context.trace_flags.sampled:
                try:
                    exporter.export((span,))
                except Exception:
                    log.exception("cascadeflow: exporting a span ended after shutdown failed")

        def shutdown(self) -> None:
            with self._lock:
                self._closed = True
            self._batch.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(self._batch.force_flush(timeout_millis))

    return LateSpans()


def _kept_metrics(exporter: Any) -> Any:
    """A metric exporter that outlives its reader's shutdown, as `_late_spans` keeps the span
    exporter (the reader asks it for the exporter's temporality and aggregation)."""
    from opentelemetry.sdk.metrics.export import MetricExporter

    class KeptMetrics(MetricExporter):
        def __init__(self) -> None:
            super().__init__(preferred_temporality=getattr(exporter, "_preferred_temporality", None),
                             preferred_aggregation=getattr(exporter, "_preferred_aggregation", None))

        def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
            return exporter.export(metrics_data, timeout_millis=timeout_millis, **kwargs)

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return bool(exporter.force_flush(timeout_millis=timeout_millis))

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            return None

    return KeptMetrics()

