"""Formatting for the report: escaped text, money at a precision that shows small costs, times."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def money(value: float | None) -> str:
    if value is None:
        return "unknown"
    size = abs(value)
    if size >= 100:
        return f"${value:,.2f}"
    if size >= 0.01 or size == 0:
        return f"${value:.4f}"
    return f"${value:.6f}"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


def span(seconds: float) -> str:
    """A bucket length in the largest whole unit: 5 min, 6 h, 1 day."""
    for size, unit in ((7 * 86400, "week"), (86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def pct(part: float | None, whole: float | None = 1.0) -> str:
    if part is None or not whole:
        return "-"
    return f"{100.0 * part / whole:.1f}%"


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short(text: str | None, n: int = 40) -> str:
    value = text or "-"
    return value if len(value) <= n else value[: n - 1] + "…"
