"""The benchmarks: per-call overhead, decision time, pre-flight estimation, scale.

Each function returns rows: dicts with a `benchmark`, a `variant` and figures. Overheads are
differences and ratios against a baseline measured in the same run; nothing here asserts a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import random
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cascadeflow  # first: litellm then uses its bundled price map
import litellm
import openai
from cascadeflow import config as cfg
from cascadeflow.config import RunLimits
from cascadeflow.policy import Engine
from cascadeflow.request import Request
from cascadeflow.session import Session
from cascadeflow.testing import ProviderServer

from benchmarks.harness import Stats, interleaved, interleaved_async, timed

litellm.suppress_debug_info = True  # the cascade benchmark makes failing calls on purpose

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
ENFORCE_RUN: dict[str, Any] = {"budget": 1e9, "compliance": "bench",
                               "kpi_weights": {"quality": 0.8, "cost": 0.2}, "max_steps": 10**9,
                               "max_tool_calls": 10**9}
Row = dict[str, Any]


def _config_file() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="cascadeflow-bench-"))
    path = folder / "cascadeflow.toml"
    path.write_text(POOL)
    return path


def _modes(config: Path) -> dict[str, Callable[[], contextlib.AbstractContextManager[Any]]]:
    @contextlib.contextmanager
    def off() -> Iterator[None]:
        cascadeflow.init(mode="off")
        yield

    @contextlib.contextmanager
    def observe() -> Iterator[None]:
        cascadeflow.init(mode="observe", config=config)
        with cascadeflow.run():
            yield

    @contextlib.contextmanager
    def enforce() -> Iterator[None]:
        cascadeflow.init(mode="enforce", config=config)
        with cascadeflow.run(**ENFORCE_RUN):
            yield

    tracer_provider, meter_provider = _telemetry_providers()

    @contextlib.contextmanager
    def enforce_otel() -> Iterator[None]:
        cascadeflow.init(mode="enforce", config=config, tracer_provider=tracer_provider,
                         meter_provider=meter_provider)
        with cascadeflow.run(**ENFORCE_RUN):
            yield

    return {"off": off, "observe": observe, "enforce (budget+compliance+kpi)": enforce,
            "enforce + telemetry (batch)": enforce_otel}


def _telemetry_providers() -> tuple[Any, Any]:
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


def _overhead_rows(name: str, stats: dict[str, Stats]) -> list[Row]:
    base = stats["off"]
    rows = []
    for variant, s in stats.items():
        added = s.paired_added_us(base)
        rows.append({"benchmark": name, "variant": variant, "median_us": s.median_us, "p99_us": s.p99_us,
                     "added_us": added, "added_pct": 100.0 * added / base.median_us, "n": s.n})
    return rows


def overhead(quick: bool, provider: ProviderServer, config: Path) -> list[Row]:
    """The same calls with mode off, observe and enforce, interleaved."""
    rounds, batch = (6, 20) if quick else (40, 50)
    modes = _modes(config)
    rows: list[Row] = []

    def mock() -> Any:
        return litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, mock_response="billing")

    rows += _overhead_rows("litellm completion (mock_response)",
                           interleaved({m: (setup, mock) for m, setup in modes.items()}, rounds, batch))

    async def amock() -> Any:
        return await litellm.acompletion(model="openai/gpt-4o-mini", messages=MESSAGES,
                                         mock_response="billing")

    # one asyncio.run for the whole measurement: litellm crashes at exit after a hand-closed loop
    rows += _overhead_rows("litellm acompletion (mock_response)", asyncio.run(
        interleaved_async({m: (setup, amock) for m, setup in modes.items()}, rounds, batch)))

    http_rounds, http_batch = (4, 10) if quick else (20, 25)

    def http() -> Any:
        return litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, api_base=provider.url,
                                  api_key="bench-key", max_tokens=100)

    rows += _overhead_rows("litellm completion (HTTP, built-in provider)",
                           interleaved({m: (setup, http) for m, setup in modes.items()},
                                       http_rounds, http_batch))
    client = openai.OpenAI(base_url=provider.url, api_key="bench-key")

    def sdk() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,  # type: ignore[arg-type]
                                              max_tokens=100)

    rows += _overhead_rows("openai chat.completions.create (HTTP)",
                           interleaved({m: (setup, sdk) for m, setup in modes.items()},
                                       http_rounds, http_batch))
    cascadeflow.init(mode="off")
    return rows


def pipeline_alone(quick: bool, config: Path) -> list[Row]:
    """A `@tool` step (the whole pipeline, no I/O) against the same plain function."""
    rounds, batch = (6, 200) if quick else (40, 500)

    def plain() -> int:
        return 1

    traced = cascadeflow.tool(name="plain")(plain)
    modes = _modes(config)
    stats = interleaved({name: (setup, plain if name == "off" else traced) for name, setup in modes.items()},
                        rounds, batch)
    cascadeflow.init(mode="off")
    return _overhead_rows("pipeline step alone (@tool, no I/O)", stats)


def _chain(depth: int) -> tuple[Session, ...]:
    parent: Session | None = None
    for level in range(depth):
        limits = RunLimits(budget=100.0 + level, max_steps=10**6, max_tool_calls=1000,
                           compliance="bench" if level == depth - 1 else None,
                           kpi_weights={"quality": 0.8, "cost": 0.2} if level == depth - 1 else None)
        session = Session(limits)
        session.attach(parent)
        parent = session
    assert parent is not None
    return parent.chain


def decision_time(quick: bool, config: Path) -> list[Row]:
    """`Engine.decide` alone, per step, under 1, 3 and 10 nested sessions."""
    engine = Engine(cfg.resolve({"config": str(config), "mode": "enforce"}, environ={}))
    n = 2_000 if quick else 20_000
    rows = []
    for depth in (1, 3, 10):
        chain = _chain(depth)

        def decide(chain: tuple[Session, ...] = chain) -> Any:
            request = Request("chat", "litellm", "openai/gpt-4o-mini",
                              {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "max_tokens": 50})
            return engine.decide(request, chain)

        decide()
        s = timed(decide, n)
        rows.append({"benchmark": "decision time (Engine.decide)", "variant": f"{depth} nested sessions",
                     "median_us": s.median_us, "p99_us": s.p99_us, "n": s.n})
    return rows


def _text(size: int) -> str:
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


def preflight(quick: bool, config: Path) -> list[Row]:
    """The budget check for 1 KB, 100 KB and 1 MB prompts: cheap bound path vs tokenizing path."""
    from cascadeflow import tokens

    engine = Engine(cfg.resolve({"config": str(config), "mode": "enforce"}, environ={}))
    price = engine.prices.price("openai/gpt-4o-mini", "openai")
    assert price is not None
    rows = []
    for label, size in (("1 KB", 1_000), ("100 KB", 100_000), ("1 MB", 1_000_000)):
        text = _text(size)
        exact = tokens.count(text, "gpt-4o-mini") + tokens.message_overhead([{}])
        for path, budget in (("bound only", 1e9),
                             ("tokenizes", (exact * price.input + 50 * price.output) * 1.5)):

            chain = (Session(RunLimits(budget=budget)),)

            def check(text: str = text, chain: tuple[Session, ...] = chain) -> Any:
                request = Request("chat", "litellm", "openai/gpt-4o-mini",
                                  {"model": "openai/gpt-4o-mini",
                                   "messages": [{"role": "user", "content": text}], "max_tokens": 50})
                return engine.decide(request, chain)

            decisions = check()
            assert decisions[0].action == "allow", decisions
            n = (200 if size < 1_000_000 else 20) if path == "bound only" else (20 if size < 1_000_000 else 3)
            if quick:
                n = max(3, n // 10)
            s = timed(check, n)
            rows.append({"benchmark": "pre-flight budget check", "variant": f"{label}, {path}",
                         "median_us": s.median_us, "p99_us": s.p99_us, "n": s.n})
    return rows


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def scale_sessions(quick: bool) -> list[Row]:
    """Many concurrent sessions in one event loop, 10 steps each: per-step cost early vs late."""
    sessions = 1_000 if quick else 10_000
    cascadeflow.init(mode="observe")

    @cascadeflow.tool(name="step")
    async def step() -> None:
        await asyncio.sleep(0)

    done: list[float] = []

    async def one(i: int) -> None:
        async with cascadeflow.run(budget=1.0, max_steps=20, metadata={"i": i}):
            for _ in range(10):
                await step()
                done.append(time.perf_counter())

    async def main() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(sessions)))
        return time.perf_counter() - t0

    total = asyncio.run(main())
    steps = len(done)
    window = steps // 10
    early = (done[window] - done[0]) / window * 1e6
    late = (done[-1] - done[-window - 1]) / window * 1e6
    cascadeflow.init(mode="off")
    return [{"benchmark": "scale: concurrent sessions", "variant": f"{sessions} sessions x 10 steps",
             "median_us": total / steps * 1e6, "first_10pct_us": early, "last_10pct_us": late,
             "growth": late / early, "peak_rss_mb": _rss_mb(), "n": steps}]


def scale_ambient(quick: bool) -> list[Row]:
    """One ambient session over many steps: the cost per step must not grow; memory per entry."""
    total = 50_000 if quick else 1_000_000
    cascadeflow.init(mode="observe")

    @cascadeflow.tool(name="step")
    def step() -> None:
        return None

    window = 10_000 if not quick else 5_000
    marks: list[float] = []
    t0 = time.perf_counter()
    for i in range(total):
        if i % window == 0:
            marks.append(time.perf_counter())
        step()
    marks.append(time.perf_counter())
    per_window = [(b - a) / window * 1e6 for a, b in itertools.pairwise(marks)]
    first, last = statistics_median(per_window[:3]), statistics_median(per_window[-3:])
    ambient = cascadeflow.current_session()
    retained = len(ambient.trace())
    rows = [{"benchmark": "scale: ambient session", "variant": f"{total:,} steps",
             "median_us": (time.perf_counter() - t0) / total * 1e6, "first_10k_us": first,
             "last_10k_us": last, "growth": last / first, "retained_entries": retained,
             "peak_rss_mb": _rss_mb(), "n": total}]
    rows.append(_entry_memory())
    cascadeflow.init(mode="off")
    return rows


def statistics_median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _entry_memory() -> Row:
    """Bytes per retained trace entry: a fresh bounded session filled with model-call entries."""
    from cascadeflow.session import Entry

    n = 10_000
    gc.collect()
    session = Session(max_entries=n, ambient=True)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(n):
        entry = Entry(action="allow", reason="ok", applied=False, mode="observe",
                      requested_model="openai/gpt-4o-mini", model="openai/gpt-4o-mini",
                      provider="openai", agent="triage", operation="chat", run_id=session.run_id,
                      cost=1.35e-05 + i * 1e-12, latency_ms=412.5 + i, tokens_in=100 + i,
                      tokens_out=20 + i, budget_remaining=0.5 - i * 1e-9, status="ok",
                      finish_reason="stop")
        session.add_entry(i + 1, entry)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    used = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return {"benchmark": "trace memory", "variant": "per retained entry (model call)",
            "bytes_per_entry": used / n, "n": n}


def guardrails(quick: bool, config: Path) -> list[Row]:
    """The default guardrail profile: scan latency and throughput, and what it adds to a call."""
    from cascadeflow.guardrails import load, scan_prompt

    rules = load(None).profiles["default"].input
    rows: list[Row] = []
    for label, size in (("1 KB", 1_000), ("4 KB", 4_000), ("64 KB", 64_000)):
        text = _text(size - 120) + " Contact dana@example.com, card 4242 4242 4242 4242, +44 20 7946 0958."
        messages = [{"role": "user", "content": text}]
        n = (60 if size > 10_000 else 400) if not quick else 30
        s = timed(lambda m=messages: scan_prompt(rules, m, True), n)  # type: ignore[misc]
        rows.append({"benchmark": "guardrail scan (default input profile)", "variant": label,
                     "median_us": s.median_us, "p99_us": s.p99_us,
                     "mb_per_s": len(text) / (s.median_us / 1e6) / 1e6, "n": s.n})
    prompt = [{"role": "user", "content": _text(4_000)}]
    modes = _modes(config)

    @contextlib.contextmanager
    def guarded() -> Iterator[None]:
        cascadeflow.init(mode="enforce", config=config)
        with cascadeflow.run(**ENFORCE_RUN, guardrails="default"):
            yield

    def call() -> Any:
        return litellm.completion(model="openai/gpt-4o-mini", messages=prompt, mock_response="billing")

    rounds, batch = (6, 20) if quick else (30, 40)
    stats = interleaved({"off": (modes["off"], call),
                         "enforce (budget+compliance+kpi)": (modes["enforce (budget+compliance+kpi)"], call),
                         "enforce + default guardrails": (guarded, call)}, rounds, batch)
    rows += _overhead_rows("litellm completion, 4 KB prompt (mock_response)", stats)
    cascadeflow.init(mode="off")
    return rows


def cascades(quick: bool, provider: ProviderServer) -> list[Row]:
    """What a fallback and a skipped open breaker add to a call, against the healthy tier alone."""
    from cascadeflow.cascade import BreakerSettings, Cascade, RetryPolicy, Tier, stop_after_attempt

    cascadeflow.init(mode="observe")
    endpoint = {"api_base": provider.url, "api_key": "bench-key"}
    provider.inject(model="gpt-4o", status=503)
    once = RetryPolicy(stop=stop_after_attempt(1))
    healthy = Cascade([Tier("openai/gpt-4o-mini", params=endpoint)], retry=once)
    fallback = Cascade([Tier("openai/gpt-4o", params=endpoint), Tier("openai/gpt-4o-mini", params=endpoint)],
                       retry=once, breaker=BreakerSettings(failure_threshold=10**9, min_calls=10**9))
    skipping = Cascade([Tier("openai/gpt-4o", params={**endpoint, "api_base": provider.url + "/"}),
                        Tier("openai/gpt-4o-mini", params=endpoint)],
                       retry=once, breaker=BreakerSettings(failure_threshold=1, recovery_timeout=10**9))
    with contextlib.suppress(Exception):
        skipping.complete(messages=MESSAGES, max_tokens=100)  # opens the breaker of the first tier
    rounds, batch = (3, 10) if quick else (15, 20)
    session = contextlib.nullcontext
    stats = interleaved({"off": (session, lambda: healthy.complete(messages=MESSAGES, max_tokens=100)),
                         "fallback after a 503": (session, lambda: fallback.complete(messages=MESSAGES,
                                                                                     max_tokens=100)),
                         "open breaker skipped": (session, lambda: skipping.complete(messages=MESSAGES,
                                                                                     max_tokens=100))},
                        rounds, batch)
    provider.reset()
    cascadeflow.init(mode="off")
    rows = _overhead_rows("cascade over HTTP (healthy tier = baseline)", stats)
    for row in rows:
        if row["variant"] == "off":
            row["variant"] = "healthy tier only"
    return rows


def run(quick: bool = False) -> list[Row]:
    """Every benchmark; the small ones first, each after a full collection, so a heap left by
    an earlier one does not bill its garbage collection to the next."""
    config = _config_file()
    rows: list[Row] = []
    for section in (lambda: decision_time(quick, config), lambda: preflight(quick, config),
                    lambda: pipeline_alone(quick, config)):
        gc.collect()
        rows += section()
    gc.collect()
    rows += guardrails(quick, config)
    gc.collect()
    with ProviderServer() as provider:
        rows += overhead(quick, provider, config)
        gc.collect()
        rows += cascades(quick, provider)
    for section in (lambda: scale_sessions(quick), lambda: scale_ambient(quick)):
        gc.collect()
        rows += section()
    cascadeflow.shutdown()
    return rows
