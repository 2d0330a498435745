"""`cascadeflow demo`: the triage agent in observe mode, then in enforce mode, step by step."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import cascadeflow
from cascadeflow.demo.triage import Llm, script_provider, triage

CONFIG = Path(__file__).with_name("cascadeflow.toml")
RUN_POLICY: dict[str, Any] = {"budget": 0.01, "max_tool_calls": 1, "compliance": "gdpr"}


def _fmt_cost(value: Any) -> str:
    return "unknown" if value is None else f"${value:.6f}"


def print_trace(session: Any, out: TextIO) -> None:
    header = f"{'step':>4}  {'agent':<9} {'action':<13} {'reason':<24} {'applied':<7} " \
             f"{'model':<20} {'tok in/out':>11} {'cost':>10} {'ms':>6}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for e in session.trace():
        operation = e["operation"]
        what = {"tool": e["tool"], "guardrail": f"rule {e.get('rule')}"}.get(operation, e["model"])
        tokens = {"tool": "tool", "guardrail": e.get("stage", ""), "cascade": "cascade"}.get(
            operation, f"{e['tokens_in']}/{e['tokens_out']}")
        latency = "-" if e["latency_ms"] is None else f"{e['latency_ms']:.0f}"
        print(f"{e['step']:>4}  {e['agent'] or '-':<9} {e['action']:<13} {e['reason']:<24} "
              f"{('yes' if e['applied'] else 'no'):<7} {what or '-':<20} {tokens:>11} "
              f"{_fmt_cost(e['cost']):>10} {latency:>6}", file=out)


def print_summary(session: Any, out: TextIO) -> None:
    s = session.summary()
    print(f"\nsummary: {s['steps']} steps, cost {_fmt_cost(s['cost_total'])} of budget "
          f"${s['budget']:.2f}, {s['tokens_in']} tokens in / {s['tokens_out']} out, "
          f"{s['tool_calls']} tool calls requested / {s['tool_executions']} executed, "
          f"latency {s['latency_total_ms']:.0f} ms, stopped={s['stopped']}", file=out)
    print(f"actions: {s['actions']}", file=out)
    if s["reasons"]:
        print(f"reasons: {s['reasons']}", file=out)
    print(f"guardrail findings: {s['guardrail_findings']} {s['findings_by_rule']}; cascade retries "
          f"{s['retries']}, fallbacks {s['fallbacks']}, degraded={s['degraded']}", file=out)


async def _one_pass(mode: str, llm: Llm, out: TextIO) -> dict[str, Any]:
    if llm.provider is not None:
        script_provider(llm.provider)
    report = cascadeflow.init(mode=mode, config=CONFIG)
    print(f"\n=== mode={report.mode}  instrumented={report.instrumented}  "
          f"config={Path(report.config_file or '-').name} version={report.policy_versions.get('config')}",
          file=out)
    print(f"run policy: {RUN_POLICY}\n", file=out)
    async with cascadeflow.run(**RUN_POLICY, project="support") as session:
        result = await triage(llm)
    print_trace(session, out)
    print_summary(session, out)
    print(f"category: {result['category']}; similar tickets: {len(result['similar'])}; "
          f"review rounds: {result['review_rounds']}", file=out)
    print(f"draft: {result['draft'][:160]}", file=out)
    return session.summary()


@contextlib.contextmanager
def _llm(live: bool) -> Iterator[Llm]:
    if live:
        if not os.environ.get("OPENAI_API_KEY"):
            raise SystemExit("cascadeflow demo --live needs OPENAI_API_KEY in the environment")
        yield Llm()
        return
    from cascadeflow.testing import serve

    with serve() as provider:
        yield Llm(api_base=provider.url, api_key="demo-key-not-secret", provider=provider)


def main(live: bool = False, out: TextIO | None = None) -> dict[str, dict[str, Any]]:
    """Run the demo; returns both summaries (the tests read them)."""
    import sys

    stream = out or sys.stdout
    where = "a real provider (OPENAI_API_KEY)" if live else "the built-in local provider"
    print(f"cascadeflow demo: support triage on {where}", file=stream)
    results: dict[str, dict[str, Any]] = {}
    try:
        with _llm(live) as llm:
            for mode in ("observe", "enforce"):
                results[mode] = asyncio.run(_one_pass(mode, llm, stream))
    finally:
        cascadeflow.shutdown()
    return results
