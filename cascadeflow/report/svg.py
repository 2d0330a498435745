"""Inline SVG charts: bars over time, a run's waterfall and its budget burn-down. No script, no
external reference: the file opens from disk and prints."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cascadeflow.report.fmt import esc, money, ms, pct, short
from cascadeflow.report.model import Mark, Run

COLOURS = {"chat": "#4c78a8", "tool": "#59a14f", "embeddings": "#76b7b2", "error": "#f28e2b",
           "stop": "#d62728", "fallback": "#ff9f1c", "retry": "#ffbf69", "block": "#9467bd",
           "switch_model": "#1f77b4", "deny_tool": "#8c564b", "redact": "#bcbd22",
           "breaker": "#e15759"}
MAX_WATERFALL_ROWS = 150
MAX_BURNDOWN_POINTS = 500  # a run of more steps is drawn from every k-th step and its last
ROW = 18
LABEL_W = 280
LABEL_CHAR_W = 6.5  # px a character of an 11 px label takes at most, near enough
TOP_GAP = 18  # bars start below the scale label (baseline y 12) in a bar chart's corner
MAX_INDENT = 10  # nesting levels shown by indenting a row; deeper rows line up with the tenth


def bars(points: Sequence[tuple[str, float]], fmt: Callable[[float], str], width: int = 900,
         height: int = 160) -> str:
    """Vertical bars with the label under each (days, time buckets)."""
    if not points:
        return "<p class=muted>nothing to chart</p>"
    top = max(v for _, v in points) or 1.0
    n = len(points)
    slot = min((width - 40) / n, 60.0)
    every = max(1, -(-n // 8))  # at most eight labels under the bars
    parts = [f'<svg class=chart viewBox="0 0 {width} {height + 48}" width="100%" role="img">']
    for i, (label, value) in enumerate(points):
        h = value / top * height
        x = 30 + i * slot
        parts.append(f'<rect x="{x + slot * 0.1:.1f}" y="{height - h + TOP_GAP:.1f}" '
                     f'width="{slot * 0.8:.1f}" height="{h:.1f}" fill="#4c78a8">'
                     f'<title>{esc(label)}: {esc(fmt(value))}</title></rect>')
        if i % every == 0:
            parts.append(f'<text x="{x + slot / 2:.1f}" y="{height + 34}" class=axis '
                         f'text-anchor="middle">{esc(label)}</text>')
    parts.append(f'<text x="2" y="12" class=axis>{esc(fmt(top))}</text></svg>')
    return "".join(parts)


def depths(run: Run) -> dict[str, int]:
    """How deep each session of the run is nested (the run itself is 0)."""
    out = {run.run_id: 0}

    def depth(session: str, guard: int = 0) -> int:
        if session in out:
            return out[session]
        info = run.sessions.get(session)
        if info is None or info.parent is None or guard > len(run.sessions):
            return 1  # a session the run did not record: one level in
        out[session] = value = depth(info.parent, guard + 1) + 1
        return value

    for session in {s.session for s in run.steps}:
        depth(session)
    return out


def _marker(m: Mark, x: float, y: float) -> str:
    colour = COLOURS.get(m.action, "#7f7f7f")
    tip = f"{m.action} {m.reason} ({'applied' if m.applied else 'would have'})"
    fill = colour if m.applied else "white"
    return (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{fill}" stroke="{colour}" '
            f'stroke-width="2"><title>{esc(tip)}</title></circle>')


def waterfall(run: Run, width: int = 1100) -> str:
    """One row per step at its start time and length, indented by agent nesting; tool steps,
    errors and calls never sent (stops) coloured; decisions and cascade events as dots (filled:
    applied, hollow: observe's would-have)."""
    steps = run.steps[:MAX_WATERFALL_ROWS]
    if not steps:
        return "<p class=muted>no steps</p>"
    starts = [s.ts for s in steps if s.ts is not None]
    t0 = min(starts) if starts else 0.0
    ends = [(s.ts or t0) + (s.latency_ms or 0.0) / 1000 for s in steps]
    span = max(max(ends) - t0, 1e-3)
    chart = width - LABEL_W - 70  # room after the last bar for its dots
    nest = depths(run)
    height = 24 + ROW * len(steps)
    parts = [f'<svg class=chart viewBox="0 0 {width} {height}" width="100%" role="img">',
             f'<text x="{LABEL_W}" y="12" class=axis>0</text>',
             f'<text x="{LABEL_W + chart}" y="12" class=axis text-anchor="end">{esc(ms(span * 1000))}</text>']
    for i, s in enumerate(steps):
        y = 20 + i * ROW
        indent = 6 + 14 * min(nest.get(s.session, 1), MAX_INDENT)
        what = s.tool if s.operation == "tool" else s.model
        full = f"{s.number} {s.agent or 'run'} · {what or '-'}"
        label = short(f"{s.number} {short(s.agent or 'run', 18)} · {what or '-'}",
                      int((LABEL_W - 8 - indent) / LABEL_CHAR_W))  # never across the bars
        parts.append(f'<text x="{indent}" y="{y + 12}" class=label>{esc(label)}'
                     f'<title>{esc(full)}</title></text>')
        x = LABEL_W + ((s.ts or t0) - t0) / span * chart
        sent = s.latency_ms is not None
        w = max((s.latency_ms or 0.0) / 1000 / span * chart, 2.0)
        colour = COLOURS["error"] if s.error else COLOURS.get(s.operation, "#4c78a8")
        tip = (f"step {s.number} · {s.operation} {what or ''} · {ms(s.latency_ms)} · {money(s.cost)}"
               + (f" · error {s.error}" if s.error else ""))
        if sent:
            parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{ROW - 6}" '
                         f'fill="{colour}"><title>{esc(tip)}</title></rect>')
        else:
            parts.append(f'<path d="M{x - 4:.1f} {y + 5} l8 8 m0 -8 l-8 8" stroke="{COLOURS["stop"]}" '
                         f'stroke-width="2"><title>{esc(tip + " · not sent")}</title></path>')
        for j, m in enumerate(s.marks):
            if m.operation == "guardrail":
                continue
            parts.append(_marker(m, x + (w if sent else 0) + 7 + 11 * j, y + ROW / 2))
    parts.append("</svg>")
    if len(run.steps) > len(steps):
        parts.append(f"<p class=muted>{len(run.steps) - len(steps)} more steps not drawn</p>")
    return "".join(parts)


def burndown(run: Run, width: int = 1100, height: int = 120) -> str:
    """Spend so far after each step, against the run's budget (dashed) when it had one."""
    spent, total = [], 0.0
    for s in run.steps:
        total += s.cost or 0.0
        spent.append(total)
    if not spent:
        return ""
    top = max(total, run.budget or 0.0) or 1.0
    n = len(spent)
    shown = list(range(0, n, -(-n // MAX_BURNDOWN_POINTS)))
    if shown[-1] != n - 1:  # always the last step
        shown.append(n - 1)
    x = [60 + (width - 80) * (i / max(n - 1, 1)) for i in shown]
    y = [10 + height - spent[i] / top * height for i in shown]
    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y, strict=True))
    parts = [f'<svg class=chart viewBox="0 0 {width} {height + 30}" width="100%" role="img">',
             f'<polyline points="{line}" fill="none" stroke="#4c78a8" stroke-width="2"/>',
             f'<text x="2" y="{height + 10}" class=axis>$0</text>',
             f'<text x="{width - 20}" y="{height + 28}" class=axis text-anchor="end">'
             f'step {run.steps[-1].number}</text>',
             f'<text x="{x[-1]:.1f}" y="{max(y[-1] - 4, 10):.1f}" class=axis text-anchor="end">'
             f'spent {esc(money(total))}</text>']
    if run.budget is not None:  # a budget of 0 is a budget (every call stopped), drawn at $0
        by = 10 + height - run.budget / top * height
        parts.append(f'<line x1="60" x2="{width - 20}" y1="{by:.1f}" y2="{by:.1f}" stroke="#d62728" '
                     f'stroke-dasharray="6 4"/><text x="62" y="{by + 14:.1f}" class=axis>'
                     f'budget {esc(money(run.budget))}'
                     + (f' ({esc(pct(total, run.budget))} spent)' if run.budget else '') + '</text>')
    parts.append("</svg>")
    return "".join(parts)
