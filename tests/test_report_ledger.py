"""The review of the ledger: its numbers against the ledger's own data and against saved sessions
of the same runs, outcomes kept in the ledger, breaker transitions, calls outside any run, a
ledger file of the first schema, the command line."""

from __future__ import annotations

import io
import json
import re
import sqlite3
import statistics
import tomllib
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cascadeflow
import openai
import pytest
from cascadeflow import report
from cascadeflow.cascade import BreakerSettings, Cascade, RetryPolicy, Tier, breakers, stop_after_attempt
from cascadeflow.cli import main
from cascadeflow.config import FileConfig
from cascadeflow.demo import run as demo
from cascadeflow.demo.triage import THREAD
from cascadeflow.ledger import SQLiteStore, UsageEvent
from cascadeflow.ledger.events import COLUMNS
from cascadeflow.ledger.query import ReadOnly
from cascadeflow.ledger.runs import RunQuery, runs
from cascadeflow.ledger.sqlite import ADDED
from cascadeflow.ledger.store import Settlement
from cascadeflow.report.fmt import money
from cascadeflow.report.recommend import propose
from cascadeflow.report.svg import depths
from cascadeflow.testing.runs import synthetic_runs, write_synthetic_ledger

from tests.conftest import Clock

KEY = "sk-test-not-a-real-key-0000"
LEDGER = '\n[ledger]\npath = "ledger.db"\nflush_interval_s = 0.02\n'


def configure(folder: Path, body: str = "") -> Path:
    config = folder / "cascadeflow.toml"
    config.write_text(body + LEDGER)
    return config


def chat(provider: Any, content: str = "Where is my order?") -> Any:
    client = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", max_tokens=40,
                                          messages=[{"role": "user", "content": content}])


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The demo's two runs, saved and kept in a ledger (its own config plus `[ledger]`)."""
    folder = tmp_path_factory.mktemp("demo-ledger")
    config = configure(folder, demo.CONFIG.read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo, "CONFIG", config)
        demo.main(out=io.StringIO(), out_dir=folder)
    yield folder
    cascadeflow.shutdown()


def _groups(rows: list[Any]) -> list[tuple[Any, ...]]:
    return [(g.name, pytest.approx(g.cost), g.calls, g.tokens, sorted(g.runs)) for g in rows]


def _same_review(saved: report.Review, led: report.Review) -> None:
    """Every number the report shows, but when runs started (a ledger run starts at its first
    step, a saved one when `run()` was entered)."""
    a, b = asdict(saved.totals), asdict(led.totals)
    for t in (a, b):
        del t["first"], t["last"]
    assert b == {k: pytest.approx(v) for k, v in a.items()}
    for by in ("by_user", "by_agent", "by_model"):
        assert _groups(getattr(led, by)) == _groups(getattr(saved, by))
    assert [asdict(r) for r in led.latency_agent + led.latency_model] == \
        [asdict(r) for r in saved.latency_agent + saved.latency_model]
    assert [(d.action, d.reason, d.applied, d.would_have, d.runs, d.by, d.example) for d in led.decisions] \
        == [(d.action, d.reason, d.applied, d.would_have, d.runs, d.by, d.example) for d in saved.decisions]
    assert [asdict(f) for f in led.findings] == [asdict(f) for f in saved.findings]
    assert [asdict(n) for n in led.near_misses] == [asdict(n) for n in saved.near_misses]
    w, v = led.would_have, saved.would_have
    assert (w.observe_runs, w.stops, w.tools_denied, w.guardrails) == \
        (v.observe_runs, v.stops, v.tools_denied, v.guardrails)
    assert [asdict(s) for s in w.switches.values()] == [asdict(s) for s in v.switches.values()]
    assert (w.saved_low, w.saved_high) == (pytest.approx(v.saved_low), pytest.approx(v.saved_high))
    assert [(r.run_id, m.step, m.reason) for r, m in w.failed] == [(r.run_id, m.step, m.reason)
                                                                  for r, m in v.failed]
    for mine, theirs in ((led.outcomes, saved.outcomes), (led.modes, saved.modes)):
        assert [(o.agent, o.mode, o.sessions, o.with_outcome, o.resolved, o.failed, o.other, o.value,
                 pytest.approx(o.cost)) for o in mine] == \
            [(o.agent, o.mode, o.sessions, o.with_outcome, o.resolved, o.failed, o.other, o.value,
              o.cost) for o in theirs]
    assert led.reliability.by_reason == saved.reliability.by_reason
    assert led.reliability.transitions == saved.reliability.transitions
    assert [r.run_id for r in led.detail] == [r.run_id for r in saved.detail]


def test_the_demo_reviews_the_same_from_its_ledger(demo_dir: Path, capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    saved_runs = report.load_runs(report.saved_sessions([demo_dir / "observe.jsonl",
                                                         demo_dir / "enforce.jsonl"]))
    ledger = report.LedgerRuns(demo_dir / "ledger.db")
    led_runs = report.load_runs([ledger])
    _same_review(report.build(saved_runs, []), report.build(led_runs, []))
    for saved, led in zip(saved_runs, led_runs, strict=True):  # steps, nesting, decisions per step
        assert (led.run_id, led.mode, led.budget, led.outcome, led.stopped, led.degraded) == \
            (saved.run_id, saved.mode, saved.budget, saved.outcome, saved.stopped, saved.degraded)
        assert [(s.number, s.session, s.operation, s.model, s.tool, s.cost, s.status, s.error,
                 [(m.action, m.reason, m.applied, m.target_model, m.rule, m.kind) for m in s.marks])
                for s in led.steps] == \
            [(s.number, s.session, s.operation, s.model, s.tool, s.cost, s.status, s.error,
              [(m.action, m.reason, m.applied, m.target_model, m.rule, m.kind) for m in s.marks])
             for s in saved.steps]
        assert depths(led) == depths(saved) and len(depths(led)) == 5  # the run and 4 agents
        assert {k: (i.agent, i.parent, i.outcome) for k, i in led.sessions.items()} == \
            {k: (i.agent, i.parent, i.outcome) for k, i in saved.sessions.items()}
    # against the ledger's own figures: spend, the request log and its latencies, the outcomes
    review = report.review([ledger])
    spend = cli_json(capsys, "ledger", "spend", "--ledger", str(demo_dir / "ledger.db"), "--json")
    assert review.totals.cost == pytest.approx(spend["total"]["cost"])
    log = cli_json(capsys, "ledger", "steps", "--ledger", str(demo_dir / "ledger.db"), "--json",
                   "--limit", "1000")
    assert review.totals.steps == log["matched"] == len(log["steps"])
    for row in review.latency_model:
        values = [s["latency_ms"] for s in log["steps"] if row.name in (s["model"], f"tool {s['tool']}")
                  and s["latency_ms"] is not None]  # a stopped step has none
        assert row.count == len(values) and row.max == max(values)
        if len(values) > 1:
            assert row.p50 == pytest.approx(statistics.quantiles(values, n=100, method="inclusive")[49])
    reader = ReadOnly(demo_dir / "ledger.db")
    kept = [o for run in runs(reader, RunQuery()) for o in run.outcomes]
    reader.close()
    resolved = sum(o.resolved for o in review.modes)
    assert resolved == sum(o["label"] == "resolved" and o["root_run_id"] == o["run_id"] for o in kept) == 2
    assert {(o["agent"], o["label"]) for o in kept if o["root_run_id"] != o["run_id"]} == \
        {("drafter", "resolved"), ("drafter", "resolved_without_context")}


def test_the_ledger_report_is_self_contained_and_keeps_no_prompt(demo_dir: Path) -> None:
    review = report.review([report.LedgerRuns(demo_dir / "ledger.db")])
    page = report.render(review)
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()
    assert not re.search(r"""(src|href)=(?!["']?#)""", page)
    for text in ("Dana", "4242", "dana.whitfield@example.com", "Ignore all previous", "demo-key",
                 "127.0.0.1"):
        assert text not in page
    assert THREAD.splitlines()[1] not in page
    assert money(review.totals.cost) in page and page.count("<div class=run>") == 2
    with sqlite3.connect(demo_dir / "ledger.db") as db:  # the file itself holds no prompt either
        dump = "\n".join(db.iterdump())
    assert "Dana" not in dump and "demo-key" not in dump and "pii_redaction" in dump


def test_outcomes_reach_the_ledger_after_flush(provider: Any, tmp_path: Path) -> None:
    cascadeflow.init(mode="enforce", config=configure(tmp_path))

    @cascadeflow.agent(name="lookup")
    def lookup() -> None:
        chat(provider)

    @cascadeflow.agent(name="solver")
    def solve() -> None:  # no step of its own: its nested agent makes the call
        lookup()
        cascadeflow.current_session().outcome("failed", value=0)

    with cascadeflow.run(agent="support", user="u-1", project="help") as session:
        solve()
    session.outcome("escalated")
    session.outcome("resolved", value=12.5)  # after the block too; the latest counts
    assert cascadeflow.flush()
    reader = ReadOnly(tmp_path / "ledger.db")
    [run] = list(runs(reader, RunQuery()))
    reader.close()
    [(inner, solver)] = [(e["run_id"], e["parent_run_id"]) for e in run.events]
    assert [(o["run_id"], o["label"], o["value"], o["root_run_id"], o["parent_run_id"], o["user"],
             o["agent"]) for o in run.outcomes] == [
        (solver, "failed", 0, session.run_id, session.run_id, "u-1", "solver"),
        (session.run_id, "escalated", None, session.run_id, None, "u-1", "support"),
        (session.run_id, "resolved", 12.5, session.run_id, None, "u-1", "support")]
    [led] = report.load_runs([report.LedgerRuns(tmp_path / "ledger.db")])
    assert depths(led)[inner] == 2 and led.sessions[solver].agent == "solver"
    saved = report.read_run(report.RunRecord(session.summary(), session.trace(), "saved"))
    assert depths(led) == depths(saved)
    only_outcome = report.RunFilter(agent="solver")  # the agent made no call of its own
    assert [r.run_id for r in report.load_runs([report.LedgerRuns(tmp_path / "ledger.db", only_outcome)],
                                               only_outcome)] == [session.run_id]
    rows = {o.agent: o for o in report.build([led], []).outcomes}
    assert rows["support"].completion_rate == 1.0 and rows["support"].value == 12.5
    assert rows["solver"].failed == 1 and rows["solver"].completion_rate == 0.0


def test_captured_content_shows_only_when_capture_was_on(provider: Any, tmp_path: Path) -> None:
    config = configure(tmp_path)
    cascadeflow.init(mode="observe", config=config, capture_content=True)
    with cascadeflow.run():
        chat(provider, "a prompt worth reading")
    cascadeflow.init(mode="observe", config=config, capture_content=False)
    with cascadeflow.run():
        chat(provider, "a prompt kept private")
    cascadeflow.shutdown()
    page = report.render(report.review([report.LedgerRuns(tmp_path / "ledger.db")]))
    assert "a prompt worth reading" in page
    assert "a prompt kept private" not in page and KEY not in page


def test_a_synthetic_ledger_reviews_like_its_records(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    class Records:
        name = "records"

        def runs(self) -> Iterator[report.RunRecord]:
            return synthetic_runs(300, seed=3)

    db = write_synthetic_ledger(tmp_path / "l.db", 300, seed=3)
    records = list(synthetic_runs(300, seed=3))
    saved, led = report.review([Records()], detail=10), report.review([report.LedgerRuns(db)], detail=10)
    _same_review(saved, led)
    assert led.reliability.transitions and led.reliability.buckets == saved.reliability.buckets
    keep = report.RunFilter(user="u-7", since=records[150].summary["started"], agent="reviewer",
                            project="support")
    assert report.review([report.LedgerRuns(db, keep)], keep).totals.runs == \
        report.review([Records()], keep).totals.runs == sum(
            1 for r in records[150:] if r.summary["user"] == "u-7" and r.summary["project"] == "support")
    since = str(records[150].summary["started"])  # an epoch, as `ledger steps --since` takes
    assert main(["report", f"--ledger={db}", "--user", "u-7", "--since", since, "-o",
                 str(tmp_path / "r.html")]) == 0
    kept = sum(1 for r in records[150:] if r.summary["user"] == "u-7")
    assert capsys.readouterr().out.startswith(f"{kept} runs reviewed")
    assert main(["recommend", f"--ledger={db}"]) == 0
    config = FileConfig.model_validate(tomllib.loads(capsys.readouterr().out))
    [run] = [p for p in propose(report.load_runs([Records()])) if p.section == "run"]
    assert config.run.budget == run.values["budget"] and config.run.max_steps == run.values["max_steps"]


def test_breaker_transitions_are_traced_and_reported(provider: Any, tmp_path: Path) -> None:
    breakers.reset()
    cascadeflow.init(mode="observe", config=configure(tmp_path))
    provider.inject(model="gpt-4o", status=503, times=2)
    clock = Clock()
    cascade = Cascade([Tier(f"openai/{m}", params={"api_base": provider.url, "api_key": KEY})
                       for m in ("gpt-4o", "gpt-4o-mini")],
                      retry=RetryPolicy(stop=stop_after_attempt(1)), clock=clock,
                      breaker=BreakerSettings(failure_threshold=2, recovery_timeout=30))
    with cascadeflow.run() as session:
        for _ in range(3):
            cascade.complete(messages=[{"role": "user", "content": "Classify: charged twice"}])
        clock.now = 31.0  # half-open: the probe succeeds and closes it
        cascade.complete(messages=[{"role": "user", "content": "Classify: charged twice"}])
    moves = [e for e in session.trace() if e["action"] == "breaker"]
    assert [(e["reason"], e["model"], e["operation"]) for e in moves] == [
        ("closed_to_open", "openai/gpt-4o", "cascade"), ("open_to_half_open", "openai/gpt-4o", "cascade"),
        ("half_open_to_closed", "openai/gpt-4o", "cascade")]
    assert not any(provider.url in json.dumps(e) for e in moves)  # never the endpoint
    saved = report.review(report.saved_sessions([session.save(tmp_path / "s.jsonl")]))
    assert [(m, old, new) for _t, m, old, new in saved.reliability.transitions] == [
        ("openai/gpt-4o", "closed", "open"), ("openai/gpt-4o", "open", "half_open"),
        ("openai/gpt-4o", "half_open", "closed")]
    assert sum(o for *_rest, o in saved.reliability.buckets) == 1  # one opening over time
    cascadeflow.flush()
    led = report.review([report.LedgerRuns(tmp_path / "ledger.db")])
    assert led.reliability.transitions == saved.reliability.transitions
    assert "half_open" in report.render(led)


def test_calls_outside_any_run_are_counted_not_reviewed(provider: Any, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    cascadeflow.init(mode="observe", config=configure(tmp_path))
    chat(provider)
    chat(provider)
    with cascadeflow.run(user="u-9"):
        chat(provider)
    cascadeflow.shutdown()
    ledger = report.LedgerRuns(tmp_path / "ledger.db")
    count, cost = ledger.outside()
    assert count == 2 and cost > 0 and "2 calls outside any run()" in ledger.name
    assert [r.user for r in report.load_runs([ledger])] == ["u-9"]
    assert main(["report", "-o", str(tmp_path / "r.html")]) == 0  # no source: the config's ledger
    assert capsys.readouterr().out.startswith("1 runs reviewed")
    assert main(["recommend", "--ledger"]) == 0  # --ledger without a path: the config's too
    assert "[run]" in capsys.readouterr().out


def _schema_1(path: Path) -> None:
    """A ledger file as the first schema wrote it: no run columns, no run entries."""
    old = [c for c in COLUMNS if c not in ADDED["events"]]
    with sqlite3.connect(path) as db:
        db.executescript(f"""
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('schema', '1');
            CREATE TABLE events (id INTEGER PRIMARY KEY, {", ".join(f'"{c}"' for c in old)});
            CREATE TABLE outcomes (run_id TEXT NOT NULL, ts REAL NOT NULL, label TEXT NOT NULL,
                value REAL, user TEXT, project TEXT, agent TEXT);""")
        values = {"ts": 1_795_000_000.0, "run_id": "old-run", "step": 1, "user": "u-1", "agent": "a",
                  "operation": "chat", "model": "openai/gpt-4o-mini", "cost": 0.5, "status": "ok",
                  "action": "allow", "reason": "ok", "applied": 0, "mode": "observe", "tokens_in": 7}
        db.execute(f"INSERT INTO events ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                   list(values.values()))
        db.execute("INSERT INTO outcomes VALUES ('old-run', 1795000001.0, 'resolved', NULL, 'u-1', "
                   "NULL, 'a')")


def test_a_ledger_of_the_first_schema_is_reported_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _schema_1(path)
    [run] = report.load_runs([report.LedgerRuns(path)])
    assert (run.run_id, run.cost, run.agent, run.outcome, run.step_count) == \
        ("old-run", 0.5, "a", "resolved", 1)
    with sqlite3.connect(path) as db:  # read-only: the file is not changed
        assert db.execute("SELECT value FROM meta").fetchall() == [("1",)]
    store = SQLiteStore(path)  # opened for writing: the columns are added, the rows kept
    assert store.read("SELECT value FROM meta WHERE key = 'schema'") == [("2",)]
    columns = {r[1] for r in store.read("PRAGMA table_info(events)")}
    assert set(ADDED["events"]) <= columns
    event = UsageEvent(ts=1_795_000_100.0, run_id="new-run", step=1, user="u-2", project=None,
                       agent=None, workflow=None, operation="chat", requested_model=None,
                       model="openai/gpt-4o", provider="openai", cost=0.25, root_run_id="new-run",
                       root_step=1, budget=1.0)
    store.commit([Settlement(event, event.ts)])
    store.close()
    SQLiteStore(path).close()  # and opened again: nothing left to add
    found = {r.run_id: r for r in report.load_runs([report.LedgerRuns(path)])}
    assert set(found) == {"old-run", "new-run"}
    assert (found["new-run"].cost, found["new-run"].budget, found["old-run"].outcome) == \
        (0.25, 1.0, "resolved")


@pytest.mark.parametrize(("argv", "named"), [
    # said "invalid setting SOURCES=None": now what to pass
    (["report"], "error: nothing to read: pass a file written by session.save(path) (or a folder of "
                 "them) or --ledger PATH (no config file found)"),
    (["report", "--ledger=missing.db"], "--ledger='missing.db'"),
    (["report", "--ledger=bad.db"], "not a cascadeflow ledger"),
    (["recommend", "--ledger"], "ledger.path=None"),
    (["report", "--ledger", "--config", "nowhere.toml"], "--config='nowhere.toml'"),
    (["report", "--ledger=l.db", "--since", "yesterday"], "--since='yesterday'"),
])
def test_bad_ledger_input_names_argument_value_and_source(
        argv: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.db").write_text("not sqlite at all")
    SQLiteStore(tmp_path / "l.db").close()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("damage", ["UPDATE run_entries SET entry = '{cut' WHERE rowid = 1",
                                    "UPDATE events SET content = 'not json' WHERE id = 1"])
def test_a_damaged_row_is_one_line_naming_the_ledger(damage: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # a row JSON cannot read (a file edited by hand, a disk error) raised a JSONDecodeError
    # traceback out of `report` and `recommend`
    db = write_synthetic_ledger(tmp_path / "l.db", 20, seed=1)
    with sqlite3.connect(db) as conn:
        conn.execute(damage)
    for command in ("report", "recommend"):
        assert main([command, f"--ledger={db}", "-o", str(tmp_path / "r.html")][:2 if command ==
                    "recommend" else 4]) == 2
        err = capsys.readouterr().err
        assert f"--ledger='{db}'" in err and "not JSON" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
