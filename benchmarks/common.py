"""What the benchmarks share, without importing litellm (the callgrind child must not: its import
alone takes minutes under valgrind)."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

POOL = """
[models."openai/gpt-4o-mini"]
quality = 0.9
latency_ms = 400
tags = ["gdpr"]

[models."openai/gpt-4.1-nano"]
quality = 0.5
latency_ms = 250
tags = ["gdpr"]

# gdpr without its guardrail profile: the policy engine's cost, measured apart from guardrails
[compliance.bench]
model_tags = ["gdpr"]
"""
MESSAGES = [{"role": "system", "content": "You classify support tickets."},
            {"role": "user", "content": "I was charged twice for my subscription this month."}]
BUDGET_KPI: dict[str, Any] = {"budget": 1000.0, "kpi_weights": {"quality": 0.8, "cost": 0.2}}
ENFORCE_RUN: dict[str, Any] = {**BUDGET_KPI, "compliance": "bench"}


def config_file() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="cascadeflow-bench-"))
    path = folder / "cascadeflow.toml"
    path.write_text(POOL)
    return path


def telemetry_providers() -> tuple[Any, Any]:
    """An SDK tracer provider with a batch processor (spans exported off the call path, then
    dropped) and a meter provider whose reader is never collected during the measurement."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Discard()))
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


def sample_text(size: int) -> str:
    rng = random.Random(size)
    words = ["refund", "charged", "twice", "subscription", "account", "please", "order", "invoice",
             "the", "my", "for", "and", "help", "card", "payment", "error", "login", "password"]
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(words)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


def contact_export(size: int) -> str:
    """CSV rows of contacts, about `size` bytes: each has an e-mail, a phone number, a card
    number, an IBAN and an IP address (PII-dense text, as a CRM export is)."""
    rows: list[str] = []
    total = i = 0
    while total < size:
        row = (f"{i},Dana Example{i},dana.example{i}@example.com,+1 415 555 {i % 10000:04d},"
               f"4242 4242 4242 4242,DE89 3704 0044 0532 0130 00,10.0.{i % 256}.{i * 7 % 256}\n")
        rows.append(row)
        total += len(row)
        i += 1
    return "".join(rows)
