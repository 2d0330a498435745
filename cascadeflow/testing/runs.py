"""Synthetic runs in the saved-session shape, for report tests and the report benchmark, as
saved-session files or as a ledger.

Deterministic for a seed: agents nested under a run, tool executions, cascade retries and
fallbacks, breakers opening, guardrail findings, observe runs first then enforce runs, outcomes.
No text is invented beyond labels, so nothing here can look like a prompt.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cascadeflow.entry import SIDE_OPERATIONS
from cascadeflow.ledger import SQLiteStore, UsageEvent
from cascadeflow.ledger.events import Outcome, RunEntry
from cascadeflow.ledger.store import Settlement
from cascadeflow.report.source import RunRecord

AGENTS = ("triage", "planner", "drafter", "reviewer")
MODELS = {"openai/gpt-4o": (2.5e-6, 1e-5), "openai/gpt-4o-mini": (1.5e-7, 6e-7),
          "openai/gpt-4.1": (2e-6, 8e-6)}
START = 1_795_000_000.0  # a fixed epoch, so the same seed gives the same file


def _entry(run_id: str, step: int, ts: float, agent: str, mode: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "step": step, "action": "allow", "reason": "ok", "applied": False, "mode": mode,
        "model": None, "requested_model": None, "target_model": None, "provider": "openai",
        "agent": agent, "operation": "chat", "cost": 0.0, "latency_ms": None, "tokens_in": 0,
        "tokens_out": 0, "cached_tokens": 0, "tool_calls": 0, "tool": None, "tools_denied": [],
        "budget_remaining": None, "error": None, "status": "ok", "run_id": run_id, "ts": ts}
    base.update(fields)
    return base


def synthetic_run(i: int, rng: random.Random, runs: int, span_s: float = 2 * 86400) -> RunRecord:
    """Run `i` of `runs`: the first half observe, the second enforce."""
    mode = "observe" if i < runs // 2 else "enforce"
    run_id = f"run{i:06d}"
    started = START + span_s * i / max(runs, 1)
    budget = 0.05
    t, step, spent, stopped = started, 0, 0.0, False
    entries: list[dict[str, Any]] = []
    sessions: dict[str, dict[str, Any]] = {}
    for a, agent in enumerate(AGENTS):
        sid = f"{run_id}-{a}"
        sessions[sid] = {"agent": agent, "parent": run_id, "started": t, "ended": None,
                         "outcome": None, "outcome_value": None}
        for _ in range(rng.randint(1, 4 if agent != "reviewer" else 7)):
            step += 1
            model = rng.choice(list(MODELS))
            tin, tout = rng.randint(100, 3000), rng.randint(10, 600)
            cost = tin * MODELS[model][0] + tout * MODELS[model][1]
            latency = rng.lognormvariate(6.0, 0.6)
            over = agent == "reviewer" and step > 12
            if over and mode == "enforce":
                entries.append(_entry(sid, step, t, agent, mode, model=model, requested_model=model,
                                      action="stop", reason="max_steps_reached", applied=True,
                                      message=f"{agent} reached max_steps=12", status="stopped"))
                stopped = True
                break
            spent += cost
            entries.append(_entry(sid, step, t, agent, mode, model=model, requested_model=model,
                                  cost=cost, latency_ms=latency, tokens_in=tin, tokens_out=tout,
                                  budget_remaining=budget - spent,
                                  **({"action": "stop", "reason": "max_steps_reached",
                                      "message": f"{agent} reached max_steps=12"} if over else {})))
            if rng.random() < 0.05:
                action = rng.choice(("retry", "fallback"))
                entries.append(_entry(sid, step, t, agent, mode, model=model, operation="cascade",
                                      action=action, reason="server_error", applied=True))
                if action == "fallback" and rng.random() < 0.3:
                    entries.append(_entry(sid, step, t, agent, mode, model=model, operation="cascade",
                                          action="breaker", reason="closed_to_open", applied=True))
            if rng.random() < 0.1:
                action = rng.choice(("redact", "log_only"))
                entries.append(_entry(sid, step, t, agent, mode, model=model, operation="guardrail",
                                      action=action, reason="pii_email",
                                      applied=mode == "enforce" and action != "log_only",
                                      rule="pii_redaction", kind="email",
                                      stage="input", score=round(rng.uniform(0.5, 1.0), 2)))
            t += latency / 1000
            if agent == "planner":
                step += 1
                entries.append(_entry(sid, step, t, agent, mode, operation="tool", provider=None,
                                      tool="fetch_similar_tickets", latency_ms=2.0))
        if stopped:
            break
        sessions[sid]["ended"] = t
    outcome = None if rng.random() < 0.1 else ("failed" if stopped or rng.random() < 0.12 else "resolved")
    summary = {"run_id": run_id, "mode": mode, "agent": None, "user": f"u-{rng.randint(0, 199)}",
               "project": rng.choice(("support", "sales")), "steps": step, "cost_total": spent,
               "tokens_in": sum(e["tokens_in"] for e in entries),
               "tokens_out": sum(e["tokens_out"] for e in entries),
               "tool_calls": sum(e["operation"] == "tool" for e in entries), "budget": budget,
               "stopped": stopped, "degraded": False,
               "fallbacks": sum(e["action"] == "fallback" for e in entries),
               "retries": sum(e["action"] == "retry" for e in entries),
               "duration_ms": (t - started) * 1000, "started": started, "ended": t,
               "outcome": outcome, "outcome_value": None, "sessions": sessions}
    return RunRecord(summary, entries, f"synthetic run {i}")


def synthetic_runs(runs: int, seed: int = 0) -> Iterator[RunRecord]:
    rng = random.Random(seed)
    for i in range(runs):
        yield synthetic_run(i, rng, runs)


def write_synthetic(path: Path, runs: int, seed: int = 0) -> Path:
    """The runs as one file of concatenated `session.save` outputs."""
    with open(path, "w", encoding="utf-8") as out:
        for record in synthetic_runs(runs, seed):
            out.write(json.dumps({"type": "summary", **record.summary}) + "\n")
            out.writelines(json.dumps({"type": "entry", **e}) + "\n" for e in record.entries)
    return path


PRIMARY = ("target_model", "tools_denied", "message")


def ledger_settlements(record: RunRecord) -> list[Settlement]:
    """A saved-session record as what the ledger's writer commits for it: a usage event per
    step, the non-allow entries, the outcomes (the reverse of `report.ledger_source.record`)."""
    s, root = record.summary, str(record.summary["run_id"])
    sessions: dict[str, Any] = s.get("sessions") or {}
    out: list[Settlement] = []
    seen: set[int] = set()
    for e in record.entries:
        number, run_id = int(e["step"]), str(e["run_id"] or root)
        side = e["operation"] in SIDE_OPERATIONS
        if not side and number not in seen:
            seen.add(number)
            parent = sessions.get(run_id, {}).get("parent") if run_id != root else None
            event = UsageEvent(
                ts=e["ts"], run_id=run_id, step=number, user=s.get("user"), project=s.get("project"),
                agent=e["agent"], workflow=s.get("agent"), operation=e["operation"],
                requested_model=e.get("requested_model"), model=e["model"], provider=e.get("provider"),
                tokens_in=e["tokens_in"], tokens_out=e["tokens_out"], cost=e["cost"],
                latency_ms=e["latency_ms"], status=e["status"], error=e.get("error"),
                action=e["action"], reason=e["reason"], applied=e["applied"], mode=e["mode"],
                tool=e.get("tool"), tool_calls=e.get("tool_calls") or 0, root_run_id=root,
                parent_run_id=parent, root_step=number, budget=s.get("budget"))
            out.append(Settlement(event, event.ts))
        if e["action"] == "allow":
            continue
        labels = {k: e[k] for k in ("action", "reason", "applied", "operation", "agent", "model",
                                    "rule", "kind", "stage", "score") if e.get(k) is not None}
        if not side:
            labels.update({k: e[k] for k in PRIMARY if e.get(k)})
            labels["primary"] = True
        out.append(Settlement(None, e["ts"], entries=[RunEntry(root, run_id, number, e["ts"],
                                                                s.get("user"), labels)]))
    for run_id, info in [(root, {"outcome": s.get("outcome"), "outcome_value": s.get("outcome_value"),
                                 "agent": s.get("agent"), "parent": None}), *sessions.items()]:
        if info.get("outcome") is not None:
            when = float(s.get("ended") or s["started"])
            out.append(Settlement(None, when, outcome=Outcome(
                run_id, when, info["outcome"], info.get("outcome_value"), s.get("user"),
                s.get("project"), info.get("agent"), root, info.get("parent"))))
    return out


def write_synthetic_ledger(path: Path, runs: int, seed: int = 0, batch: int = 5000) -> Path:
    """The runs as a ledger file, committed by the ledger's own store in large batches (what its
    writer does, without waiting for a flush interval)."""
    store = SQLiteStore(path)
    pending: list[Settlement] = []
    try:
        for record in synthetic_runs(runs, seed):
            pending += ledger_settlements(record)
            if len(pending) >= batch:
                store.commit(pending)
                pending = []
        store.commit(pending)
    finally:
        store.close()
    return path
