"""The terminal view of a session: its trace as a table and its summary in a few lines."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TextIO

from cascadeflow.errors import ConfigError

# every action a trace entry can carry (API.md), so a misspelt `--action` is an error
ACTIONS = ("allow", "stop", "switch_model", "deny_tool", "redact", "block", "rewrite", "alert",
           "log_only", "retry", "fallback", "breaker")
Keep = Callable[[Mapping[str, Any]], bool]


def _fmt_cost(value: Any) -> str:
    return "unknown" if value is None else f"${value:.6f}"


def trace_filter(entries: list[dict[str, Any]], source: str, *, agent: str | None = None,
                 action: str | None = None, reason: str | None = None) -> Keep:
    """The entries `cascadeflow trace --agent/--action/--reason` keeps. A value no entry has is
    an error listing the values there are (a typo must not look like an empty trace)."""
    if action is not None and action not in ACTIONS:
        raise ConfigError("--action", action, source, f"unknown action; known: {', '.join(ACTIONS)}")
    for flag, key, value in (("--agent", "agent", agent), ("--reason", "reason", reason)):
        present = sorted({str(e.get(key)) for e in entries if e.get(key) is not None})
        if value is not None and value not in present:
            raise ConfigError(flag, value, source, f"no trace entry has this {key}; present: "
                                                   f"{', '.join(present) or 'none'}")

    def keep(e: Mapping[str, Any]) -> bool:
        return ((agent is None or e.get("agent") == agent) and (action is None or e.get("action") == action)
                and (reason is None or e.get("reason") == reason))
    return keep


def print_trace(session: Any, out: TextIO, keep: Keep | None = None) -> None:
    header = f"{'step':>4}  {'agent':<9} {'action':<13} {'reason':<24} {'applied':<7} " \
             f"{'model':<20} {'tok in/out':>11} {'cost':>10} {'ms':>6}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for e in session.trace():
        if keep is not None and not keep(e):
            continue
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
