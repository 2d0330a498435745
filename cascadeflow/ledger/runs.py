"""Runs read back from the ledger: each outermost run's usage events, its other trace entries and
its outcomes, for the report (`cascadeflow report --ledger`). Plain SQL on a `Reader`.

A run is every event with the same `root_run_id`. Calls made outside any `run()` have none (and a
step number in it, `root_step`): they are no run, and only counted. Events written before the
ledger kept runs (schema 1) have neither: each session is then its own run, as its `run_id` says.
A file of schema 1 opened read-only lacks the newer columns and tables; they read as NULL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cascadeflow.ledger.events import COLUMNS, OUTCOME_COLUMNS
from cascadeflow.ledger.query import Reader, as_int
from cascadeflow.ledger.store import StoreUnavailable

CHUNK = 400  # runs read per query (two IN lists of this many stay under SQLite's 999 variables)
IN_RUN = "(root_run_id IS NOT NULL OR root_step IS NULL)"  # not a call outside any run()
OUTSIDE = "root_run_id IS NULL AND root_step IS NOT NULL"
EVENT_FIELDS = ("id", *(c for c in COLUMNS if c != "metadata"))  # the report shows no metadata


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Which runs to read: those with an event since `since` (and of this user, agent, project).
    A run matches when any of its events does; the report checks the run as a whole again."""

    since: float | None = None
    user: str | None = None
    agent: str | None = None
    project: str | None = None

    def where(self, *clauses: str, outcome_roots: bool = False) -> tuple[str, list[object]]:
        """`clauses` and the filters, ANDed, with their parameters. An agent takes part in a run
        when it made a call there, or (`outcome_roots`: the outcomes know their run) recorded
        an outcome there without a call of its own."""
        out, params = list(clauses), list[object]()
        for clause, value in (("ts >= ?", self.since), ('"user" = ?', self.user),
                              ("project = ?", self.project)):
            if value is not None:
                out.append(clause)
                params.append(value)
        if self.agent is not None:
            agent = "agent = ? OR workflow = ?"
            if outcome_roots:
                agent += " OR root_run_id IN (SELECT root_run_id FROM outcomes WHERE agent = ?)"
            out.append(f"({agent})")
            params += [self.agent] * agent.count("?")
        return " AND ".join(out) or "1", params


@dataclass(slots=True)
class LedgerRun:
    """One outermost run as the ledger kept it."""

    run_id: str
    events: list[dict[str, Any]] = field(default_factory=list)  # in step order
    entries: list[dict[str, Any]] = field(default_factory=list)  # run_id, step, ts, entry
    outcomes: list[dict[str, Any]] = field(default_factory=list)  # oldest first


class _Schema:
    """The tables and columns a (possibly older) file has: a missing column reads as NULL."""

    def __init__(self, reader: Reader) -> None:
        self.tables = {str(name) for (name,) in reader.read(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.columns: dict[str, set[str]] = {
            t: {str(r[1]) for r in reader.read(f"PRAGMA table_info({t})")}
            for t in ("events", "outcomes") if t in self.tables}
        self.runs = "root_step" in self.columns.get("events", set())  # schema 2 or later

    def select(self, table: str, names: Sequence[str]) -> str:
        have = self.columns.get(table, set())
        return ", ".join(f'"{n}"' if n in have else f'NULL AS "{n}"' for n in names)

    def of(self, table: str, count: int) -> tuple[str, int]:
        """The rows of `count` runs (run ids bound twice when the table has roots): the root's
        own index, and the session's for rows written before roots were kept."""
        marks = ", ".join("?" for _ in range(count))
        if "root_run_id" not in self.columns.get(table, set()):
            return f"run_id IN ({marks})", 1
        return f"root_run_id IN ({marks}) OR (root_run_id IS NULL AND run_id IN ({marks}))", 2


def runs(reader: Reader, query: RunQuery, chunk: int = CHUNK) -> Iterator[LedgerRun]:
    """Every run with an event matching `query`, oldest first, read `chunk` runs at a time."""
    schema = _Schema(reader)
    if "events" not in schema.tables:
        return
    key = "COALESCE(root_run_id, run_id)" if schema.runs else "run_id"
    roots = "root_run_id" in schema.columns.get("outcomes", set())
    where, params = query.where(*([IN_RUN] if schema.runs else []), outcome_roots=roots)
    keys = [str(k) for (k, _first) in reader.read(
        f"SELECT {key}, MIN(ts) FROM events WHERE {where} GROUP BY 1 ORDER BY 2, 1", params)]
    for start in range(0, len(keys), chunk):
        yield from _read(reader, schema, keys[start:start + chunk])


def outside(reader: Reader, query: RunQuery) -> tuple[int, float]:
    """Calls made outside any run() that match `query`: how many and what they cost. They are
    in `cascadeflow ledger spend`, not among the report's runs."""
    if not _Schema(reader).runs:
        return 0, 0.0
    where, params = query.where(OUTSIDE)
    ((count, cost),) = reader.read(f"SELECT COUNT(*), TOTAL(cost) FROM events WHERE {where}", params)
    return as_int(count), float(cost) if isinstance(cost, int | float) else 0.0


def loads(text: object, what: str) -> Any:
    """A JSON column of the ledger read back; StoreUnavailable naming the row when it is not
    JSON (a file edited by hand or damaged), not a JSONDecodeError out of the report."""
    try:
        return json.loads(text if isinstance(text, str | bytes) else str(text))
    except ValueError as exc:
        raise StoreUnavailable(f"{what} is not JSON ({exc}): the file is damaged") from None


def _read(reader: Reader, schema: _Schema, keys: list[str]) -> Iterator[LedgerRun]:
    found = {k: LedgerRun(k) for k in keys}
    where, times = schema.of("events", len(keys))
    rows = reader.read(f"SELECT {schema.select('events', EVENT_FIELDS)} FROM events WHERE {where}",
                       keys * times)
    for row in rows:
        event = dict(zip(EVENT_FIELDS, row, strict=True))
        found[str(event["root_run_id"] or event["run_id"])].events.append(event)
    for run in found.values():
        run.events.sort(key=lambda e: (as_int(e["root_step"] if e["root_step"] is not None
                                            else e["step"]), as_int(e["id"])))
    if "run_entries" in schema.tables:
        marks = ", ".join("?" for _ in keys)
        for root, run_id, step, ts, entry in reader.read(
                "SELECT root_run_id, run_id, step, ts, entry FROM run_entries WHERE root_run_id IN "
                f"({marks}) ORDER BY rowid", keys):
            found[str(root)].entries.append({"run_id": run_id, "step": step, "ts": ts,
                                             "entry": loads(entry, f"a run entry of run {root}")})
    if "outcomes" in schema.tables:
        where, times = schema.of("outcomes", len(keys))
        rows = reader.read(f"SELECT {schema.select('outcomes', OUTCOME_COLUMNS)} FROM outcomes "
                           f"WHERE {where} ORDER BY ts", keys * times)
        for row in rows:
            outcome = dict(zip(OUTCOME_COLUMNS, row, strict=True))
            found[str(outcome["root_run_id"] or outcome["run_id"])].outcomes.append(outcome)
    yield from (r for r in found.values() if r.events)
