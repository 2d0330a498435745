"""The terminal view of a session: its trace as a table and its summary in a few lines."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TextIO

from cascadeflow.errors import ConfigError

# every action a trace entry can carry (API.md), so a misspelt `--action` is an error
ACTIONS = ("allow", "stop", "switch_model", "deny_tool", "redact", "block", "rewrite", "alert",
           "log_only", "retry", "fallback", "breaker")
Keep = Callable[[Mapping[str, Any]], bool]


def _cell(value: object) -> str:
    """A value as printable text: a name with control characters cannot move the cursor or
    clear the screen (as in `cascadeflow ledger steps`)."""
    text = str(value)
    return text if text.isprintable() else ascii(text)[1:-1]


def _fmt_cost(value: Any) -> str:
    return "unknown" if value is None else f"${value:.6f}"


def trace_filter(source: str, *, agent: str | None = None, action: str | None = None,
                 reason: str | None = None) -> Keep | None:
    """The entries `cascadeflow trace --agent/--action/--reason` keeps (None: all). A misspelt
    action is an error at once; an agent or reason no entry has is one once the file is read
    (`absent_from`)."""
    if action is not None and action not in ACTIONS:
        raise ConfigError("--action", action, source, f"unknown action; known: {', '.join(ACTIONS)}")
    if agent is None and action is None and reason is None:
        return None

    def keep(e: Mapping[str, Any]) -> bool:
        return ((agent is None or e.get("agent") == agent) and (action is None or e.get("action") == action)
                and (reason is None or e.get("reason") == reason))
    return keep


def absent_from(present: Mapping[str, set[str]], wanted: Mapping[str, str | None], source: str) -> None:
    """Raise for the first `--agent` / `--reason` value no trace entry has, listing the values
    the entries do have (a typo must not look like an empty trace)."""
    for key, values in present.items():
        value = wanted[key]
        if value is not None and value not in values:
            raise ConfigError(f"--{key}", value, source, f"no trace entry has this {key}; present: "
                                                         f"{', '.join(sorted(values)) or 'none'}")


def print_trace(session: Any, out: TextIO, keep: Keep | None = None) -> None:
    header = f"{'step':>4}  {'agent':<9} {'action':<13} {'reason':<24} {'applied':<7} " \
             f"{'model':<20} {'tok in/out':>11} {'cost':>10} {'ms':>6}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for e in session.trace():
        if keep is not None and not keep(e):
            continue
        operation = e.get("operation") or "chat"  # a file from an older version may lack a key
        what = {"tool": e.get("tool"), "guardrail": f"rule {e.get('rule')}"}.get(operation, e.get("model"))
        tokens = {"tool": "tool", "guardrail": e.get("stage") or "", "cascade": "cascade"}.get(
            operation, f"{e.get('tokens_in') or 0}/{e.get('tokens_out') or 0}")
        latency = "-" if e.get("latency_ms") is None else f"{e['latency_ms']:.0f}"
        agent, action, reason = (_cell(e.get(k) or "-") for k in ("agent", "action", "reason"))
        print(f"{e.get('step', '-'):>4}  {agent:<9} {action:<13} {reason:<24} "
              f"{('yes' if e.get('applied') else 'no'):<7} "
              f"{_cell(what or '-'):<20} {_cell(tokens):>11} {_fmt_cost(e.get('cost')):>10} {latency:>6}",
              file=out)


def print_summary(session: Any, out: TextIO) -> None:
    s = session.summary()
    budget = "none" if s.get("budget") is None else f"${s['budget']:.2f}"
    latency = s.get("latency_total_ms")
    latency_text = f"{latency:.0f}" if isinstance(latency, int | float) else "-"
    print(f"\nsummary: {s.get('steps', 0)} steps, cost {_fmt_cost(s.get('cost_total'))} of budget "
          f"{budget}, {s.get('tokens_in', 0)} tokens in / {s.get('tokens_out', 0)} out, "
          f"{s.get('tool_calls_requested', s.get('tool_calls', 0))} tool calls requested / "
          f"{s.get('tool_executions', 0)} executed, "
          f"latency {latency_text} ms, stopped={s.get('stopped', False)}", file=out)
    print(f"actions: {s.get('actions', {})}", file=out)
    if s.get("reasons"):
        print(f"reasons: {s['reasons']}", file=out)
    print(f"guardrail findings: {s.get('guardrail_findings', 0)} {s.get('findings_by_rule', {})}; "
          f"cascade retries {s.get('retries', 0)}, fallbacks {s.get('fallbacks', 0)}, "
          f"degraded={s.get('degraded', False)}", file=out)
