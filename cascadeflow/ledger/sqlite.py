"""The embedded ledger: one SQLite file in WAL mode, shared by every process on the machine.

Why SQLite: it is in the standard library, one file, and its `BEGIN IMMEDIATE` transaction takes
the database's single write lock before reading, so a check-then-hold (`acquire`) is atomic
across every process that opens the file: two processes can never both see the same free money.
WAL lets readers (`figures`, the CLI) run beside the writer; `synchronous=NORMAL` makes a commit
durable against a process crash (what the tests kill) without an fsync per call, and against a
power loss up to the last checkpoint.

Each thread uses its own connection (sqlite3 connections are not shared between threads), closed
once that thread has ended (when the next connection is opened), and a forked child opens its own.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from cascadeflow.ledger.events import COLUMNS, OUTCOME_COLUMNS
from cascadeflow.ledger.store import Claim, Counter, Refusal, Settlement, Slot, StoreUnavailable

SCHEMA_VERSION = 2  # 2: runs (root, parent, step in the root, budget), run entries, outcome roots
BUSY_TIMEOUT_S = 30.0  # how long a transaction waits for another process's write lock

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    {", ".join(f'"{c}"' for c in COLUMNS)}
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_user ON events (user, ts);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id);
CREATE TABLE IF NOT EXISTS run_entries (
    root_run_id TEXT NOT NULL, run_id TEXT NOT NULL, step INTEGER NOT NULL, ts REAL NOT NULL,
    user TEXT, entry TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS run_entries_root ON run_entries (root_run_id);
CREATE INDEX IF NOT EXISTS run_entries_ts ON run_entries (ts);
CREATE TABLE IF NOT EXISTS counters (
    key TEXT NOT NULL, bucket INTEGER NOT NULL, amount INTEGER NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (key, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holds (
    id TEXT NOT NULL, key TEXT NOT NULL, bucket INTEGER NOT NULL, amount INTEGER NOT NULL,
    expires REAL NOT NULL, PRIMARY KEY (key, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slots (key TEXT NOT NULL, ts REAL NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS slots_key ON slots (key, ts);
CREATE TABLE IF NOT EXISTS marks (key TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outcomes (
    run_id TEXT NOT NULL, ts REAL NOT NULL, label TEXT NOT NULL, value REAL, user TEXT,
    project TEXT, agent TEXT, root_run_id TEXT, parent_run_id TEXT);
CREATE INDEX IF NOT EXISTS outcomes_run ON outcomes (run_id);
"""
# columns added since the first schema: a file written before them gets them when it is opened
# for writing (ALTER TABLE ADD COLUMN changes no row, so it takes no time on a large file); their
# rows read NULL there, which the report reads as "each session its own run"
ADDED = {"events": {"tool_calls": "INTEGER", "root_run_id": "TEXT", "parent_run_id": "TEXT",
                    "root_step": "INTEGER", "budget": "REAL"},
         "outcomes": {"root_run_id": "TEXT", "parent_run_id": "TEXT"}}
_INDEXES = """
CREATE INDEX IF NOT EXISTS events_root ON events (root_run_id);
CREATE INDEX IF NOT EXISTS outcomes_root ON outcomes (root_run_id);
"""
_INSERT_EVENT = (f"INSERT INTO events ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in COLUMNS)}) "
                 f"VALUES ({', '.join('?' for _ in COLUMNS)})")
_INSERT_ENTRY = "INSERT INTO run_entries VALUES (?, ?, ?, ?, ?, ?)"
_INSERT_OUTCOME = (f"INSERT INTO outcomes ({', '.join(OUTCOME_COLUMNS)}) "
                   f"VALUES ({', '.join('?' for _ in OUTCOME_COLUMNS)})")
_ADD = ("INSERT INTO counters (key, bucket, amount, expires) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key, bucket) DO UPDATE SET amount = amount + excluded.amount")


class SQLiteStore:
    """`Store` on a SQLite file; also the event log the CLI and the report read."""

    def __init__(self, path: str | os.PathLike[str], counters: bool = True) -> None:
        self.path = Path(path)
        self.counters = counters  # False: events only (the counters live in Redis)
        self._local = threading.local()
        self._pid = os.getpid()
        # every thread's, with its thread: closed by `close`, or once its thread has ended (a
        # server with a thread per request kept one open per request it ever served)
        self._opened: dict[sqlite3.Connection, threading.Thread] = {}
        # connections a thread is using now, and those `close` left to that thread to close:
        # closing one under a thread in the middle of a statement crashes the interpreter
        self._guard = threading.Lock()
        self._in_use: set[sqlite3.Connection] = set()
        self._retired: set[sqlite3.Connection] = set()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connection()
            conn.executescript(_SCHEMA)
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open the ledger {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        """Add the columns a file of an older schema lacks, under the write lock (two processes
        opening it at once must not both add them)."""
        with self._write() as db:
            for table, added in ADDED.items():
                present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for column, kind in added.items():
                    if column not in present:
                        db.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {kind}')
            for statement in filter(str.strip, _INDEXES.split(";")):
                db.execute(statement)
            # only ever raised: a newer build's number stays when an older one opens the file
            db.execute("INSERT INTO meta VALUES ('schema', ?) ON CONFLICT (key) DO UPDATE SET "
                       "value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                       (str(SCHEMA_VERSION),))

    # -- connections -----------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._pid == os.getpid():
            return conn
        if self._pid != os.getpid():  # a forked child: the parent's connections are not ours
            self._local, self._pid, self._opened = threading.local(), os.getpid(), {}
            self._guard, self._in_use, self._retired = threading.Lock(), set(), set()
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        self._local.conn = conn
        with self._guard:
            for old, thread in list(self._opened.items()):
                if not thread.is_alive() and old not in self._in_use:  # no thread can use it again
                    old.close()
                    del self._opened[old]
            self._opened[conn] = threading.current_thread()
        return conn

    @contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, marked in use until the block ends: `close` then leaves
        it to this thread, which closes it here."""
        try:
            conn = self._connection()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"ledger {self.path}: {exc}") from exc
        with self._guard:
            self._in_use.add(conn)
        try:
            yield conn
        finally:
            with self._guard:
                self._in_use.discard(conn)
                retired = conn in self._retired
                self._retired.discard(conn)
            if retired:
                conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the file's write lock from its first statement."""
        with self._use() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"ledger {self.path}: {exc}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreUnavailable(f"ledger {self.path}: {exc}") from exc
                raise

    def read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Rows of a read-only query (the CLI and the report)."""
        with self._use() as conn:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"ledger {self.path}: {exc}") from exc

    # -- Store -----------------------------------------------------------------------------
    def figures(self, counters: Sequence[Counter], now: float) -> list[tuple[int, int]]:
        with self._use() as conn:
            try:
                return [_figures(conn, c, now) for c in counters]
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"ledger {self.path}: {exc}") from exc

    def acquire(self, hold: str, claims: Sequence[Claim], slots: Sequence[Slot], now: float
                ) -> Refusal | None:
        with self._write() as db:
            for index, claim in enumerate(claims):
                settled, held = _figures(db, claim.counter, now)
                limit = claim.counter.limit
                if settled + held + claim.amount > limit or (claim.amount == 0 and settled >= limit):
                    return Refusal(index, settled, held)
            for index, slot in enumerate(slots, len(claims)):
                # out of the window, or more than a window ahead (a clock that stepped back)
                db.execute("DELETE FROM slots WHERE key = ? AND (ts <= ? OR ts > ?)",
                           (slot.key, now - slot.seconds, now + slot.seconds))
                (used,) = db.execute("SELECT COUNT(*) FROM slots WHERE key = ?", (slot.key,)).fetchone()
                if used >= slot.limit:
                    return Refusal(index, int(used), 0)
            for claim in claims:
                if claim.amount:
                    window = claim.counter.window
                    db.execute("INSERT INTO holds VALUES (?, ?, ?, ?, ?)",
                               (hold, claim.counter.key, window.bucket(now), claim.amount,
                                window.end(now)))
            for slot in slots:
                db.execute("INSERT INTO slots VALUES (?, ?, ?)", (slot.key, now, now + slot.seconds))
        return None

    def commit(self, settlements: Sequence[Settlement]) -> None:
        with self._write() as db:
            events = [s.event.to_row() for s in settlements if s.event is not None]
            if events:
                db.executemany(_INSERT_EVENT, events)
            entries = [e.to_row() for s in settlements for e in s.entries]
            if entries:
                db.executemany(_INSERT_ENTRY, entries)
            outcomes = [s.outcome.to_row() for s in settlements if s.outcome is not None]
            if outcomes:
                db.executemany(_INSERT_OUTCOME, outcomes)
            if not self.counters:
                return
            for s in settlements:
                for counter, amount in s.amounts:
                    window, at = counter.window, s.at(counter)
                    if s.hold is not None:
                        db.execute("DELETE FROM holds WHERE key = ? AND id = ?", (counter.key, s.hold))
                    if amount:
                        db.execute(_ADD, (counter.key, window.bucket(at), amount, window.end(at)))

    def mark(self, key: str, until: float) -> bool:
        with self._write() as db:
            return db.execute("INSERT OR IGNORE INTO marks VALUES (?, ?)", (key, until)).rowcount == 1

    def purge(self, now: float) -> dict[str, int]:
        with self._write() as db:
            return {
                "counters": db.execute("DELETE FROM counters WHERE expires < ?", (now,)).rowcount,
                "holds": db.execute("DELETE FROM holds WHERE expires < ?", (now,)).rowcount,
                "slots": db.execute("DELETE FROM slots WHERE expires < ?", (now,)).rowcount,
                "marks": db.execute("DELETE FROM marks WHERE until < ?", (now,)).rowcount,
            }

    def secret(self, name: str) -> bytes:
        """A random key kept in the file: the same for every process that opens it."""
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (name, os.urandom(16).hex()))
            (value,) = db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
        return bytes.fromhex(str(value))

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """One write statement in its own transaction; the rows it changed (retention, forget)."""
        with self._write() as db:
            return int(db.execute(sql, params).rowcount)

    def close(self) -> None:
        """Close every thread's connection; one a thread is using now (a call's hold waiting
        for another process's lock, the writer's batch) is closed by that thread when it is
        done. A later use opens a new one."""
        if self._pid == os.getpid():
            with self._guard:
                for conn in self._opened:
                    if conn in self._in_use:
                        self._retired.add(conn)
                    else:
                        conn.close()
        self._local, self._opened = threading.local(), {}


def _figures(conn: sqlite3.Connection, counter: Counter, now: float) -> tuple[int, int]:
    buckets = counter.window.buckets(now)
    low, high = buckets[-1], buckets[0]
    (settled,) = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM counters WHERE key = ? AND "
                              "bucket BETWEEN ? AND ?", (counter.key, low, high)).fetchone()
    (held,) = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM holds WHERE key = ? AND "
                           "bucket BETWEEN ? AND ?", (counter.key, low, high)).fetchone()
    return int(settled), int(held)
