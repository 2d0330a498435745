"""Which runs a review covers: `--since`, `--user`, `--agent`, `--project`.

The same filters apply to every source, so a folder of saved sessions narrows the way the
ledger does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cascadeflow.errors import ConfigError
from cascadeflow.report.model import Run, in_calendar
from cascadeflow.windows import since


def parse_since(value: str, now: float | None = None, argument: str = "--since") -> float:
    """`30m`, `24h`, `7d`, `2w` ago, an ISO date/time (UTC unless it names a zone) or an epoch:
    `windows.since`, with a bad value a ConfigError naming the argument."""
    try:
        epoch = since(value, time.time() if now is None else now)
    except ValueError as exc:
        raise ConfigError(argument, value, "the command line", str(exc)) from None
    if not in_calendar(epoch):  # 1e30, 9999999999d: no date to compare with or to print
        raise ConfigError(argument, value, "the command line", "a time before the year 1 or "
                          "after 9999")
    return epoch


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
