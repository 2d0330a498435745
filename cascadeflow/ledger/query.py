"""Questions the CLI asks of the ledger's SQLite file: spend per group and window, the filterable
request log, retention and deletion by data subject. Plain SQL: reads on a read-only connection
(`ReadOnly`), retention and deletion through `SQLiteStore`'s write transactions; nothing here
prints.

Spend is grouped by calendar window in the ledger's time zone. SQLite cannot convert to an IANA
zone, so the windows are made here (`Window.start`/`end`, DST included) and joined as ranges of
`ts`: each window is one index range scan on `events_ts`, and the sums stay in SQL.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from cascadeflow.ledger.quotas import KINDS, key
from cascadeflow.ledger.sqlite import BUSY_TIMEOUT_S, SQLiteStore
from cascadeflow.ledger.store import StoreUnavailable
from cascadeflow.quantiles import ranks
from cascadeflow.windows import Window

DAY_S = 86400
GROUPS = ("user", "project", "agent", "model", "provider")  # --by: event columns, nothing else
BATCH = 5000  # rows a retention or deletion transaction changes: writers wait at most one batch
MARK_KINDS = ("budget_threshold", "budget_window_exceeded")  # Ledger._check_thresholds' marks
_SQLITE_READONLY, _SQLITE_CANTOPEN = 8, 14  # primary result codes (the low byte)


@dataclass(frozen=True, slots=True)
class Spend:
    """One group's spend in one window."""

    window: str  # 2026-11-22, 2026-11
    group: str | None  # the user, project, ...; None for calls made without one
    calls: int
    stopped: int  # steps enforcement stopped (they cost nothing)
    tokens_in: int
    tokens_out: int
    cached_tokens: int
    uncached_tokens: int
    cost: float  # USD of the priced calls
    unpriced: int  # calls whose cost was unknown (not in `cost`)


class Reader(Protocol):
    def read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]: ...


class ReadOnly:
    """A ledger opened read-only, for `spend` and `steps`: `SQLiteStore` creates a missing file
    (or adds the ledger's tables to any SQLite file) and takes the write lock to do it, which a
    report neither needs nor should wait for behind busy writers."""

    def __init__(self, path: Path) -> None:
        if path.is_dir():
            raise ValueError("a folder, not a ledger file: pass the SQLite file the ledger writes "
                             "(its [ledger] path)")
        if path.exists() and not path.is_file():
            raise ValueError("not a regular file, so not a ledger")
        if not path.is_file():
            raise ValueError("no such file (nothing has been recorded there yet?)")
        self.path = path
        try:
            self._conn = _connect(path)
        except sqlite3.Error as exc:
            raise ValueError(f"not a cascadeflow ledger ({exc})") from None

    def read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"ledger {self.path}: {exc}") from exc

    def stream(self, sql: str, params: Sequence[object] = ()) -> Generator[tuple[object, ...], None, None]:
        """The rows of a query one at a time, for a result too large to hold."""
        try:
            cursor = self._conn.execute(sql, params)
            try:
                while batch := cursor.fetchmany(1000):
                    yield from batch
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"ledger {self.path}: {exc}") from exc

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads that see the ledger as of one moment (one read transaction): writers commit
        beside it in WAL mode, and never wait for it."""
        try:
            self._conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"ledger {self.path}: {exc}") from exc
        try:
            yield
        finally:
            with suppress(sqlite3.Error):
                self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()


def _connect(path: Path) -> sqlite3.Connection:
    """A read-only connection to the ledger at `path`, its schema checked.

    Reading a WAL file needs its `-shm` index beside it, which SQLite creates when it is missing:
    once the last writer has closed the ledger it is gone, and a user who may read the file but
    not write its folder (an operator reading a service's ledger) is refused. With no `-wal`
    file either, everything is in the main file, which is then read as it is (`immutable`); with
    a `-wal` but no `-shm`, nothing can read the log, and the error says what to do."""
    if not os.access(path, os.R_OK):
        raise ValueError("this user may not read it (permission denied)")
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        return conn
    except sqlite3.Error as exc:
        conn.close()
        folder = path.resolve().parent
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code not in (_SQLITE_READONLY, _SQLITE_CANTOPEN) or os.access(folder, os.W_OK):
            raise
        if path.with_name(f"{path.name}-wal").exists():
            raise ValueError(f"cannot read its log {path.name}-wal: SQLite must create "
                             f"{path.name}-shm beside it and this user may not write {folder}; "
                             f"run as the user that writes the ledger") from None
    conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def windows(window: Window, low: float, high: float) -> list[tuple[str, int, int]]:
    """(label, start, end) of every calendar window from the one holding `low` to the one
    holding `high`."""
    out: list[tuple[str, int, int]] = []
    start = window.start(low)
    while start <= high:
        end = window.end(start)
        out.append((window.label(start), start, end))
        start = end
    return out


def spend(store: Reader, by: str, window: Window, since: float | None = None) -> list[Spend]:
    """Spend per `by` (one of `GROUPS`) per calendar `window`, oldest window first."""
    if by not in GROUPS:
        raise ValueError(f"expected one of {list(GROUPS)}")
    low = since if since is not None else -math.inf
    ((first, last),) = store.read("SELECT MIN(ts), MAX(ts) FROM events WHERE ts >= ?", (low,))
    if first is None:
        return []
    for ts in (first, last):
        if not in_calendar(as_float(ts)):  # it would walk day by day to the year 9999, then fail
            where = f"ledger {store.path}: " if isinstance(store, ReadOnly) else ""
            raise StoreUnavailable(f"{where}an event's ts {as_float(ts)!r} is not a time (epoch seconds) "
                                   f"between the years 2 and 9998: a damaged or imported row? "
                                   f"(`ledger steps` lists it)")
    out: list[Spend] = []
    for label, start, end in windows(window, as_float(first), as_float(last)):
        rows = store.read(
            f'SELECT "{by}", COUNT(*), SUM(status = \'stopped\'), SUM(tokens_in), SUM(tokens_out), '
            "SUM(cached_tokens), SUM(MAX(tokens_in - cached_tokens, 0)), TOTAL(cost), "
            f'SUM(cost IS NULL) FROM events INDEXED BY events_ts WHERE ts >= ? AND ts < ? '
            f'GROUP BY "{by}" '
            f'ORDER BY "{by}"', (max(start, low), end))
        out += [Spend(label, None if g is None else str(g), as_int(calls), as_int(stopped),
                      as_int(tokens_in), as_int(tokens_out), as_int(cached), as_int(uncached),
                      as_float(cost), as_int(unpriced))
                for g, calls, stopped, tokens_in, tokens_out, cached, uncached, cost, unpriced
                in rows]
    return out


_FIRST = datetime(2, 1, 1, tzinfo=UTC).timestamp()  # a day off either end: any zone's window fits
_LAST = datetime(9998, 12, 31, tzinfo=UTC).timestamp()


def in_calendar(ts: float) -> bool:
    """Whether `ts` (epoch seconds) is a time whose windows and local date can be computed."""
    return _FIRST <= ts <= _LAST


@dataclass(frozen=True, slots=True)
class Filters:
    """`cascadeflow ledger steps` filters; None matches everything."""

    model: str | None = None
    agent: str | None = None
    user: str | None = None
    project: str | None = None
    error: str | None = None
    status: str | None = None
    min_latency_ms: float | None = None
    since: float | None = None

    def where(self) -> tuple[str, list[object]]:
        """The WHERE clause and its parameters (exact matches only: no LIKE wildcards)."""
        clauses: list[str] = []
        params: list[object] = []
        for column in ("model", "agent", "user", "project", "error", "status"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f'"{column}" = ?')
                params.append(value)
        if self.min_latency_ms is not None:
            clauses.append("latency_ms >= ?")
            params.append(self.min_latency_ms)
        if self.since is not None:
            clauses.append("ts >= ?")
            params.append(self.since)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


STEP_COLUMNS = ("ts", "run_id", "step", "user", "project", "agent", "workflow", "operation",
                "requested_model", "model", "provider", "tokens_in", "tokens_out", "cached_tokens",
                "reasoning_tokens", "cost", "latency_ms", "status", "error", "action", "reason",
                "mode", "tool")  # never `content` (prompt text) nor `metadata`


def steps(store: Reader, filters: Filters, limit: int) -> list[dict[str, object]]:
    """The newest `limit` steps matching `filters`, without prompt text or metadata."""
    where, params = filters.where()
    columns = ", ".join(f'"{c}"' for c in STEP_COLUMNS)
    rows = store.read(f"SELECT {columns} FROM events{where} ORDER BY ts DESC, id DESC LIMIT ?",
                      [*params, limit])
    return [dict(zip(STEP_COLUMNS, row, strict=True)) for row in rows]


@dataclass(frozen=True, slots=True)
class Matched:
    """The steps `Filters` match: how many, how many have a latency, its percentiles (None
    without one)."""

    count: int
    samples: int
    percentiles: tuple[float | None, ...]


def matched(store: ReadOnly, filters: Filters, percents: Sequence[float]) -> Matched:
    """Count the matching steps and take the `percents` of their latencies from one ordered
    pass in one snapshot. SQLite sorts (spilling to a temporary file) and only the values at
    the ranks wanted are kept: a ledger of tens of millions of steps held every latency in
    memory (a 3-million-step ledger took 340 MB to list its steps)."""
    where, params = filters.where()
    numeric = "typeof(latency_ms) IN ('integer', 'real')"
    with store.snapshot():
        ((count, samples),) = store.read(f"SELECT COUNT(*), TOTAL({numeric}) FROM events{where}",
                                         params)
        total = as_int(samples)
        if not total:
            return Matched(as_int(count), 0, tuple(None for _ in percents))
        wanted = [ranks(total, q) for q in percents]
        needed = sorted({index for low, high, _ in wanted for index in (low, high)})
        clause = f"{where} AND {numeric}" if where else f" WHERE {numeric}"
        found: dict[int, float] = {}
        rows = store.stream(f"SELECT latency_ms FROM events{clause} ORDER BY latency_ms", params)
        with closing(rows):  # its statement ends before the snapshot does
            for index, (value,) in enumerate(rows):
                if index == needed[len(found)]:
                    found[index] = as_float(value)
                    if len(found) == len(needed):
                        break
    values = tuple(found[low] + (found[high] - found[low]) * weight for low, high, weight in wanted)
    return Matched(as_int(count), total, values)


def models_containing(store: Reader, name: str, limit: int = 10) -> list[str]:
    """The models the ledger has whose name contains `name` (any case), `name` itself first:
    `--model gpt-4o-mini` matches nothing in a ledger of `openai/gpt-4o-mini`, and the user
    should be told so."""
    rows = store.read('SELECT DISTINCT "model" FROM events WHERE instr(lower("model"), lower(?)) > 0 '
                      'ORDER BY "model" = ? DESC, "model" LIMIT ?', [name, name, limit])
    return [str(model) for (model,) in rows]


# -- retention ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Retention:
    """Cut-offs (epoch seconds): what is older goes."""

    usage: float
    content: float
    outcomes: float

    @classmethod
    def of(cls, now: float, usage_days: int, content_days: int, outcome_days: int) -> Retention:
        return cls(now - usage_days * DAY_S, now - content_days * DAY_S, now - outcome_days * DAY_S)


_EXPIRED = {"counters": "expires", "holds": "expires", "slots": "expires", "marks": "until"}


def purge(store: SQLiteStore, cut: Retention, now: float, dry_run: bool = False) -> dict[str, int]:
    """Apply retention: rows removed (or, dry, that would be) per class. Content is blanked only
    in events that outlive the usage cut-off."""
    if dry_run:
        counts = {
            "events": _count(store, "events", "ts < ?", (cut.usage,)),
            "run_entries": _count(store, "run_entries", "ts < ?", (cut.usage,)),
            "content": _count(store, "events", "content IS NOT NULL AND ts >= ? AND ts < ?",
                              (cut.usage, cut.content)),
            "outcomes": _count(store, "outcomes", "ts < ?", (cut.outcomes,)),
        }
        return counts | {t: _count(store, t, f"{c} < ?", (now,)) for t, c in _EXPIRED.items()}
    counts = {
        "events": _batched(store, "DELETE FROM events WHERE id IN (SELECT id FROM events "
                                  "WHERE ts < ? LIMIT ?)", (cut.usage,)),
        "run_entries": _batched(store, "DELETE FROM run_entries WHERE rowid IN (SELECT rowid FROM "
                                       "run_entries WHERE ts < ? LIMIT ?)", (cut.usage,)),
        "content": _batched(store, "UPDATE events SET content = NULL WHERE id IN (SELECT id FROM "
                                   "events WHERE content IS NOT NULL AND ts < ? LIMIT ?)",
                            (cut.content,)),
        "outcomes": store.execute("DELETE FROM outcomes WHERE ts < ?", (cut.outcomes,)),
    }
    return counts | store.purge(now)


# -- deletion by data subject -----------------------------------------------------------------
def user_keys(user: str, budgets: Sequence[str], limits: Sequence[str]) -> list[str]:
    """The counter, hold and slot keys of `user` under the user-scoped budgets and limits named
    (the key format of `quotas.Quotas.shares`)."""
    keys = [key("budget", name, user) for name in budgets]
    return keys + [key(kind, name, user) for name in limits for kind in KINDS[1:]]


BY_ROW = ("events", "run_entries")  # tables that grow with every step: deleted in batches


def forget(store: SQLiteStore, user: str, keys: Sequence[str], dry_run: bool = False
           ) -> dict[str, int]:
    """Delete (or, dry, count) `user`'s rows in the ledger: events, run entries, outcomes, and
    the counters, holds, slots and alert marks under `keys`. Exact comparisons only: a user id may hold `%`
    or `_`, and `u1` must never take `u10` with it."""
    marks = [f"{kind}:{key}:" for kind in MARK_KINDS for key in keys if key.startswith("budget:")]
    marked = " OR ".join(["(substr(key, 1, ?) = ? AND substr(key, ? + 1) NOT GLOB '*[^0-9]*')"]
                         * len(marks)) or "0"
    where: dict[str, tuple[str, list[object]]] = {
        "events": ("user = ?", [user]),
        "run_entries": ("user = ?", [user]),
        "outcomes": ("user = ?", [user]),
        "counters": (_in(keys), list(keys)),
        "holds": (_in(keys), list(keys)),
        "slots": (_in(keys), list(keys)),
        "marks": (marked, [v for m in marks for v in (len(m), m, len(m))]),
    }
    if dry_run:
        return {table: _count(store, table, clause, params) for table, (clause, params)
                in where.items()}
    counts = {table: _batched(store, f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM "
                                     f"{table} WHERE user = ? LIMIT ?)", (user,))
              for table in BY_ROW}
    return counts | {table: store.execute(f"DELETE FROM {table} WHERE {clause}", params)
                     for table, (clause, params) in where.items() if table not in BY_ROW}


def _in(values: Sequence[str]) -> str:
    return f"key IN ({', '.join('?' for _ in values)})" if values else "0"


def _count(store: Reader, table: str, clause: str, params: Sequence[object]) -> int:
    ((count,),) = store.read(f"SELECT COUNT(*) FROM {table} WHERE {clause}", params)
    return as_int(count)


def _batched(store: SQLiteStore, sql: str, params: Sequence[object]) -> int:
    """Run a `... LIMIT ?` write until it changes fewer than `BATCH` rows: one short transaction
    each, so the processes writing the ledger never wait long for its lock."""
    total = 0
    while True:
        changed = store.execute(sql, [*params, BATCH])
        total += changed
        if changed < BATCH:
            return total


def as_int(value: object) -> int:
    """A number read from the ledger (SQLite hands back NULL, or text in a damaged file), 0
    when it is none."""
    return int(value) if isinstance(value, int | float) else 0


def as_float(value: object) -> float:
    """As `as_int`, a float."""
    return float(value) if isinstance(value, int | float) else 0.0
