"""`cascadeflow ledger spend|steps|purge|forget` over a ledger written by real calls, and over
events committed with exact numbers."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import pytest
from cascadeflow.cli import main
from cascadeflow.ledger import Settlement, SQLiteStore, UsageEvent

from tests.conftest import chat_kwargs, forked_as_nobody

DAY = 86400.0


def _event(ts: float, user: str | None = "alice", **fields: Any) -> UsageEvent:
    values: dict[str, Any] = {"run_id": "r1", "step": 1, "project": "p1", "agent": "triage",
                              "workflow": None, "operation": "chat",
                              "requested_model": "gpt-4o-mini", "model": "gpt-4o-mini",
                              "provider": "openai", **fields}
    return UsageEvent(ts, user=user, **values)


def _ledger(path: Path, events: list[UsageEvent]) -> SQLiteStore:
    store = SQLiteStore(path)
    store.commit([Settlement(e, e.ts) for e in events])
    return store


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(["ledger", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_real_calls_spend_equals_what_the_sessions_billed(provider: Any, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cascadeflow.toml").write_text(
        'mode = "enforce"\n[ledger]\npath = "data/ledger.db"\nevents_jsonl = "usage.jsonl"\n'
        '[budgets.daily]\nscope = "user"\nwindow = "day"\nlimit = 5.0\n')
    cascadeflow.init()
    billed: dict[str, float] = {}
    for user in ("alice", "alice", "alice", "bob"):
        with cascadeflow.run(user=user, project="p1") as session:
            litellm.completion(**chat_kwargs(provider))
        billed[user] = billed.get(user, 0.0) + session.summary()["cost_total"]
    provider.inject(status=429, times=1)
    with pytest.raises(litellm.RateLimitError), cascadeflow.run(user="bob"):
        litellm.completion(**chat_kwargs(provider, num_retries=0))
    cascadeflow.shutdown()
    capsys.readouterr()  # litellm's feedback banner

    spend = _cli(capsys, "spend", "--by", "user", "--window", "day")
    by_user = {r["group"]: r for r in spend["rows"]}
    assert {u: r["calls"] for u, r in by_user.items()} == {"alice": 3, "bob": 2}
    for user, cost in billed.items():
        assert by_user[user]["cost"] == pytest.approx(cost, rel=1e-9, abs=1e-12)
    assert spend["total"]["cost"] == pytest.approx(sum(billed.values()))
    failed = _cli(capsys, "steps", "--error", "RateLimitError")
    day = datetime.fromtimestamp(failed["steps"][0]["ts"], UTC).strftime("%Y-%m-%d")
    assert {r["window"] for r in spend["rows"]} == {day}
    assert failed["matched"] == 1 and failed["steps"][0]["user"] == "bob"
    assert _cli(capsys, "steps", "--user", "alice", "--since", "1h")["matched"] == 3

    assert main(["ledger", "forget", "--user", "bob"]) == 0
    out = capsys.readouterr().out
    assert "events_jsonl" in out and "counters" in out
    assert _cli(capsys, "steps")["matched"] == 3
    lines = (tmp_path / "usage.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["user"] == "alice" for line in lines)


def test_spend_groups_tokens_and_windows_in_the_ledger_time_zone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cascadeflow.toml").write_text('[ledger]\npath = "l.db"\ntime_zone = "America/New_York"\n')
    late = datetime(2026, 11, 22, 3, 0, tzinfo=UTC).timestamp()  # 22:00 on the 21st in New York
    _ledger(tmp_path / "l.db", [
        _event(late, tokens_in=100, cached_tokens=40, tokens_out=10, cost=0.5),
        _event(late + 6 * 3600, tokens_in=50, tokens_out=5, cost=0.25),
        _event(late + 7 * 3600, user="bob", cost=None),
        _event(late + 8 * 3600, user=None, status="stopped", cost=0.0),
    ]).close()
    rows = _cli(capsys, "spend", "--by", "user", "--since", "2026-11-01")["rows"]
    assert [(r["window"], r["group"], r["calls"]) for r in rows] == [
        ("2026-11-21", "alice", 1), ("2026-11-22", None, 1), ("2026-11-22", "alice", 1),
        ("2026-11-22", "bob", 1)]
    first = rows[0]
    assert (first["tokens_in"], first["cached_tokens"], first["uncached_tokens"],
            first["tokens_out"], first["cost"]) == (100, 40, 60, 10, 0.5)
    assert rows[1]["stopped"] == 1 and rows[3]["unpriced"] == 1
    month = _cli(capsys, "spend", "--by", "project", "--window", "month")
    assert month["rows"][0]["window"] == "2026-11" and month["total"] == {
        "calls": 4, "cost": 0.75, "unpriced": 1}
    assert main(["ledger", "spend", "--by", "model"]) == 0
    assert "0.750000 USD (1 unpriced" in capsys.readouterr().out


def test_steps_filters_and_percentiles(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    events = [_event(now - 1000 + i, latency_ms=float(i), step=i) for i in range(1, 101)]
    events += [_event(now - 7200, model="gpt-4o", latency_ms=5000.0, error="RateLimitError",
                      status="error", agent="billing", content={"prompt": "SECRET-PROMPT-TEXT"},
                      metadata={"ticket": "T-9"})]
    _ledger(tmp_path / "l.db", events).close()
    base = ("steps", "--ledger", str(tmp_path / "l.db"))
    recent = _cli(capsys, *base, "--since", "1h", "--limit", "5")
    assert recent["matched"] == 100 and [s["step"] for s in recent["steps"]] == [100, 99, 98, 97, 96]
    # the report's percentiles (interpolated between ranks), so both show the same P95
    assert recent["latency_ms"] == pytest.approx({"p50": 50.5, "p95": 95.05, "p99": 99.01})
    slow = _cli(capsys, *base, "--min-latency-ms", "2000", "--model", "gpt-4o", "--agent", "billing",
                "--error", "RateLimitError", "--status", "error")
    assert slow["matched"] == 1 and slow["steps"][0]["latency_ms"] == 5000.0
    assert _cli(capsys, *base, "--agent", "nobody")["latency_ms"] == {"p50": None, "p95": None,
                                                                      "p99": None}
    assert main(["ledger", *base, "--limit", "200"]) == 0
    table = capsys.readouterr().out
    assert "101 of 101 matching steps" in table
    assert "P50 51, P95 96, P99 100" in table
    assert main(["ledger", *base, "--json"]) == 0
    assert "SECRET-PROMPT-TEXT" not in table + capsys.readouterr().out


def test_steps_names_the_models_that_contain_a_model_no_step_has(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--model` is exact: asked for `gpt-4o-mini` in a ledger of `openai/gpt-4o-mini`, the log
    says which models contain the name instead of a bare "0 of 0"."""
    now = time.time()
    _ledger(tmp_path / "l.db", [_event(now - 10, model="openai/gpt-4o-mini"),
                                _event(now - 5, model="azure/gpt-4o-mini-2024"),
                                _event(now - 1, model="openai/gpt-4o")]).close()
    base = ("steps", "--ledger", str(tmp_path / "l.db"))
    assert main(["ledger", *base, "--model", "gpt-4o-mini"]) == 0
    out = capsys.readouterr().out
    assert "0 of 0 matching steps" in out
    assert ("no step has model 'gpt-4o-mini' (an exact match); models in the ledger containing it: "
            "azure/gpt-4o-mini-2024, openai/gpt-4o-mini") in out
    assert _cli(capsys, *base, "--model", "claude")["models_containing"] == []
    # the model is there, another filter left nothing: no hint
    assert main(["ledger", *base, "--model", "openai/gpt-4o", "--agent", "nobody"]) == 0
    assert "no step has model" not in capsys.readouterr().out
    assert "models_containing" not in _cli(capsys, *base, "--model", "openai/gpt-4o")


def test_purge_applies_retention_per_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cascadeflow.toml").write_text(
        '[ledger]\npath = "l.db"\n[ledger.retention]\nusage_days = 90\ncontent_days = 7\n'
        'outcome_days = 30\n')
    now = time.time()
    secret = {"prompt": "hello"}
    store = _ledger(tmp_path / "l.db", [_event(now - 100 * DAY, content=secret),
                                        _event(now - 10 * DAY, content=secret),
                                        _event(now - DAY, content=secret)])
    for age in (40, 1):
        store.execute("INSERT INTO outcomes (run_id, ts, label, value, user) VALUES "
                      "('r1', ?, 'resolved', 1, 'alice')", (now - age * DAY,))
    for age in (100, 1):
        store.execute("INSERT INTO run_entries VALUES ('r1', 'r1', 1, ?, 'alice', '{}')",
                      (now - age * DAY,))
    store.execute("INSERT INTO counters VALUES ('budget:daily:alice', 1, 5, ?)", (now - 60,))
    store.execute("INSERT INTO counters VALUES ('budget:daily:alice', 2, 5, ?)", (now + 600,))
    store.execute("INSERT INTO marks VALUES ('m', ?)", (now - 60,))
    expected = {"events": 1, "run_entries": 1, "content": 1, "outcomes": 1, "counters": 1,
                "holds": 0, "slots": 0, "marks": 1}
    dry = _cli(capsys, "purge", "--dry-run")
    assert dry["removed"] == expected and dry["dry_run"]
    assert store.read("SELECT COUNT(*) FROM events") == [(3,)]
    assert _cli(capsys, "purge")["removed"] == expected
    left = store.read("SELECT content IS NULL FROM events ORDER BY ts")
    assert left == [(1,), (0,)]
    assert store.read("SELECT COUNT(*) FROM outcomes") == [(1,)]
    assert store.read("SELECT bucket FROM counters") == [(2,)]
    assert main(["ledger", "purge"]) == 0
    assert "events" in capsys.readouterr().out
    store.close()


def test_forget_removes_one_user_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cascadeflow.toml").write_text(
        '[ledger]\npath = "l.db"\nevents_jsonl = "usage.jsonl"\n'
        '[budgets.daily]\nscope = "user"\nwindow = "day"\nlimit = 1.0\n'
        '[budgets.team]\nscope = "project"\nwindow = "day"\nlimit = 9.0\n'
        '[limits.per_user]\nscope = "user"\nrequests_per_minute = 60\ntokens_per_minute = 1000\n'
        'usd_per_hour = 1.0\n')
    now = time.time()
    users = ("a_1", "a%1", "ab1", "a_1:9")  # LIKE wildcards, and a user id that extends another
    store = _ledger(tmp_path / "l.db", [_event(now - i, user=u) for i, u in enumerate(users)])
    for user in users:
        store.execute("INSERT INTO outcomes (run_id, ts, label, value, user) VALUES "
                      "('r', ?, 'ok', 1, ?)", (now, user))
        store.execute("INSERT INTO run_entries VALUES ('r', 'r', 1, ?, ?, '{}')", (now, user))
        for key in (f"budget:daily:{user}", f"tokens:per_user:{user}", f"usd:per_user:{user}"):
            store.execute("INSERT INTO counters VALUES (?, 1, 5, ?)", (key, now + 3600))
        store.execute("INSERT INTO holds VALUES ('h', ?, 1, 5, ?)", (f"budget:daily:{user}", now + 9))
        store.execute("INSERT INTO slots VALUES (?, ?, ?)", (f"requests:per_user:{user}", now, now + 60))
        store.execute("INSERT INTO marks VALUES (?, ?)", (f"budget_threshold:budget:daily:{user}:17",
                                                           now + 60))
    store.execute("INSERT INTO counters VALUES ('budget:team:a_1', 1, 5, ?)", (now + 3600,))  # a project
    (tmp_path / "usage.jsonl").write_text("".join(json.dumps({"user": u, "cost": 1}) + "\n"
                                                  for u in (*users, "a_1")) + "not json\n")
    expected = {"events": 1, "run_entries": 1, "outcomes": 1, "counters": 3, "holds": 1, "slots": 1,
                "marks": 1, "events_jsonl": 2}
    assert _cli(capsys, "forget", "--user", "a_1", "--dry-run")["removed"] == expected
    assert len((tmp_path / "usage.jsonl").read_text().splitlines()) == 6
    assert _cli(capsys, "forget", "--user", "a_1")["removed"] == expected
    for table in ("events", "run_entries", "outcomes"):
        assert sorted(u for (u,) in store.read(f"SELECT user FROM {table}")) == sorted(users[1:])
    keys = [k for table in ("counters", "holds", "slots", "marks")
            for (k,) in store.read(f"SELECT key FROM {table}")]
    keys.remove("budget:team:a_1")  # a project's budget, not the user's
    assert not any(k.endswith((":a_1", ":a_1:17")) for k in keys)
    assert len(keys) == 3 * 6
    lines = (tmp_path / "usage.jsonl").read_text().splitlines()
    assert lines[-1] == "not json" and [json.loads(x)["user"] for x in lines[:-1]] == list(users[1:])
    assert _cli(capsys, "forget", "--user", "a_1")["removed"] == dict.fromkeys(expected, 0)
    store.close()


@pytest.mark.parametrize(("argv", "named"), [
    (["steps"], "ledger.path=None (from no config file found)"),
    (["steps", "--ledger", "missing/l.db"], "--ledger='missing/l.db' (from the command line): no such"),
    # a folder said "no such file"
    (["steps", "--ledger", "."], "--ledger='.' (from the command line): a folder, not a ledger file"),
    (["purge", "--ledger", "."], "--ledger='.' (from the command line): a folder, not a ledger file"),
    (["spend", "--ledger", "l.db", "--since", "yesterday"], "--since='yesterday' (from the command line)"),
    (["forget", "--user", "u", "--ledger", "other.db"], "--ledger='other.db' (from the command line): "
                                                        "not a cascadeflow ledger"),
    (["purge", "--config", "nope.toml"], "--config='nope.toml' (from the command line): no such"),
    (["steps", "--ledger", "l.db", "--min-latency-ms", "nan"],
     "--min-latency-ms=nan (from the command line): expected a number of milliseconds"),
    (["steps", "--ledger", "l.db", "--min-latency-ms", "-5"],
     "--min-latency-ms=-5.0 (from the command line): expected a number of milliseconds"),
    (["steps", "--ledger", "l.db", "--min-latency-ms", "inf"], "--min-latency-ms=inf (from"),
    (["steps", "--ledger", "l.db", "--limit", "-3"],
     "--limit=-3 (from the command line): expected how many steps to list"),
    # past SQLite's integers: was an OverflowError traceback from the query
    (["steps", "--ledger", "l.db", "--limit", "99999999999999999999"],
     "--limit=99999999999999999999 (from the command line): expected how many steps to list"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          argv: list[str], named: str) -> None:
    SQLiteStore(tmp_path / "l.db").close()
    (tmp_path / "other.db").write_bytes(b"")
    assert main(["ledger", *argv]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "missing").exists() and (tmp_path / "other.db").read_bytes() == b""


def test_ledger_in_the_config_that_does_not_exist_is_not_created(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cascadeflow.toml").write_text('[ledger]\npath = "x/l.db"\n')
    assert main(["ledger", "spend"]) == 2
    assert f"ledger.path='{tmp_path / 'x' / 'l.db'}' (from file" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_unknown_group_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["ledger", "spend", "--by", "country"])
    assert stop.value.code == 2
    assert "argument --by: invalid choice: 'country'" in capsys.readouterr().err


def test_reads_never_wait_for_a_writer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = _ledger(tmp_path / "l.db", [_event(time.time(), latency_ms=10.0)])
    writer = sqlite3.connect(tmp_path / "l.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a process holding the write lock (committing a batch)
    other = sqlite3.connect(tmp_path / "l.db", timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")  # held for the whole read: a read that waited for it
    other.close()  # would wait out the busy timeout and then fail, however long that takes
    assert _cli(capsys, "steps", "--ledger", str(tmp_path / "l.db"))["matched"] == 1
    writer.execute("ROLLBACK")
    writer.close()
    store.close()



@pytest.fixture
def service(tmp_path: Path) -> Any:
    """A folder only its owner may write, on a path anyone may walk (pytest's own tmp_path is
    not, under root), removed afterwards."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="cf-ledger-"))
    base.chmod(0o755)
    folder = base / "service"
    folder.mkdir()
    folder.chmod(0o755)
    yield folder
    folder.chmod(0o755)
    shutil.rmtree(base)


def _as_reader_only(folder: Path, argv: list[str]) -> tuple[int, str, str]:
    """Run the command in a forked child that may read `folder` but not write it (as `nobody`
    when the tests run as root, whom file modes do not stop): an operator reading a service's
    ledger. Its exit status, stdout and stderr."""
    import io
    import sys

    def command() -> list[Any]:
        out, err = io.StringIO(), io.StringIO()
        sys.stdout, sys.stderr = out, err
        return [main(argv), out.getvalue(), err.getvalue()]

    folder.chmod(0o555)
    try:
        status, out, err = forked_as_nobody(folder, command)  # (no config file in `folder`)
    finally:
        folder.chmod(0o755)
    return status, out, err


def test_a_ledger_whose_folder_the_reader_cannot_write_is_read(service: Path) -> None:
    """Once the last writer closed it, a WAL ledger has no -shm index beside it, and SQLite wants
    to create one to read it: a user who may read the file but not its folder was told the file
    was 'not a cascadeflow ledger (attempt to write a readonly database)', exit 2."""
    _ledger(service / "l.db", [_event(time.time(), cost=0.25)]).close()
    assert sorted(p.name for p in service.iterdir()) == ["l.db"]  # checkpointed: no -wal, -shm
    (service / "l.db").chmod(0o644)
    status, out, err = _as_reader_only(service, ["ledger", "spend", "--ledger",
                                                 str(service / "l.db"), "--json"])
    assert (status, err) == (0, ""), err
    assert json.loads(out)["total"] == {"calls": 1, "cost": 0.25, "unpriced": 0}
    assert sorted(p.name for p in service.iterdir()) == ["l.db"]  # nothing written beside it


def test_a_log_the_reader_cannot_index_says_why(tmp_path: Path, service: Path) -> None:
    """A -wal file left without its -shm (a writer killed, the index removed): nothing can read
    the log without writing the folder, and the error says so instead of 'not a ledger'."""
    import shutil

    store = _ledger(tmp_path / "l.db", [_event(time.time(), cost=0.25)])
    for name in ("l.db", "l.db-wal"):  # as a killed writer leaves them, less the index
        shutil.copy(tmp_path / name, service / name)
        (service / name).chmod(0o644)
    store.close()
    status, _out, err = _as_reader_only(service, ["ledger", "spend", "--ledger",
                                                  str(service / "l.db")])
    assert status == 2, err
    assert "l.db-shm" in err and "may not write" in err and "not a cascadeflow ledger" not in err


def test_a_ledger_the_reader_may_not_read_says_so(service: Path) -> None:
    _ledger(service / "l.db", [_event(time.time(), cost=0.25)]).close()
    (service / "l.db").chmod(0o600)
    status, _out, err = _as_reader_only(service, ["ledger", "steps", "--ledger",
                                                  str(service / "l.db")])
    assert status == 2, err
    assert "permission denied" in err and "not a cascadeflow ledger" not in err


def test_forget_streams_a_large_metering_file(tmp_path: Path) -> None:
    """A metering file nobody rotated grows without end; `forget` held every line it kept in
    memory (a 10 GB file, 10 GB of memory) before writing them back."""
    import tracemalloc

    from cascadeflow.ledger import jsonl

    line = json.dumps({"user": "bob", "cost": 1, "pad": "x" * 200}) + "\n"
    path = tmp_path / "usage.jsonl"
    with path.open("w") as out:
        for i in range(100_000):  # about 22 MB
            out.write(json.dumps({"user": "u-42", "cost": 1}) + "\n" if i % 1000 == 0 else line)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        assert jsonl.forget(path, "u-42") == 100
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size / 10
    assert path.stat().st_size == size - 100 * len(json.dumps({"user": "u-42", "cost": 1}) + "\n")
    assert jsonl.forget(path, "u-42") == 0


def test_steps_takes_percentiles_without_holding_every_latency(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`steps` read the latency of every matching step into one list to sort it: a ledger of
    tens of millions of steps (400 days of retention) needed gigabytes to list a few steps
    (3 million: 340 MB). Its percentiles now come from SQLite's ordered pass, the same values."""
    import random
    import tracemalloc

    from cascadeflow.quantiles import percentile

    SQLiteStore(tmp_path / "l.db").close()
    rnd = random.Random(7)
    latencies = [rnd.random() * 3000 for _ in range(200_000)]
    with sqlite3.connect(tmp_path / "l.db") as conn:
        conn.executemany("INSERT INTO events (ts, run_id, step, operation, latency_ms, status) "
                         "VALUES (?, 'r', 1, 'chat', ?, 'ok')",
                         ((1_795_000_000.0 + i, v) for i, v in enumerate(latencies)))
        conn.execute("INSERT INTO events (ts, run_id, step, operation, status) "
                     "VALUES (1, 'r', 1, 'chat', 'stopped')")  # no latency: not a sample
    tracemalloc.start()
    try:
        report = _cli(capsys, "steps", "--ledger", str(tmp_path / "l.db"), "--limit", "1")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000  # the latencies alone are 200,000 floats: 6.4 MB in a list
    assert (report["matched"], report["latency_samples"]) == (200_001, 200_000)
    assert report["latency_ms"] == {f"p{p}": percentile(latencies, p) for p in (50, 95, 99)}


@pytest.mark.skipif(os.geteuid() != 0, reason="an operator's forget as root over a service's files")
def test_forget_as_root_leaves_the_metering_file_to_its_service(service: Path,
                                                                capsys: pytest.CaptureFixture[str]
                                                                ) -> None:
    """`forget` rewrites the metering file and renames the copy over it: run by root (the
    ledger belongs to the service's user), the copy was root's, and the service, appending to
    the file again after its restart, was refused (PermissionError: every usage event after it
    lost to events_jsonl)."""
    usage = service / "usage.jsonl"
    usage.write_text("".join(json.dumps({"user": u, "cost": 0.1}) + "\n" for u in ("alice", "bob")))
    usage.chmod(0o644)
    (service / "cascadeflow.toml").write_text(
        f'[ledger]\npath = "l.db"\nevents_jsonl = "{usage.name}"\n')
    _ledger(service / "l.db", [_event(time.time()), _event(time.time(), user="bob")]).close()
    for path in (service, usage, service / "l.db"):
        os.chown(path, 65534, 65534)
    assert main(["ledger", "forget", "--config", str(service / "cascadeflow.toml"), "--user",
                 "bob", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"]["events_jsonl"] == 1
    assert (usage.stat().st_uid, usage.stat().st_gid) == (65534, 65534)

    def service_appends() -> str:
        with usage.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"user": "carol"}) + "\n")
        return usage.read_text()

    lines = forked_as_nobody(service, service_appends).splitlines()
    assert [json.loads(line)["user"] for line in lines] == ["alice", "carol"]


def test_forget_keeps_a_metering_line_that_is_not_utf8(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A line another program wrote in Latin-1 made `forget` crash with a UnicodeDecodeError
    traceback after it had deleted the user's rows in the ledger, leaving their lines in the
    file. Such a line is no JSON this can know a user in: kept, byte for byte."""
    usage = tmp_path / "usage.jsonl"
    usage.write_bytes(b'{"user": "bob"}\nlegacy note caf\xe9\n{"user": "alice"}\n')
    (tmp_path / "cascadeflow.toml").write_text('[ledger]\npath = "l.db"\nevents_jsonl = "usage.jsonl"\n')
    _ledger(tmp_path / "l.db", [_event(time.time(), user="bob")]).close()
    argv = ["ledger", "forget", "--config", str(tmp_path / "cascadeflow.toml"), "--user", "bob"]
    assert main([*argv, "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"]["events_jsonl"] == 1
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == {
        "events": 1, "run_entries": 0, "outcomes": 0, "counters": 0, "holds": 0, "slots": 0,
        "marks": 0, "events_jsonl": 1}
    assert usage.read_bytes() == b'legacy note caf\xe9\n{"user": "alice"}\n'


def test_forget_rewrites_the_metering_file_a_link_points_to(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """events_jsonl as a symbolic link (logs/usage.jsonl -> a data volume): the copy was renamed
    over the link, so the file on the volume kept every line of the user `forget` reported
    removed, and the link was gone."""
    volume = tmp_path / "volume"
    volume.mkdir()
    target = volume / "usage.jsonl"
    target.write_text("".join(json.dumps({"user": u}) + "\n" for u in ("bob", "alice")))
    (tmp_path / "usage.jsonl").symlink_to(target)
    (tmp_path / "cascadeflow.toml").write_text('[ledger]\npath = "l.db"\nevents_jsonl = "usage.jsonl"\n')
    _ledger(tmp_path / "l.db", [_event(time.time(), user="bob")]).close()
    assert main(["ledger", "forget", "--config", str(tmp_path / "cascadeflow.toml"), "--user",
                 "bob", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"]["events_jsonl"] == 1
    assert (tmp_path / "usage.jsonl").is_symlink()
    assert [json.loads(line)["user"] for line in target.read_text().splitlines()] == ["alice"]
    assert sorted(p.name for p in volume.iterdir()) == ["usage.jsonl"]


def test_an_event_time_out_of_the_calendar_is_named_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A row whose ts is in milliseconds (an import from another tool, a damaged file) made
    `spend` crash with OverflowError in the window arithmetic and `steps` with ValueError
    ('year 58864 is out of range') formatting the time."""
    now = time.time()
    _ledger(tmp_path / "l.db", [_event(now, cost=0.5), _event(now * 1000, user="bob")]).close()
    argv = ["ledger", "spend", "--ledger", str(tmp_path / "l.db")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"ledger {tmp_path / 'l.db'}: an event's ts {now * 1000!r}" in err
    assert "between the years" in err
    assert main(["ledger", "steps", "--ledger", str(tmp_path / "l.db")]) == 0
    table = capsys.readouterr().out
    assert f"{now * 1000!r}" in table and "alice" in table
    assert _cli(capsys, "steps", "--ledger", str(tmp_path / "l.db"))["matched"] == 2
