"""Which runs a review covers: `--since`, `--user`, `--agent`, `--project`.

The same filters apply to every source, so a folder of saved sessions narrows the way the
ledger does.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cascadeflow.errors import ConfigError
from cascadeflow.report.model import Run

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, now: float | None = None, argument: str = "--since") -> float:
    """`30m`, `24h`, `7d`, `2w` ago, or an ISO date/time (UTC unless it names a zone)."""
    text = value.strip()
    match = _AGO.match(text)
    if match:
        return (time.time() if now is None else now) - float(match[1]) * _SECONDS[match[2]]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(argument, value, "command line",
                          "expected a duration ago (30m, 24h, 7d, 2w) or an ISO date such as "
                          "2026-11-20 or 2026-11-20T08:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@dataclass(frozen=True, slots=True)
class RunFilter:
    since: float | None = None
    user: str | None = None
    agent: str | None = None
    project: str | None = None

    def keeps(self, run: Run) -> bool:
        if self.since is not None and (run.started is None or run.started < self.since):
            return False
        if self.user is not None and run.user != self.user:
            return False
        if self.project is not None and run.project != self.project:
            return False
        return self.agent is None or self.agent in run.agents()

    def describe(self) -> str:
        parts = []
        if self.since is not None:
            parts.append("since " + datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%d %H:%M UTC"))
        parts += [f"{k}={v}" for k, v in (("user", self.user), ("agent", self.agent),
                                           ("project", self.project)) if v is not None]
        return ", ".join(parts) or "all runs"
