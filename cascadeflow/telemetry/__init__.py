"""OpenTelemetry spans and metrics (GenAI conventions) and alert sinks."""

from cascadeflow.alert import Alert
from cascadeflow.telemetry.alerts import AlertSink, Dispatcher, LogSink, WebhookSink
from cascadeflow.telemetry.recorder import Telemetry
from cascadeflow.telemetry.setup import Providers, resolve

__all__ = ["Alert", "AlertSink", "Dispatcher", "LogSink", "Providers", "Telemetry", "WebhookSink",
           "resolve"]
