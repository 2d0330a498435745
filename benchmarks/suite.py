"""The benchmarks: what cascadeflow adds to a call, decision time, pre-flight estimation, scale.

Each function returns rows: dicts with a `benchmark`, a `variant` and figures. What is added to a
call is measured against the same call through the original, unpatched function, back to back
(see `harness.py`); nothing here asserts a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import resource
import threading
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
from cascadeflow.worker import shared, telemetry

from benchmarks import ledger as ledger_bench
from benchmarks.common import (
    BUDGET_KPI,
    ENFORCE_RUN,
    MESSAGES,
    config_file,
    contact_export,
    sample_text,
    telemetry_providers,
)
from benchmarks.harness import Added, Call, Variant, paired, paired_async, timed

litellm.suppress_debug_info = True  # the cascade benchmark makes failing calls on purpose

Row = dict[str, Any]
PII_TAIL = " Contact dana@example.com, card 4242 4242 4242 4242, +44 20 7946 0958."


# (mode, run() keyword arguments, extra init() keyword arguments)
Config = tuple[str, dict[str, Any], dict[str, Any]]


def _configs(telemetry: dict[str, Any]) -> dict[str, Config]:
    return {
        "observe, bare run()": ("observe", {}, {}),
        "observe, run(budget, kpi)": ("observe", BUDGET_KPI, {}),
        "enforce (budget+compliance+kpi)": ("enforce", ENFORCE_RUN, {}),
        "enforce + default guardrails": ("enforce", {**ENFORCE_RUN, "guardrails": "default"}, {}),
        "enforce + OpenTelemetry (batch)": ("enforce", ENFORCE_RUN, telemetry),
    }


def _variant(config: Path, setting: Config, patched: Callable[[], Any], call: Callable[[Any], Any]
             ) -> Variant:
    """Entering it: init + run(); yields (the call through the original function, the call)."""
    mode, run_kwargs, init_kwargs = setting

    @contextlib.contextmanager
    def enter() -> Iterator[tuple[Call, Call]]:
        cascadeflow.init(mode=mode, config=config, **init_kwargs)
        original = patched().__cascadeflow_original__
        instrumented = patched()
        with cascadeflow.run(**run_kwargs):
            yield (lambda: call(original)), (lambda: call(instrumented))
        cascadeflow.init(mode="off")

    return enter


def _worker() -> tuple[threading.Thread | None, ...]:
    """The background threads: records, and spans and metrics (their own, apart)."""
    return shared()._thread, telemetry()._thread


class _BetweenPairs:
    """Stands in for litellm's logging thread pool while pairs run: litellm submits each call's
    success logging (cost calculation, callbacks) to a pool whose threads then compete with the
    measured thread. Queued here, that work runs between pairs, for both sides alike."""

    def __init__(self) -> None:
        self.tasks: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        self.tasks.append((fn, args, kwargs))

    def drain(self) -> None:
        tasks, self.tasks = self.tasks, []
        for fn, args, kwargs in tasks:
            with contextlib.suppress(Exception):
                fn(*args, **kwargs)


@contextlib.contextmanager
def _litellm_logging_between_pairs() -> Iterator[Callable[[], None]]:
    """Yields the `settle` to run between pairs: litellm's queued logging, then cascadeflow's
    worker (`cascadeflow.flush`)."""
    import litellm.utils

    pool = _BetweenPairs()
    real = litellm.utils.executor
    litellm.utils.executor = pool  # type: ignore[misc]
    try:
        def settle() -> None:
            pool.drain()
            cascadeflow.flush()

        yield settle
    finally:
        pool.drain()
        litellm.utils.executor = real  # type: ignore[misc]


def _rows(benchmark: str, results: dict[str, Added]) -> list[Row]:
    return [{"benchmark": benchmark, "variant": name, **added.row()} for name, added in results.items()]


def overhead(quick: bool, provider: ProviderServer, config: Path) -> list[Row]:
    """What cascadeflow adds to a litellm `mock_response` call and to an openai SDK call over
    HTTP, per configuration and prompt size."""
    configs = _configs(dict(zip(("tracer_provider", "meter_provider"), telemetry_providers(),
                                strict=True)))
    rows: list[Row] = []

    def completion() -> Any:
        return litellm.completion

    for label, size, names, (rounds, pairs) in (
            ("2 KB prompt", 2_000, list(configs), (2, 10) if quick else (20, 150)),
            ("short prompt", 0, list(configs)[:3], (2, 10) if quick else (8, 60)),
            ("32 KB prompt", 32_000, list(configs)[:3], (2, 5) if quick else (8, 40))):
        messages = MESSAGES if not size else [MESSAGES[0], {"role": "user", "content": sample_text(size)}]

        def mock(fn: Any, messages: Any = messages) -> Any:
            return fn(model="openai/gpt-4o-mini", messages=messages, mock_response="billing")

        variants = {name: _variant(config, configs[name], completion, mock) for name in names}
        with _litellm_logging_between_pairs() as settle:
            rows += _rows(f"litellm completion, mock_response, {label}",
                          paired(variants, rounds, pairs, _worker, settle))

    # guardrails scan each text once: a prompt the same on every call (above) is scanned on the
    # first only, as an agent's history is; here the user message is new on every call
    fresh = itertools.count()
    base = sample_text(2_000)

    def new_prompt(fn: Any) -> Any:
        messages = [MESSAGES[0], {"role": "user", "content": f"{base} #{next(fresh)}"}]
        return fn(model="openai/gpt-4o-mini", messages=messages, mock_response="billing")

    guarded = "enforce + default guardrails"
    rounds, pairs = (2, 10) if quick else (12, 150)
    with _litellm_logging_between_pairs() as settle:
        rows += _rows("litellm completion, mock_response, 2 KB prompt new on every call",
                      paired({guarded: _variant(config, configs[guarded], completion, new_prompt)},
                             rounds, pairs, _worker, settle))

    def acompletion() -> Any:
        return litellm.acompletion

    async def amock(fn: Any) -> Any:
        return await fn(model="openai/gpt-4o-mini", messages=MESSAGES, mock_response="billing")

    # one asyncio.run for the whole measurement: litellm crashes at exit after a hand-closed loop
    avariants = {name: _variant(config, configs[name], acompletion, amock) for name in list(configs)[:3]}
    rounds, pairs = (2, 10) if quick else (8, 60)
    rows += _rows("litellm acompletion, mock_response, short prompt",
                  asyncio.run(paired_async(avariants, rounds, pairs, cascadeflow.flush)))  # type: ignore[arg-type]

    client = openai.OpenAI(base_url=provider.url, api_key="bench-key")

    def create() -> Any:
        return type(client.chat.completions).create

    def sdk(fn: Any) -> Any:
        return fn(client.chat.completions, model="gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    variants = {name: _variant(config, configs[name], create, sdk)
                for name in ("observe, bare run()", "enforce (budget+compliance+kpi)",
                             "enforce + default guardrails", "enforce + OpenTelemetry (batch)")}
    rounds, pairs = (2, 5) if quick else (10, 40)
    rows += _rows("openai chat.completions.create (HTTP, built-in provider)",
                  paired(variants, rounds, pairs, _worker, cascadeflow.flush))
    cascadeflow.init(mode="off")
    return rows


def pipeline_alone(quick: bool, config: Path) -> list[Row]:
    """A `@tool` step (the whole pipeline, no I/O) against the same plain function."""
    rounds, pairs = (2, 50) if quick else (10, 500)
    configs = _configs({})

    def plain() -> int:
        return 1

    traced = cascadeflow.tool(name="plain")(plain)

    def variant(setting: Config) -> Variant:
        mode, run_kwargs, _ = setting

        @contextlib.contextmanager
        def enter() -> Iterator[tuple[Call, Call]]:
            cascadeflow.init(mode=mode, config=config)
            with cascadeflow.run(**{k: v for k, v in run_kwargs.items() if k != "guardrails"}):
                yield plain, traced
            cascadeflow.init(mode="off")

        return enter

    variants = {name: variant(configs[name]) for name in list(configs)[:3]}
    return _rows("pipeline step alone (@tool, no I/O)",
                 paired(variants, rounds, pairs, _worker, cascadeflow.flush))


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
    # close to the limit the memo does not apply: the full budget check bounds the request
    near = (Session(RunLimits(budget=0.05)),)

    def decide_near() -> Any:
        request = Request("chat", "litellm", "openai/gpt-4o-mini",
                          {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "max_tokens": 50})
        return engine.decide(request, near)

    assert decide_near()[0].reason == "ok"
    s = timed(decide_near, n)
    rows.append({"benchmark": "decision time (Engine.decide)", "variant": "1 session, budget near its limit",
                 "median_us": s.median_us, "p99_us": s.p99_us, "n": s.n})
    return rows


def preflight(quick: bool, config: Path) -> list[Row]:
    """The budget check for 1 KB, 100 KB and 1 MB prompts: cheap bound path vs tokenizing path."""
    from cascadeflow import tokens

    engine = Engine(cfg.resolve({"config": str(config), "mode": "enforce"}, environ={}))
    price = engine.prices.price("openai/gpt-4o-mini", "openai")
    assert price is not None
    rows = []
    for label, size in (("1 KB", 1_000), ("100 KB", 100_000), ("1 MB", 1_000_000)):
        text = sample_text(size)
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
    """The default guardrail profile on one text: scan latency and throughput by input size
    (the scan itself: texts already scanned are not scanned again, which is not measured here)."""
    from cascadeflow.guardrails import load, scan_text, transform

    rules = load(None).profiles["default"].input
    rows: list[Row] = []
    for label, size in (("1 KB", 1_000), ("4 KB", 4_000), ("64 KB", 64_000)):
        text = sample_text(size - 120) + PII_TAIL
        n = (60 if size > 10_000 else 400) if not quick else 30

        def scan(text: str = text) -> str:
            return transform(text, scan_text(rules, text, "input"))

        s = timed(scan, n)
        rows.append({"benchmark": "guardrail scan (default input profile)", "variant": label,
                     "median_us": s.median_us, "p99_us": s.p99_us,
                     "mb_per_s": len(text) / (s.median_us / 1e6) / 1e6, "n": s.n})
    # a contact export: every line carries an e-mail, a phone, a card, an IBAN and an address
    pii = load(None).profiles["pii"].input
    for label, size in (("1 MB", 1_000_000), ("10 MB", 10_000_000)):
        if quick and size > 1_000_000:
            continue
        text = contact_export(size if not quick else 100_000)

        def scan_pii(text: str = text) -> str:
            return transform(text, scan_text(pii, text, "input"))

        s = timed(scan_pii, 1 if size > 1_000_000 or quick else 3)
        rows.append({"benchmark": "guardrail scan, PII-dense contact export (pii profile)",
                     "variant": label if not quick else "100 KB", "median_us": s.median_us,
                     "p99_us": s.p99_us, "mb_per_s": len(text) / (s.median_us / 1e6) / 1e6, "n": s.n})
    return rows


def cascades(quick: bool, provider: ProviderServer) -> list[Row]:
    """What a fallback and a skipped open breaker add to a call, against the healthy tier alone."""
    from cascadeflow.cascade import BreakerSettings, Cascade, RetryPolicy, Tier, stop_after_attempt

    cascadeflow.init(mode="observe")
    endpoint = {"api_base": provider.url, "api_key": "bench-key"}
    provider.inject(model="gpt-4o", status=503)
    once = RetryPolicy(stop=stop_after_attempt(1))
    never = BreakerSettings(failure_threshold=10**9, min_calls=10**9)  # the 503s must not open it
    healthy = Cascade([Tier("openai/gpt-4o-mini", params=endpoint)], retry=once, breaker=never)
    fallback = Cascade([Tier("openai/gpt-4o", params=endpoint), Tier("openai/gpt-4o-mini", params=endpoint)],
                       retry=once, breaker=never)
    # its own endpoint for both tiers: breakers are per deployment, and this cascade's settings
    # (open at one failure, never recover) must not become those of the others' gpt-4o-mini
    apart = {**endpoint, "api_base": provider.url + "/"}
    skipping = Cascade([Tier("openai/gpt-4o", params=apart), Tier("openai/gpt-4o-mini", params=apart)],
                       retry=once, breaker=BreakerSettings(failure_threshold=1, recovery_timeout=10**9))
    with contextlib.suppress(Exception):
        skipping.complete(messages=MESSAGES, max_tokens=100)  # opens the breaker of the first tier

    def against_healthy(cascade: Cascade) -> Variant:
        @contextlib.contextmanager
        def enter() -> Iterator[tuple[Call, Call]]:
            yield (lambda: healthy.complete(messages=MESSAGES, max_tokens=100),
                   lambda: cascade.complete(messages=MESSAGES, max_tokens=100))
        return enter

    rounds, pairs = (2, 5) if quick else (8, 20)
    results = paired({"fallback after a 503": against_healthy(fallback),
                      "open breaker skipped": against_healthy(skipping)}, rounds, pairs,
                     _worker, cascadeflow.flush)
    provider.reset()
    cascadeflow.init(mode="off")
    return _rows("cascade over HTTP (against the healthy tier alone)", results)


def instructions(quick: bool) -> list[Row]:
    """Instructions cascadeflow's own code adds per call (valgrind), when valgrind is installed."""
    from benchmarks import instructions as counts

    return counts.run(quick)


def run(quick: bool = False) -> list[Row]:
    """Every benchmark; the small ones first, each after a full collection, so a heap left by
    an earlier one does not bill its garbage collection to the next."""
    config = config_file()
    rows: list[Row] = []
    for section in (lambda: decision_time(quick, config), lambda: preflight(quick, config),
                    lambda: pipeline_alone(quick, config), lambda: guardrails(quick, config)):
        gc.collect()
        rows += section()
    gc.collect()
    with ProviderServer() as provider:
        rows += overhead(quick, provider, config)
        gc.collect()
        rows += cascades(quick, provider)
    gc.collect()
    with _litellm_logging_between_pairs() as settle:
        rows += ledger_bench.run(quick, config, _worker, settle)
    for section in (lambda: scale_sessions(quick), lambda: scale_ambient(quick),
                    lambda: instructions(quick)):
        gc.collect()
        rows += section()
    cascadeflow.shutdown()
    return rows
