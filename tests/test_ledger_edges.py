"""The ledger at its edges: records it cannot write, a writer that dies, sinks that fail, calls in
flight through `init()` and `shutdown()`, windows across a time change, calls longer than a
rate's window, names that would collide in the store."""

from __future__ import annotations

import enum
import json
import sqlite3
import sys
import threading
import time
from calendar import timegm
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import cascadeflow
import openai
import pytest
from cascadeflow import windows
from cascadeflow.alert import Alert
from cascadeflow.config import LedgerSpec
from cascadeflow.ledger import Ledger, Quotas, Settlement, SQLiteStore, UsageEvent
from cascadeflow.ledger.store import Claim, Counter
from cascadeflow.ledger.writer import Writer
from cascadeflow.testing import Fault

KEY = "sk-test-not-a-real-key-0000"


class Tier(enum.Enum):
    GOLD = "gold"


def configure(tmp_path: Path, body: str = "") -> Path:
    config = tmp_path / "cascadeflow.toml"
    config.write_text(f'[ledger]\npath = "ledger.db"\nflush_interval_s = 0.02\n{body}')
    return config


def call(provider: Any, content: str = "count me") -> Any:
    client = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", max_tokens=40,
                                          messages=[{"role": "user", "content": content}])


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def returns(wait: Callable[[], Any], within_s: float = 20.0) -> bool:
    """Whether `wait()` returned (in a thread, so a hang fails the test instead of the run)."""
    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    thread.join(within_s)
    return not thread.is_alive()


def event(user: str, metadata: dict[str, Any] | None = None) -> UsageEvent:
    return UsageEvent(ts=time.time(), run_id=f"run-{user}", step=1, user=user, project=None,
                      agent=None, workflow=None, operation="chat", requested_model="gpt-4o-mini",
                      model="gpt-4o-mini", provider="openai", metadata=metadata)


# -- records the writer cannot write ----------------------------------------------------------

def test_metadata_keys_json_cannot_hold_are_kept_as_text(provider: Any, tmp_path: Path) -> None:
    config = configure(tmp_path, 'events_jsonl = "usage.jsonl"\n')
    cascadeflow.init(mode="observe", config=config)
    odd = {"tags": {("tenant", 1): "x", date(2026, 1, 2): "d", Tier.GOLD: "g", 7: "n"}}
    with cascadeflow.run(user="a", metadata=odd) as session:
        call(provider)
    with cascadeflow.run(user="b"):
        call(provider)
    assert returns(cascadeflow.flush)
    session.save(tmp_path / "run.json")  # what a session records can be saved too
    kept = rows(tmp_path / "ledger.db", "SELECT user, metadata FROM events ORDER BY id")
    assert [user for user, _ in kept] == ["a", "b"]
    assert json.loads(kept[0][1])["tags"] == {"('tenant', 1)": "x", "2026-01-02": "d",
                                              "Tier.GOLD": "g", "7": "n"}
    lines = (tmp_path / "usage.jsonl").read_text().splitlines()
    assert [json.loads(line)["user"] for line in lines] == ["a", "b"]
    assert cascadeflow.stats()["ledger_lost"] == 0


def test_a_record_that_cannot_be_written_is_lost_alone_and_alerted(tmp_path: Path) -> None:
    alerts: list[Alert] = []
    ledger = Ledger(LedgerSpec(path=str(tmp_path / "ledger.db"), flush_interval_s=0.05),
                    Quotas({}, {}), alerts.append)
    loop: dict[str, Any] = {}
    loop["self"] = loop  # JSON cannot encode it, whatever its keys
    for settlement in (event("a"), event("bad", loop), event("b")):
        ledger.settle(Settlement(settlement, settlement.ts))
    assert returns(ledger.flush)
    ledger.settle(Settlement(event("c"), time.time()))  # the writer goes on
    assert returns(ledger.flush)
    ledger.close()
    assert rows(tmp_path / "ledger.db", "SELECT user FROM events ORDER BY id") == \
        [("a",), ("b",), ("c",)]
    assert ledger.stats()["ledger_lost"] == 1 and ledger.stats()["ledger_written"] == 3
    assert [(a.kind, a.attributes["why"], a.attributes["count"]) for a in alerts] == \
        [("ledger_write_failed", "write_failed", 1)]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_flush_stops_waiting_for_a_writer_thread_that_died(tmp_path: Path) -> None:
    losses: list[tuple[str, int]] = []
    committed: list[Settlement] = []

    def commit(batch: Sequence[Settlement]) -> None:
        if any(s.event is not None and s.event.user == "exit" for s in batch):
            sys.exit()  # ends the thread: no `except Exception` catches it
        committed.extend(batch)

    writer = Writer(commit, lambda batch: None, lambda why, n: losses.append((why, n)),
                    interval_s=0.02)
    before = set(threading.enumerate())
    writer.put(Settlement(event("exit"), time.time()))
    assert returns(writer.flush)
    for thread in set(threading.enumerate()) - before:  # its exception reported in this test
        thread.join(10)
    assert losses == [("writer_died", 1)] and writer.lost == 1
    writer.put(Settlement(event("after"), time.time()))  # a new thread takes it
    assert returns(writer.flush)
    assert [s.event.user for s in committed if s.event is not None] == ["after"]
    assert writer.close()


# -- a Redis URL the config rejects -----------------------------------------------------------

@pytest.mark.parametrize("url", [
    "redis:/default:S3cr3tPassw0rd@redis.internal:6379/0",  # one slash missing
    "default:S3cr3tPassw0rd@redis.internal:6379",  # scheme left out
    "http://u:pa/ss:S3cr3tPassw0rd@redis.internal:6379/0",  # a `/` the URL pattern stops at
    "redis.internal:6379/0?password=S3cr3tPassw0rd",
    "S3cr3tPassw0rd",  # the password alone, in the URL's place
])
@pytest.mark.parametrize("where", ["env", "file"])
def test_a_rejected_redis_url_never_shows_its_password(tmp_path: Path, url: str, where: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if where == "env":
        monkeypatch.setenv("REDIS_URL", url)
        config = configure(tmp_path, 'url_env = "REDIS_URL"\n')
    else:
        config = configure(tmp_path, f'url = "{url}"\n')
    with pytest.raises(cascadeflow.ConfigError) as rejected:
        cascadeflow.init(mode="enforce", config=config)
    text = str(rejected.value)
    assert "S3cr3t" not in text and "S3cr3t" not in repr(rejected.value.value)
    assert rejected.value.setting == "ledger.url" and "expected a redis://" in text
    assert ("env REDIS_URL" if where == "env" else str(config)) in rejected.value.source


def test_url_and_url_env_together_never_show_the_password(tmp_path: Path) -> None:
    config = configure(tmp_path, 'url = "redis://u:pa/ss:S3cr3tPassw0rd@h:6379/0"\n'
                                 'url_env = "REDIS_URL"\n')
    with pytest.raises(cascadeflow.ConfigError, match="set url or url_env, not both") as rejected:
        cascadeflow.init(mode="enforce", config=config)
    assert "S3cr3t" not in str(rejected.value) and rejected.value.setting == "ledger"


# -- sinks ------------------------------------------------------------------------------------

def test_an_events_jsonl_that_cannot_be_written_keeps_sinks_and_budget_alerts(
        provider: Any, tmp_path: Path) -> None:
    config = configure(tmp_path, 'events_jsonl = "metering/usage.jsonl"\n'  # no such directory
                                 '[budgets.daily]\nscope = "user"\nwindow = "day"\n'
                                 'limit = 0.00001\nalert_at = 0.1\nmode = "observe"\n')
    received: list[dict[str, Any]] = []
    alerts: list[Alert] = []
    before = cascadeflow.stats()["usage_sink_errors"]  # (counted for the process)
    cascadeflow.init(mode="enforce", config=config, on_usage=[received.append],
                     alerts=[alerts.append])
    for _ in range(3):
        with cascadeflow.run(user="u1"):
            call(provider, "hello " * 50)
        cascadeflow.flush()
    assert len(received) == 3
    kinds = [a.kind for a in alerts]
    assert "budget_threshold" in kinds and "budget_window_exceeded" in kinds
    failed = [a for a in alerts if a.kind == "ledger_write_failed"]
    assert [a.attributes["why"] for a in failed] == ["events_jsonl"]  # once, not per batch
    assert cascadeflow.stats()["usage_sink_errors"] - before == 3
    (tmp_path / "metering").mkdir()  # fixed: the next batch is appended
    with cascadeflow.run(user="u2"):
        call(provider)
    cascadeflow.shutdown()
    lines = (tmp_path / "metering" / "usage.jsonl").read_text().splitlines()
    assert [json.loads(line)["user"] for line in lines] == ["u2"]
    assert len(received) == 4


# -- windows across a time change -------------------------------------------------------------

def utc(text: str) -> int:
    return timegm(time.strptime(text, "%Y-%m-%dT%H:%M"))


def test_a_day_that_repeats_its_first_hour_is_one_window(tmp_path: Path) -> None:
    # Atlantic/Azores falls back from 01:00 to 00:00 on 2026-10-25: 00:00-01:00 local comes
    # twice (00:00-01:00 UTC, then 01:00-02:00 UTC)
    day = windows.parse("day", "Atlantic/Azores")
    first_midnight = utc("2026-10-25T00:00")
    times = [utc(t) for t in ("2026-10-25T00:30", "2026-10-25T01:30", "2026-10-25T20:00")]
    assert {day.start(t) for t in times} == {first_midnight}
    assert {day.label(t) for t in times} == {"2026-10-25"}
    assert day.end(utc("2026-10-24T12:00")) == first_midnight
    assert day.end(times[1]) == utc("2026-10-26T01:00")  # the next midnight, at UTC-1
    month = windows.parse("month", "Atlantic/Azores")
    assert month.start(times[1]) == month.start(times[0]) == utc("2026-10-01T00:00")
    store = SQLiteStore(tmp_path / "ledger.db")
    daily = Counter("budget:daily:u1", day, 1_000_000_000)  # 1 USD a day
    store.commit([Settlement(None, times[0], None, [(daily, 1_000_000_000)])])  # spent it all
    assert store.figures([daily], times[1]) == [(1_000_000_000, 0)]  # still today's spend
    assert store.acquire("h", [Claim(daily, 500_000_000)], [], times[1]) is not None
    store.close()


# -- a call longer than a rate's buckets ------------------------------------------------------

def test_a_rate_adds_tokens_where_the_call_ended_a_budget_where_it_began(
        provider: Any, tmp_path: Path) -> None:
    # rolling:1m keeps 1-second buckets: a call of 1.5 s ends in a later bucket than it began
    config = configure(tmp_path, '[limits.per_user]\nscope = "user"\ntokens_per_minute = 100000\n'
                                 '[budgets.minute]\nscope = "user"\nwindow = "rolling:1m"\n'
                                 'limit = 5.0\n')
    cascadeflow.init(mode="enforce", config=config)
    provider.inject(Fault(latency_ms=1500, times=1))
    with cascadeflow.run(user="u1"):
        call(provider)
    cascadeflow.shutdown()
    ((started, latency_ms),) = rows(tmp_path / "ledger.db", "SELECT ts, latency_ms FROM events")
    buckets = dict(rows(tmp_path / "ledger.db", "SELECT key, bucket FROM counters"))
    # the spend: where the call was admitted (its hold taken), before the provider's 1.5 s
    assert int(started) <= buckets["budget:minute:u1"] <= started + latency_ms / 1000 - 1.5
    assert buckets["tokens:per_user:u1"] >= int(started + 1.5)  # the tokens: where it ended


# -- a call in flight through init() or shutdown() --------------------------------------------

def wait_for(ready: Callable[[], bool], within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not ready():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.01)


@pytest.mark.parametrize("interval", [0.02, 2.0])
@pytest.mark.parametrize("then", ["init", "shutdown"])
def test_a_call_in_flight_through_init_or_shutdown_keeps_its_event_and_releases_its_hold(
        provider: Any, tmp_path: Path, then: str, interval: float) -> None:
    # with a long flush interval the closed writer's thread lingered (a quarter interval) after
    # shutdown(): the in-flight call's event went to its queue, and nothing waited for it
    config = configure(tmp_path, '[budgets.daily]\nscope = "user"\nwindow = "day"\nlimit = 5.0\n')
    config.write_text(config.read_text().replace("flush_interval_s = 0.02",
                                                 f"flush_interval_s = {interval}"))
    cascadeflow.init(mode="enforce", config=config)

    def spend(user: str) -> None:
        with cascadeflow.run(user=user):
            call(provider)

    spend("before")
    provider.inject(Fault(hold=True, times=1))
    in_flight = threading.Thread(target=spend, args=("in-flight",))
    in_flight.start()
    wait_for(lambda: len(provider.requests) == 2)  # it holds its budget and waits for the answer
    if then == "init":
        cascadeflow.init(mode="enforce", config=config)  # a config reload
    else:
        cascadeflow.shutdown()
    provider.release()
    in_flight.join(20)
    assert not in_flight.is_alive()
    if then == "init":
        spend("after")
    assert returns(cascadeflow.flush)
    cascadeflow.shutdown()
    db = tmp_path / "ledger.db"
    users = ["before", "in-flight"] + (["after"] if then == "init" else [])
    assert [u for (u,) in rows(db, "SELECT user FROM events ORDER BY id")] == users
    assert rows(db, "SELECT key, amount FROM holds") == []  # no spend held for ever
    spent = dict(rows(db, "SELECT key, amount FROM counters"))
    assert spent["budget:daily:in-flight"] == spent["budget:daily:before"] > 0
    assert cascadeflow.stats()["ledger_lost"] == cascadeflow.stats()["ledger_dropped"] == 0


# -- names that would collide in the store ----------------------------------------------------

@pytest.mark.parametrize("table", [
    '[budgets."support:daily"]\nscope = "user"\nwindow = "day"\nlimit = 1.0\n',
    '[limits."per:user"]\nscope = "user"\nrequests_per_minute = 5\n',
], ids=["budget", "limit"])
def test_a_budget_or_limit_name_with_a_colon_is_refused(tmp_path: Path, table: str) -> None:
    # budget "support:daily" for user "bob" and budget "support" for user "daily:bob" would
    # share the counter budget:support:daily:bob
    config = configure(tmp_path, table)
    with pytest.raises(cascadeflow.ConfigError, match="cannot contain ':'") as refused:
        cascadeflow.init(mode="enforce", config=config)
    name = "support:daily" if "budgets" in table else "per:user"
    kind = "budgets" if "budgets" in table else "limits"
    assert refused.value.setting == f"{kind}.{name}" and refused.value.value == name
    assert refused.value.source == f"file {config} line 4"


# -- secrets ------------------------------------------------------------------------------------

def test_metadata_a_run_adds_after_it_opens_is_masked_in_every_record(provider: Any,
                                                                       tmp_path: Path) -> None:
    """`run(metadata=...)` is masked when the session opens; a key the code adds to
    `session.metadata` afterwards (a customer's token, an auth header) reached the ledger, the
    JSONL metering file and the `on_usage` sinks as it was."""
    token = "sk-proj-" + "a1B2c3D4e5" * 4
    seen: list[dict[str, Any]] = []
    cascadeflow.init(mode="observe", config=configure(tmp_path, 'events_jsonl = "usage.jsonl"\n'),
                     on_usage=[seen.append])
    with cascadeflow.run(user="u", metadata={"tenant": "acme"}) as session:
        session.metadata["customer_token"] = token
        session.metadata["request"] = {"headers": {"Authorization": f"Bearer {token}"},
                                       "note": f"called with {token}"}
        call(provider)
    assert returns(cascadeflow.flush)
    cascadeflow.shutdown()
    ((stored,),) = rows(tmp_path / "ledger.db", "SELECT metadata FROM events")
    written = (tmp_path / "usage.jsonl").read_text()
    for record in (stored, written, json.dumps(seen)):
        assert token not in record and "a1B2c3D4e5" not in record
        assert "acme" in record and "[SECRET]" in record
    assert seen[0]["metadata"]["tenant"] == "acme"


# -- a ledger another process holds ---------------------------------------------------------------

def test_shutdown_does_not_wait_out_the_busy_timeout_of_a_locked_ledger(
        provider: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While another process holds the ledger's write lock (a long purge, a backup, a sqlite3
    shell), shutdown() waits its 5 s for the writer, then closed the store under it: that waited
    on the writer's connection until the busy timeout ran out (30 s before the application could
    exit), and when the lock came free in between, closed the connection in the middle of the
    writer's transaction, which crashed the interpreter (SIGSEGV). The writer keeps its
    connection now, and commits if the process lives on."""
    from cascadeflow.ledger import sqlite as ledger_sqlite

    monkeypatch.setattr(ledger_sqlite, "BUSY_TIMEOUT_S", 120.0)  # far above shutdown's 5 s
    cascadeflow.init(mode="observe", config=configure(tmp_path))
    with cascadeflow.run(user="a"):
        call(provider)
    assert returns(cascadeflow.flush)
    holder = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with cascadeflow.run(user="b"):
            call(provider)
        assert returns(cascadeflow.shutdown, within_s=60.0)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


_CALLS_THROUGH_SHUTDOWN = '''
import sqlite3, sys, threading, time
import cascadeflow, openai
config, url, db = sys.argv[1:4]
cascadeflow.init(mode="enforce", config=config, instrument=["openai"])
client = openai.OpenAI(base_url=url, api_key="sk-test-not-a-real-key-0000", max_retries=0)
holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
holder.execute("BEGIN IMMEDIATE")  # another process's long write: the calls' holds wait for it
outcomes = []
def call():
    try:
        with cascadeflow.run(user="u"):
            client.chat.completions.create(model="gpt-4o-mini", max_tokens=40,
                                           messages=[{"role": "user", "content": "hi"}])
        outcomes.append("ok")
    except cascadeflow.PolicyStop as stop:
        outcomes.append(stop.reason)
threads = [threading.Thread(target=call) for _ in range(4)]
for thread in threads:
    thread.start()
time.sleep(1.0)  # (the test holds either way: a call not yet waiting just runs later)
threading.Timer(1.0, lambda: holder.execute("ROLLBACK")).start()  # comes free during shutdown
cascadeflow.shutdown()
for thread in threads:
    thread.join()
print(sorted(set(outcomes)), len(outcomes), flush=True)
'''


def test_shutdown_while_calls_wait_for_a_locked_ledger_does_not_crash(provider: Any,
                                                                       tmp_path: Path) -> None:
    """Calls under a daily budget wait for the ledger's write lock (another process holds it)
    when the application shuts down or reloads its config: closing the store closed their
    connections under them, and when the lock came free the interpreter crashed (SIGSEGV).
    A connection in use is now closed by its own thread when it is done."""
    import os
    import subprocess

    config = configure(tmp_path, '[budgets.daily]\nscope = "user"\nwindow = "day"\nlimit = 5.0\n')
    db = tmp_path / "ledger.db"
    SQLiteStore(db).close()
    script = tmp_path / "calls.py"
    script.write_text(_CALLS_THROUGH_SHUTDOWN)
    root = str(Path(__file__).resolve().parent.parent)  # this tree's cascadeflow, whatever the cwd
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True",
               PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    env.pop("CASCADEFLOW_CONFIG", None)
    env.pop("CASCADEFLOW_MODE", None)
    done = subprocess.run([sys.executable, "-X", "faulthandler", str(script), str(config),
                           provider.url, str(db)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("]")[-1].strip() == "4"  # every call came back, one way or another


def test_a_full_queue_alerts_once_until_writes_resume(tmp_path: Path) -> None:
    """While the ledger's file was locked (a long `purge`, a backup), every settlement the full
    queue turned away raised its own alert: thousands of `ledger_write_failed` alerts, which
    filled the alert queue (1000) and crowded out the others (a budget's threshold alert)."""
    alerts: list[Alert] = []
    ledger = Ledger(LedgerSpec(path=str(tmp_path / "ledger.db"), flush_interval_s=0.02,
                               queue_size=5), Quotas({}, {}), alerts.append)

    def burst(users: int) -> None:
        blocker = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            for i in range(users):
                ledger.settle(Settlement(event(f"u{i}"), time.time()))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert returns(ledger.flush)

    burst(200)
    dropped = ledger.stats()["ledger_dropped"]
    assert dropped >= 190
    full = [a for a in alerts if a.attributes.get("why") == "queue_full"]
    assert len(full) == 1 and "ledger_dropped" in full[0].message
    burst(200)  # writes resumed in between: the next overflow is news again
    assert len([a for a in alerts if a.attributes.get("why") == "queue_full"]) == 2
    ledger.close()
    assert rows(tmp_path / "ledger.db", "SELECT COUNT(*) FROM events") == \
        [(ledger.stats()["ledger_written"],)]
    assert ledger.stats()["ledger_written"] + ledger.stats()["ledger_dropped"] == 400


def test_events_jsonl_follows_a_rotation_and_a_forget_while_the_ledger_runs(tmp_path: Path) -> None:
    """The ledger kept the metering file open for good: once a consumer rotated it by renaming
    (as docs/ledger-cli.md leaves rotation to the consumer), or `cascadeflow ledger forget`
    rewrote it, every later event went on into the renamed or unlinked file, the first for
    ever, the second lost with it. It now opens the path again when the file there changed."""
    from cascadeflow.cli import main

    usage = tmp_path / "usage.jsonl"
    config = configure(tmp_path, f'events_jsonl = "{usage.name}"\n')
    ledger = Ledger(LedgerSpec(path=str(tmp_path / "ledger.db"), flush_interval_s=0.02,
                               events_jsonl=str(usage)), Quotas({}, {}), lambda alert: None)

    def write(*users: str) -> None:
        for user in users:
            ledger.settle(Settlement(event(user), time.time()))
        assert returns(ledger.flush)

    def users(path: Path) -> list[str]:
        return [json.loads(line)["user"] for line in path.read_text().splitlines()]

    write("a")
    usage.rename(tmp_path / "usage.jsonl.1")  # rotated by renaming
    write("bob", "b")
    assert users(tmp_path / "usage.jsonl.1") == ["a"] and users(usage) == ["bob", "b"]
    assert main(["ledger", "forget", "--config", str(config), "--user", "bob"]) == 0
    write("c")
    ledger.close()
    assert users(usage) == ["b", "c"]


def test_a_replaced_ledger_is_freed(tmp_path: Path) -> None:
    """Each Writer registered its `_reset` as an at-fork hook, which Python never unregisters:
    every ledger an `init()` replaced (a config reload, a test) stayed in memory with its
    quotas, sinks and store objects, for the life of the process."""
    import gc
    import os
    import weakref

    refs = []
    before = set(threading.enumerate())
    for i in range(3):
        ledger = Ledger(LedgerSpec(path=str(tmp_path / f"l{i}.db")), Quotas({}, {}), lambda a: None)
        ledger.settle(Settlement(event("a"), time.time()))
        ledger.close()
        refs.append(weakref.ref(ledger))
        del ledger
    for thread in set(threading.enumerate()) - before:  # the writers' threads, ending
        thread.join(10)
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    writer = Writer(lambda batch: None, lambda batch: None, lambda why, n: None)
    writer.put(Settlement(event("b"), time.time()))
    writer._closed = True  # as a child sees its parent's writer: reset there, not here
    pid = os.fork()
    if pid == 0:  # the hook ran in the child: a fresh queue, not closed
        os._exit(0 if not writer._closed and not writer._queue else 1)
    assert os.waitpid(pid, 0)[1] == 0


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files in /proc")
def test_a_thread_that_ended_leaves_no_ledger_connection_open(provider: Any, tmp_path: Path) -> None:
    """Each thread reads and holds shared budgets on a connection of its own; one whose thread
    ended was kept open until shutdown, so a server with a thread per request ran out of file
    descriptors (two per thread: the file and its WAL) and the ledger failed every call."""
    ledger = tmp_path / "ledger.db"
    cascadeflow.init(mode="enforce", instrument=["openai"], config=configure(
        tmp_path, '[budgets.daily]\nscope = "user"\nwindow = "day"\nlimit = 100.0\n'))

    def request() -> None:
        with cascadeflow.run(user="u-1"):
            call(provider)

    def held() -> int:
        """Open files of this process on the ledger."""
        return sum(1 for fd in Path("/proc/self/fd").iterdir() if fd.resolve() == ledger.resolve())

    counts = []
    for requests in (5, 20):
        for _ in range(requests):  # one thread per request, one after another
            thread = threading.Thread(target=request)
            thread.start()
            thread.join()
        assert cascadeflow.flush()
        counts.append(held())
    assert counts[1] <= counts[0], counts  # not one more per request served
    cascadeflow.shutdown()
