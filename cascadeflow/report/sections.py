"""The report's sections, each a function of the review: overview, outcomes, would-have,
decisions, latency, guardrails, reliability and the runs in detail."""

from __future__ import annotations

from collections.abc import Sequence

from cascadeflow.report import svg
from cascadeflow.report.decisions import MAX_TRANSITIONS
from cascadeflow.report.fmt import esc, money, ms, pct, short, span, when
from cascadeflow.report.model import Run
from cascadeflow.report.page import bar, card, table
from cascadeflow.report.review import Review
from cascadeflow.report.stats import NOT_KEPT, Group, LatencyRow

TOP = 15  # rows of a breakdown table; the rest are summed into one line


def _h2(key: str, title: str, note: str = "") -> str:
    return f'<h2 id="{key}">{esc(title)}</h2>' + (f"<p class=muted>{note}</p>" if note else "")


def header(r: Review) -> str:
    t = r.totals
    period = f"{when(t.first)} to {when(t.last)}" if t.first is not None else "no run times"
    sources = ", ".join(esc(s) for s in r.sources) or "-"
    return (f"<h1>cascadeflow review</h1><p class=muted>{t.runs} runs ({t.observe_runs} observe, "
            f"{t.enforce_runs} enforce) · {esc(period)} · {esc(r.filter)} · sources: {sources} · "
            f"generated {esc(when(r.generated))}</p>")


def _groups(title: str, groups: list[Group]) -> str:
    shown, rest = groups[:TOP], groups[TOP:]
    top = max((g.cost for g in shown), default=0.0)
    rows = [[esc(g.name), bar(g.cost, top) + esc(money(g.cost)), str(len(g.runs)), str(g.calls),
             f"{g.tokens:,}"] for g in shown]
    if rest:
        rows.append([f"{len(rest)} more", esc(money(sum(g.cost for g in rest))),
                     str(sum(len(g.runs) for g in rest)), str(sum(g.calls for g in rest)),
                     f"{sum(g.tokens for g in rest):,}"])
    return f"<h3>{esc(title)}</h3>" + table([title.split()[-1], "cost", "runs", "calls", "tokens"],
                                            rows, (1, 2, 3, 4))


def _day(name: str) -> str:
    """MM-DD under a bar (the year is in the header's period); "(none)" as it is."""
    if name == NOT_KEPT:
        return "not kept"  # as narrow as a date under its bar
    return name[5:] if name[:4].isdigit() else name


def overview(r: Review) -> str:
    t = r.totals
    rate = [o.completion_rate for o in r.modes if o.with_outcome]
    cards = [card(str(t.runs), "runs"), card(f"{t.steps:,}", "steps"), card(esc(money(t.cost)), "cost"),
             card(f"{t.tokens_in + t.tokens_out:,}", "tokens in + out"),
             card(str(t.stops), "stops applied"), card(str(t.would_stop), "stops observe would apply"),
             card(str(t.fallbacks), "fallbacks"), card(str(t.findings), "guardrail findings"),
             card(str(t.degraded_runs), "runs with a degraded answer"),
             card(pct(sum(o.resolved for o in r.modes), sum(o.with_outcome for o in r.modes))
                  if rate else "-", "completion rate")]
    unknown = (f"<p class=muted>{t.cost_unknown_steps} steps had no known price and count as $0.</p>"
               if t.cost_unknown_steps else "")
    most_used = sorted((g for g in r.by_model if g.name != NOT_KEPT), key=lambda g: (-g.calls, g.name))[:TOP]
    top_calls = max((g.calls for g in most_used), default=0)
    models = table(["model", "calls", "cost", "tokens"],
                   [[esc(g.name), bar(g.calls, top_calls) + str(g.calls), esc(money(g.cost)),
                     f"{g.tokens:,}"] for g in most_used], (1, 2, 3))
    return (_h2("overview", "Overview") + f"<div class=cards>{''.join(cards)}</div>" + unknown
            + "<h3>Cost per day (UTC)</h3>" + svg.bars([(_day(g.name), g.cost) for g in r.by_day], money)
            + f"<div class=grid><div>{_groups('Cost per user', r.by_user)}</div>"
            f"<div>{_groups('Cost per agent', r.by_agent)}</div></div>"
            + f"<div class=grid><div>{_groups('Cost per model', r.by_model)}</div>"
            f"<div><h3>Models used most</h3>{models}</div></div>")


def outcomes(r: Review) -> str:
    note = ('Recorded with <code>session.outcome("resolved" | "failed" | label)</code>. Completion '
            "rate: resolved / runs with an outcome. Cost per success: all the cost of those runs / "
            "resolved.")
    head = ["agent", "mode", "runs or calls", "with outcome", "resolved", "failed", "other",
            "completion rate", "cost", "cost per success", "value"]

    rows = [[esc(o.agent), esc(o.mode), str(o.sessions), str(o.with_outcome), str(o.resolved),
             str(o.failed), str(o.other), pct(o.completion_rate), esc(money(o.cost)),
             esc(money(o.cost_per_success)) if o.resolved else "-", f"{o.value:g}" if o.value else "-"]
            for o in r.outcomes]
    modes = [[esc(o.mode), str(o.sessions), pct(o.stopped, o.sessions), str(o.with_outcome),
              pct(o.completion_rate), esc(money(o.cost / o.sessions if o.sessions else None)),
              esc(money(o.cost_per_success)) if o.resolved else "-"] for o in r.modes]
    return (_h2("outcomes", "Outcomes", note) + "<h3>Observe against enforce (outermost runs)</h3>"
            + table(["mode", "runs", "stopped", "with outcome", "completion rate", "cost per run",
                     "cost per success"], modes, (1, 2, 3, 4, 5, 6))
            + "<h3>Per agent</h3>" + table(head, rows, range(2, 11)))


def would_have(r: Review) -> str:
    w = r.would_have
    key, title = "would-have", "What enforce would have done"
    if not r.totals.runs:  # not "every decision was applied": there were none
        return _h2(key, title, "No runs in these sources (after the filters): nothing to compare.")
    if not w.observe_runs:
        return _h2(key, title, "No observe runs in these sources: every decision was applied.")
    note = (f"Over the {w.observe_runs} observe runs: what observe recorded with applied=False. "
            "Savings are bounds: at least the calls enforce would not have sent, at most all spend "
            "from each run's first stop on; switches are priced at the same token counts.")
    cards = [card(str(w.stopped_calls), "calls stopped"), card(str(w.switched_calls), "models switched"),
             card(str(sum(w.tools_denied.values())), "tools denied"),
             card(str(sum(w.guardrails.values())), "guardrail actions"),
             card(f"{esc(money(w.saved_low))} to {esc(money(w.saved_high))}", "saved by stops"),
             card(esc(money(w.switch_saved)), "saved by switches (estimate)"),
             card(str(len(w.failed)), "runs that would have raised")]
    stops = table(["reason", "calls"], [[esc(k), str(v)] for k, v in sorted(w.stops.items())], (1,))
    switches = table(["from", "to", "calls", "saved (estimate)"],
                     [[esc(s.model), esc(s.target), str(s.count),
                       esc(money(s.saved)) + (f" ({s.unpriced} unpriced)" if s.unpriced else "")]
                      for s in sorted(w.switches.values(), key=lambda s: -s.count)], (2, 3))
    tools = table(["tool", "times denied"], [[esc(k), str(v)] for k, v in sorted(w.tools_denied.items())],
                  (1,))
    guards = table(["rule", "action", "count"],
                   [[esc(rule), esc(action), str(n)] for (rule, action), n in sorted(w.guardrails.items())],
                   (2,))
    failed = table(["run", "agent", "user", "step", "first", "reason", "cost of the run"],
                   [[esc(run.run_id[:12]), esc(m.agent or run.label), esc(run.user or "-"), str(m.step),
                     esc(m.action), esc(m.reason), esc(money(run.cost))] for run, m in w.failed[:50]],
                   (3, 6))
    more = f"<p class=muted>and {len(w.failed) - 50} more</p>" if len(w.failed) > 50 else ""
    return (_h2(key, title, note) + f"<div class=cards>{''.join(cards)}</div>"
            + f"<div class=grid><div><h3>Calls stopped, by reason</h3>{stops}</div>"
            f"<div><h3>Tools denied</h3>{tools}</div></div>"
            + f"<h3>Models switched</h3>{switches}<h3>Guardrail actions not applied</h3>{guards}"
            + "<h3>Runs that would have raised a PolicyStop (unless the agent catches it)</h3>"
            + failed + more)


def decisions(r: Review) -> str:
    rows = [[esc(d.action), esc(d.reason), str(d.applied), str(d.would_have), str(len(d.runs)),
             esc(", ".join(f"{a} {n}" for a, n in sorted(d.by.items(), key=lambda x: -x[1])[:5])),
             esc(short(d.example, 90))] for d in r.decisions]
    return (_h2("decisions", "Decisions", "Every non-allow policy decision and cascade event, grouped "
                "by reason (guardrail findings are under Guardrails).")
            + table(["action", "reason", "applied", "would have", "runs", "agents", "example"], rows,
                    (2, 3, 4)))


def _latency(title: str, rows: list[LatencyRow]) -> str:
    return f"<h3>{esc(title)}</h3>" + table(
        [title.split()[-1], "steps", "p50", "p95", "p99", "max"],
        [[esc(x.name), str(x.count), ms(x.p50), ms(x.p95), ms(x.p99), ms(x.max)] for x in rows[:TOP]],
        (1, 2, 3, 4, 5))


def latency(r: Review) -> str:
    slow = table(["run", "step", "agent", "model or tool", "latency", "cost"],
                 [[esc(run.run_id[:12]), str(s.number), esc(s.agent or "-"),
                   esc(s.tool if s.operation == "tool" else s.model), ms(s.latency_ms), esc(money(s.cost))]
                  for run, s in r.slowest], (1, 4, 5))
    return (_h2("latency", "Latency", "Per step, from the request to the answer (a cascade step "
                "includes its retries).")
            + f"<div class=grid><div>{_latency('Latency per agent', r.latency_agent)}</div>"
            f"<div>{_latency('Latency per model', r.latency_model)}</div></div>"
            + "<h3>Slowest steps</h3>" + slow)


def guardrails(r: Review) -> str:
    rows = [[esc(f.rule), esc(f.action), str(f.applied), str(f.would_have),
             esc(", ".join(f"{k} {v}" for k, v in sorted(f.by.items()))),
             esc(", ".join(f"{k} {v}" for k, v in sorted(f.reasons.items()))), str(len(f.runs))]
            for f in r.findings]
    near = table(["rule", "kind", "findings", "min score", "median score", "max score"],
                 [[esc(n.rule), esc(n.kind), str(n.count)] + [
                     "-" if v is None else f"{v:.2f}" for v in (n.min_score, n.median_score, n.max_score)]
                  for n in r.near_misses], (2, 3, 4, 5),
                 empty="none: no rule with a log_only or alert action matched")
    return (_h2("guardrails", "Guardrails", "Findings by rule and action: labels and counts only, "
                "never the matched text.")
            + table(["rule", "action", "applied", "would have", "stage", "reasons", "runs"], rows,
                    (2, 3, 6))
            + "<h3>Near-misses (rules that only log or alert)</h3>" + near)


def reliability(r: Review) -> str:
    rel = r.reliability
    rows = table(["action", "reason", "model", "count"],
                 [[esc(a), esc(reason), esc(m), str(n)] for a, reason, m, n in rel.by_reason], (3,))
    chart = ""
    if rel.buckets:
        label = f"<p class=muted>buckets of {span(rel.bucket_s)} (UTC)</p>"
        chart = ("<h3>Retries and fallbacks over time</h3>"
                 + svg.bars([(when(t)[5:16], float(a + b)) for t, a, b, _o in rel.buckets],
                            lambda v: f"{v:.0f}") + label)
        if any(o for *_rest, o in rel.buckets):
            chart += ("<h3>Circuit breakers opened over time</h3>"
                      + svg.bars([(when(t)[5:16], float(o)) for t, _a, _b, o in rel.buckets],
                                 lambda v: f"{v:.0f}") + label)
    moves = table(["when", "model", "from", "to"],
                  [[esc(when(t)), esc(m), esc(old), esc(new)] for t, m, old, new in
                   reversed(rel.transitions)],
                  empty="none: no circuit breaker changed state in these runs")
    return (_h2("reliability", "Reliability", f"{rel.breaker_skips} tiers skipped with their circuit "
                f"breaker open; {rel.degraded_answers} degraded answers.")
            + rows + chart + f"<h3>Circuit breaker transitions (latest {MAX_TRANSITIONS}, newest "
            f"first)</h3>" + moves)


def _run(run: Run) -> str:
    outcome = run.outcome or "-"
    cls = "ok" if run.outcome == "resolved" else ("stop" if run.outcome else "")
    head = (f'<h3 id="run-{esc(run.run_id)}">run {esc(run.run_id[:12])}'
            + (f" · {esc(run.agent)}" if run.agent else "") + "</h3>"
            f"<p><span class=pill>{esc(run.mode)}</span> user {esc(run.user or '-')} · project "
            f"{esc(run.project or '-')} · started {esc(when(run.started))} · {run.step_count} steps · "
            f"{esc(money(run.cost))} of budget {esc('none' if run.budget is None else money(run.budget))} · "
            f"outcome <span class='pill {cls}'>{esc(outcome)}</span>"
            + (" · <span class='pill stop'>stopped</span>" if run.stopped else "")
            + (" · <span class='pill warn'>degraded</span>" if run.degraded else "") + "</p>")
    if run.dropped:
        head += f"<p class=muted>{run.dropped} early trace entries were not kept (bounded trace).</p>"
    steps = []
    for s in run.steps[:svg.MAX_WATERFALL_ROWS]:
        marks = "; ".join(f"{m.action} {m.reason}" + ("" if m.applied else " (would have)")
                          for m in s.marks)
        row = [str(s.number), esc(s.agent or "-"), esc(s.operation),
               esc(s.tool if s.operation == "tool" else s.model), ms(s.latency_ms), esc(money(s.cost)),
               f"{s.tokens_in}/{s.tokens_out}", esc(money(s.budget_remaining)) if s.budget_remaining
               is not None else "-", esc(marks or "allow")]
        if s.content:
            row[-1] += "<details><summary>captured content</summary>" + "".join(
                f"<pre>{esc(k)}: {esc(v)}</pre>" for k, v in s.content.items()) + "</details>"
        steps.append(row)
    return (f"<div class=run>{head}{svg.waterfall(run)}<h3>Budget burn-down</h3>{svg.burndown(run)}"
            + "<details><summary>steps</summary>"
            + table(["step", "agent", "operation", "model or tool", "latency", "cost", "tokens in/out",
                     "budget left", "decisions"], steps, (0, 4, 5, 6, 7)) + "</details></div>")


def runs(r: Review, total: int) -> str:
    legend = ("Bars: chat (blue), tool (green), error (orange); ✕ a call enforcement never sent. "
              "Dots after a bar: decisions and cascade events, filled when applied, hollow when "
              "observe only recorded them. Rows are indented by agent nesting.")
    note = f"{len(r.detail)} of {total} runs in detail: stopped and failed runs first, then the costliest. "
    return _h2("runs", "Runs", esc(note + legend)) + "".join(_run(x) for x in r.detail)


def all_sections(r: Review) -> Sequence[str]:
    return [header(r), overview(r), outcomes(r), would_have(r), decisions(r), latency(r),
            guardrails(r), reliability(r), runs(r, r.totals.runs)]
