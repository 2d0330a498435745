"""The terminal view of a session: its trace as a table and its summary in a few lines."""

from __future__ import annotations

from typing import Any, TextIO


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
