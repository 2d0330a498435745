"""The ledger's cost: what it adds to a call on the caller's thread, and how many usage events
per second a store takes.

Three configurations of the same enforced litellm call (`mock_response`, no I/O), each paired
against the original function in the same rounds: no ledger, a ledger of usage events only
(written by the worker and the ledger's writer, never the caller), and a ledger with a daily
budget (a read of the shared figures and one atomic hold per call, on the caller's thread).
The difference between the rows is the ledger's share. Then settled calls per second a store
commits in batches: SQLite (events, spend, holds) and a real Redis on loopback (spend and
holds; events stay in SQLite).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
from cascadeflow.ledger import SQLiteStore, UsageEvent
from cascadeflow.ledger.redis import open_redis
from cascadeflow.ledger.store import Counter, Settlement, Store
from cascadeflow.testing.redis import RedisUnavailable, start_redis
from cascadeflow.windows import parse

from benchmarks.common import ENFORCE_RUN, MESSAGES
from benchmarks.harness import Call, Variant, paired

Row = dict[str, Any]
LEDGER = '\n[ledger]\npath = "ledger.db"\n'
BUDGET = '\n[budgets.daily]\nscope = "user"\nwindow = "day"\nlimit = 1000.0\n'


def _config(base: Path, extra: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="cascadeflow-bench-ledger-"))
    path = folder / "cascadeflow.toml"
    path.write_text(base.read_text() + extra)
    return path


def _variant(config: Path) -> Variant:
    @contextlib.contextmanager
    def enter() -> Iterator[tuple[Call, Call]]:
        cascadeflow.init(mode="enforce", config=config, instrument=["litellm"])
        patched = litellm.completion
        original = patched.__cascadeflow_original__  # type: ignore[attr-defined]

        def call(fn: Callable[..., Any]) -> Any:
            return fn(model="gpt-4o-mini", messages=MESSAGES, mock_response="ok", max_tokens=50)

        with cascadeflow.run(user="u-bench", **ENFORCE_RUN):
            yield (lambda: call(original)), (lambda: call(patched))
        cascadeflow.init(mode="off")

    return enter


def caller_cost(quick: bool, config: Path, worker: Callable[[], Any],
                settle: Callable[[], Any]) -> list[Row]:
    rounds, pairs = (2, 40) if quick else (8, 200)
    variants = {"enforce, no ledger": _variant(config),
                "enforce + ledger (usage events)": _variant(_config(config, LEDGER)),
                "enforce + ledger + daily budget": _variant(_config(config, LEDGER + BUDGET))}
    results = paired(variants, rounds, pairs, worker, settle)
    return [{"benchmark": "ledger on the caller's thread (litellm mock call)", "variant": name,
             **added.row()} for name, added in results.items()]


def _events(n: int, start: int, users: int) -> list[Settlement]:
    """`n` settled calls, each adding to its user's daily budget and releasing its hold."""
    day, now = parse("day"), time.time()
    out = []
    for i in range(start, start + n):
        user = f"u-{i % users}"
        event = UsageEvent(ts=now, run_id="r", step=i, user=user, project="p", agent="a",
                           workflow=None, operation="chat", requested_model="gpt-4o-mini",
                           model="gpt-4o-mini", provider="openai", tokens_in=100, tokens_out=20,
                           cost=0.0001, latency_ms=100.0)
        counter = Counter(f"budget:daily:{user}", day, 10**15)
        out.append(Settlement(event, now, f"hold-{i}", [(counter, 100_000)]))
    return out


def sustained(store: Store, name: str, quick: bool, users: int = 1, batch: int = 500) -> Row:
    """Settled calls per second committed in batches: their events (SQLite), their spend added
    to the users' counters and their holds released."""
    batches = 4 if quick else 40
    work = [_events(batch, i * batch, users) for i in range(batches)]
    started = time.perf_counter()
    for settlements in work:
        store.commit(settlements)
    seconds = time.perf_counter() - started
    return {"benchmark": "ledger sustained writes (batches of 500)", "variant": name,
            "events_per_s": round(batches * batch / seconds)}


def redis_rows(quick: bool, folder: Path) -> list[Row]:
    """The same batches into a real redis-server on loopback: counters and holds only (events
    stay in each machine's SQLite file), for one user and for 20,000."""
    try:
        server, url = start_redis(folder)
    except RedisUnavailable as exc:
        return [{"benchmark": "ledger sustained writes (batches of 500)",
                 "variant": f"Redis skipped: {exc}"}]
    try:
        rows = []
        for users in (1, 20_000):
            store = open_redis(url, "benchmark")
            try:
                rows.append(sustained(store, f"Redis on loopback (spend and holds; {users:,} "
                                             f"user{'s' if users > 1 else ''})", quick, users))
            finally:
                store.close()
        return rows
    finally:
        server.kill()
        server.wait()


def run(quick: bool, config: Path, worker: Callable[[], Any], settle: Callable[[], Any]
        ) -> list[Row]:
    rows = caller_cost(quick, config, worker, settle)
    folder = Path(tempfile.mkdtemp(prefix="cascadeflow-bench-ledger-"))
    store = SQLiteStore(folder / "ledger.db")
    try:
        rows.append(sustained(store, "SQLite (WAL, synchronous=NORMAL)", quick))
    finally:
        store.close()
    return rows + redis_rows(quick, folder)
