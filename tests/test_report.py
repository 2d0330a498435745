"""The review of saved sessions: its numbers against the sessions, what it must never contain,
outcomes, recommendations, trace filters and errors on bad input."""

from __future__ import annotations

import html
import json
import re
import statistics
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import pytest
from cascadeflow import report
from cascadeflow.cli import main
from cascadeflow.config import FileConfig
from cascadeflow.demo.run import main as demo_main
from cascadeflow.demo.triage import THREAD
from cascadeflow.ledger import SQLiteStore
from cascadeflow.quantiles import percentile
from cascadeflow.report.fmt import money
from cascadeflow.report.recommend import propose, to_toml
from cascadeflow.testing.runs import synthetic_runs, write_synthetic

from tests.conftest import chat_kwargs


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The demo's two saved runs and its report, made once for this module."""
    folder = tmp_path_factory.mktemp("demo")
    demo_main(out=open(folder / "out.txt", "w"), out_dir=folder)  # noqa: SIM115
    yield folder
    cascadeflow.shutdown()


def _saved(folder: Path) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    loaded = [cascadeflow.load_session(folder / f"{m}.jsonl") for m in ("observe", "enforce")]
    return [(s.summary(), s.trace()) for s in loaded]


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([10.0], 95) == 10.0
    assert percentile([], 95) is None
    data = [float(x) for x in range(1, 21)]
    assert percentile(data, 95) == pytest.approx(statistics.quantiles(data, n=100, method="inclusive")[94])


def test_demo_report_numbers_match_the_sessions(demo_dir: Path) -> None:
    saved = _saved(demo_dir)
    review = report.review(report.saved_sessions([demo_dir]))
    t = review.totals
    assert t.runs == 2 and (t.observe_runs, t.enforce_runs) == (1, 1)
    assert t.cost == pytest.approx(sum(s["cost_total"] for s, _ in saved))
    assert t.steps == sum(s["steps"] for s, _ in saved)
    assert t.tokens_in == sum(s["tokens_in"] for s, _ in saved)
    assert t.findings == sum(s["guardrail_findings"] for s, _ in saved)
    assert t.fallbacks == sum(s["fallbacks"] for s, _ in saved)
    observe, enforce = saved[0][0], saved[1][0]
    assert t.would_stop == observe["actions"]["stop"] == 3
    assert t.stops == enforce["actions"]["stop"] == 1
    # per model: calls and cost as the summaries count them
    for group in review.by_model:
        assert group.cost == pytest.approx(sum(s["models"].get(group.name, {}).get("cost", 0.0)
                                               for s, _ in saved))
        assert group.calls == sum(s["models"].get(group.name, {}).get("calls", 0) for s, _ in saved)
    # latency percentiles per model, from the trace entries independently
    for row in review.latency_model:
        values = sorted(e["latency_ms"] for _, trace in saved for e in trace
                        if row.name in (e["model"], f"tool {e['tool']}") and e["latency_ms"] is not None
                        and e["operation"] not in ("guardrail", "cascade"))
        assert row.count == len(values)
        if len(values) > 1:
            q = statistics.quantiles(values, n=100, method="inclusive")
            assert row.p50 == pytest.approx(q[49]) and row.p95 == pytest.approx(q[94])
    # what enforce would have done, from the observe run alone
    w = review.would_have
    trace = saved[0][1]
    would = [e for e in trace if not e["applied"] and e["operation"] not in ("guardrail", "cascade")]
    assert w.stopped_calls == sum(e["action"] == "stop" for e in would)
    assert w.switched_calls == sum(e["action"] == "switch_model" for e in would) == 1
    stopped_cost = sum(e["cost"] for e in would if e["action"] == "stop")
    assert w.saved_low == pytest.approx(stopped_cost)
    assert w.saved_high >= w.saved_low
    assert [run.run_id for run, _ in w.failed] == [observe["run_id"]]  # the poisoned draft is blocked
    # outcomes: the run and the drafter's call
    modes = {o.mode: o for o in review.modes}
    assert modes["observe"].resolved == modes["enforce"].resolved == 1
    drafter = {o.mode: o for o in review.outcomes if o.agent == "drafter"}
    assert drafter["observe"].resolved == 1 and drafter["enforce"].other == 1  # without context


def test_the_html_is_self_contained_and_keeps_no_prompt(demo_dir: Path) -> None:
    page = (demo_dir / "report.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()
    assert not re.search(r"""(src|href)=(?!["']?#)""", page)  # only in-page links
    for text in ("Dana", "4242", "dana.whitfield@example.com", "Ignore all previous", "demo-key"):
        assert text not in page
    assert THREAD.splitlines()[1] not in page
    review = report.review(report.saved_sessions([demo_dir]))
    assert money(review.totals.cost) in page
    assert page.count("<div class=run>") == 2
    for section in ("overview", "outcomes", "would-have", "decisions", "latency", "guardrails",
                    "reliability", "runs"):
        assert f'id="{section}"' in page


def test_captured_content_shows_only_when_capture_was_on(provider: Any, tmp_path: Path) -> None:
    cascadeflow.init(mode="observe", capture_content=True)
    with cascadeflow.run() as captured:
        litellm.completion(**chat_kwargs(provider, "a prompt worth reading"))
    cascadeflow.init(mode="observe", capture_content=False)
    with cascadeflow.run() as plain:
        litellm.completion(**chat_kwargs(provider, "a prompt kept private"))
    shown = report.render(report.review(report.saved_sessions([captured.save(tmp_path / "c.jsonl")])))
    hidden = report.render(report.review(report.saved_sessions([plain.save(tmp_path / "p.jsonl")])))
    assert "a prompt worth reading" in shown
    assert "a prompt kept private" not in hidden and "sk-test" not in shown + hidden


def test_a_budget_of_zero_is_shown_as_one(provider: Any, tmp_path: Path) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run(budget=0.0) as session:
        litellm.completion(**chat_kwargs(provider))
    page = report.render(report.review(report.saved_sessions([session.save(tmp_path / "z.jsonl")])))
    assert "of budget $0" in page and "of budget none" not in page
    assert 'stroke-dasharray="6 4"' in page  # the budget line of the burn-down


def test_outcomes_are_recorded_saved_and_rolled_up(provider: Any, tmp_path: Path) -> None:
    cascadeflow.init(mode="observe")

    @cascadeflow.agent(name="solver")
    def solve() -> None:
        litellm.completion(**chat_kwargs(provider))
        cascadeflow.current_session().outcome("failed", value=0)

    with cascadeflow.run(agent="support") as session:
        solve()
    session.outcome("resolved", value=12.5)
    summary = cascadeflow.load_session(session.save(tmp_path / "o.jsonl")).summary()
    assert (summary["outcome"], summary["outcome_value"]) == ("resolved", 12.5)
    assert summary["outcome_ts"] >= summary["started"]
    [(child_id, child)] = summary["sessions"].items()
    assert child["agent"] == "solver" and child["parent"] == session.run_id
    assert (child["outcome"], child["outcome_value"]) == ("failed", 0)
    assert session.trace()[0]["run_id"] == child_id
    rows = {o.agent: o for o in report.review(report.saved_sessions([tmp_path])).outcomes}
    assert rows["support"].completion_rate == 1.0 and rows["support"].value == 12.5
    assert rows["solver"].failed == 1 and rows["solver"].cost_per_success is None
    for bad in ("", None, "x" * 201):
        with pytest.raises(cascadeflow.ConfigError, match="outcome"):
            session.outcome(bad)  # type: ignore[arg-type]
    for value in (float("nan"), "high", True):
        with pytest.raises(cascadeflow.ConfigError, match="finite number"):
            session.outcome("resolved", value)  # type: ignore[arg-type]


def test_a_source_of_records_reviews_like_saved_files(tmp_path: Path) -> None:
    """Any source of records in the saved-session shape reviews like saved files."""

    class Records:
        name = "records"

        def runs(self) -> Iterator[report.RunRecord]:
            return synthetic_runs(300, seed=3)

    review = report.review([Records()], detail=5)
    records = list(synthetic_runs(300, seed=3))
    assert review.totals.runs == 300
    assert review.totals.cost == pytest.approx(sum(r.summary["cost_total"] for r in records))
    assert review.totals.stopped_runs == sum(r.summary["stopped"] for r in records)
    assert len(review.detail) == 5  # stopped (or would-be stopped) runs come first
    assert all(any(m.action == "stop" for m in r.marks) for r in review.detail)
    keep = report.RunFilter(user="u-7", since=records[150].summary["started"])
    kept = report.review([Records()], keep)
    assert kept.totals.runs == sum(1 for r in records[150:] if r.summary["user"] == "u-7")
    file = write_synthetic(tmp_path / "many.jsonl", 300, seed=3)
    assert report.review(report.saved_sessions([file])).totals.cost == pytest.approx(review.totals.cost)
    assert len(report.render(review)) < 600_000


def test_recommend_proposes_parsable_limits_and_counts_the_runs_they_stop() -> None:
    records = [report.RunRecord({"run_id": f"r{i}", "mode": "observe", "cost_total": float(i),
                                 "steps": i, "tool_calls": 0}, [], f"r{i}") for i in range(1, 21)]
    runs = [report.read_run(r) for r in records]
    [p] = propose(runs, q=50, headroom=0.0)
    assert p.observed["budget"] == 10.5 and p.values["budget"] == 11.0 and p.would_stop["budget"] == 9
    assert p.values["max_steps"] == 11 and p.would_stop["max_steps"] == 9
    assert p.values["max_tool_calls"] is None
    text = to_toml([p], 50, 0.0, ["test"])
    assert FileConfig.model_validate(tomllib.loads(text)).run.budget == 11.0
    labelled = report.read_run(report.RunRecord({"run_id": "x", "agent": "on call", "cost_total": 0.00002,
                                                 "steps": 3}, [], "x"))
    config = FileConfig.model_validate(tomllib.loads(to_toml(propose([labelled]), 95, 0.2, [])))
    assert config.agents["on call"].budget == 0.000024 and config.agents["on call"].max_steps == 4


def test_recommend_says_when_too_few_runs_were_seen_for_the_percentile() -> None:
    """One run used to give a p95 "limit" with nothing to say it rests on one observation."""
    def runs(n: int) -> list[report.Run]:
        return [report.read_run(report.RunRecord({"run_id": f"r{i}", "cost_total": 0.01, "steps": 3},
                                                 [], f"r{i}")) for i in range(n)]
    few = to_toml(propose(runs(1)), 95, 0.2, [])
    assert "# too few for a p95 (it takes 20 or more)" in few
    assert FileConfig.model_validate(tomllib.loads(few)).run.max_steps == 4
    assert "too few" not in to_toml(propose(runs(20)), 95, 0.2, [])
    assert "too few" not in to_toml(propose(runs(2), q=50), 50, 0.2, [])


def test_cli_report_recommend_and_trace_filters(demo_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(demo_dir), "-o", str(out), "--agent", "reviewer"]) == 0
    assert "2 runs reviewed" in capsys.readouterr().out and out.stat().st_size > 0
    assert main(["recommend", str(demo_dir / "observe.jsonl"), str(demo_dir / "enforce.jsonl")]) == 0
    config = FileConfig.model_validate(tomllib.loads(capsys.readouterr().out))
    assert set(config.agents) == {"triage", "planner", "drafter", "reviewer"}
    assert config.agents["reviewer"].max_steps is not None
    assert main(["trace", str(demo_dir / "enforce.jsonl"), "--agent", "reviewer", "--action", "stop"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[0])["outcome"] == "resolved"
    assert len(lines) == 4 and "max_steps_reached" in lines[3]


@pytest.mark.parametrize(("argv", "named"), [
    (["report", "missing.jsonl"], "SOURCES='missing.jsonl'"),
    (["report", "bad.jsonl"], "bad.jsonl line 2"),
    (["report", "x.jsonl", "--since", "yesterday"], "--since='yesterday'"),
    (["recommend", "x.jsonl", "--percentile", "0"], "--percentile=0.0"),
    (["trace", "x.jsonl", "--action", "stopp"], "--action='stopp'"),
    (["trace", "x.jsonl", "--agent", "nobody"], "--agent='nobody'"),
    (["trace", "missing.jsonl"], "FILE='missing.jsonl'"),
])
def test_bad_input_is_an_error_naming_argument_value_and_source(
        argv: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_synthetic(tmp_path / "x.jsonl", 2)
    (tmp_path / "bad.jsonl").write_text('{"type": "summary", "run_id": "a"}\n{not json\n')
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_breakdowns_add_up_to_the_total_when_a_bounded_trace_dropped_entries(
        provider: Any, tmp_path: Path) -> None:
    """A run whose trace kept its last 3 of 8 entries: the cost per model, day and agent used
    to sum the 3 kept steps (38% of the run's exact cost); what was dropped is now a group of
    its own, and the cost per user is the run's whole cost."""
    cascadeflow.init(mode="observe", run_max_entries=3)

    @cascadeflow.agent(name="sub")
    def sub() -> None:
        litellm.completion(**chat_kwargs(provider))
        litellm.completion(**chat_kwargs(provider))

    with cascadeflow.run(user="u-1") as session:
        for _ in range(4):
            sub()
    assert session.summary()["trace_entries_dropped"] == 5
    review = report.review(report.saved_sessions([session.save(tmp_path / "long.jsonl")]))
    total = review.totals.cost
    assert total == pytest.approx(session.summary()["cost_total"]) and total > 0
    for groups in (review.by_model, review.by_day, review.by_agent, review.by_user):
        assert sum(g.cost for g in groups) == pytest.approx(total)
        assert sum(g.calls for g in groups) == 8
    assert {g.name for g in review.by_model} == {"openai/gpt-4o-mini", "(entries not kept)"}
    assert [(g.name, g.calls) for g in review.by_user] == [("u-1", 8)]


def test_recommend_leaves_out_agent_calls_a_bounded_trace_cut_short(
        provider: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each call of `sub` takes 5 steps; the run's trace keeps its last 3 entries. Recommend read
    those 3 as one whole call and proposed `max_steps = 4`, which stops every real call."""
    cascadeflow.init(mode="observe", run_max_entries=3)

    @cascadeflow.agent(name="sub")
    def sub() -> None:
        for _ in range(5):
            litellm.completion(**chat_kwargs(provider))

    with cascadeflow.run() as session:
        sub()
        sub()
    assert main(["recommend", str(session.save(tmp_path / "long.jsonl"))]) == 0
    text = capsys.readouterr().out
    proposed = tomllib.loads(text)
    assert proposed["run"]["max_steps"] >= 10  # the run's totals stay exact
    assert "sub" not in proposed.get("agents", {})
    assert "1 runs outgrew run_max_entries" in text


def test_trace_reads_a_sparse_file_and_refuses_a_bad_value(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`cascadeflow trace` indexed every key: a file without one (an older version's, a
    hand-trimmed one) ended in a KeyError traceback, a bad value in a TypeError; and the summary
    line gave `tool_calls` (the larger of requested and executed) as the calls requested."""
    sparse = tmp_path / "sparse.jsonl"
    sparse.write_text(json.dumps({"type": "summary", "run_id": "r1", "budget": 1.0, "tool_calls": 2,
                                  "tool_calls_requested": 0, "tool_executions": 2}) + "\n"
                      + json.dumps({"type": "entry", "step": 1, "action": "allow"}) + "\n")
    assert main(["trace", str(sparse)]) == 0
    out = capsys.readouterr().out
    assert "0 tool calls requested / 2 executed" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"type": "summary", "run_id": "r1", "budget": "1"}) + "\n")
    assert main(["trace", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "budget='1'" in err and "Traceback" not in err


def test_a_finding_counts_every_match_it_stands_for(provider: Any, tmp_path: Path) -> None:
    """A text with three addresses is one finding of its rule and kind, with count 3: the
    review counts matches, as the session's summary does, from saved runs and from the ledger."""
    (tmp_path / "cascadeflow.toml").write_text('[ledger]\npath = "ledger.db"\n')
    cascadeflow.init(mode="observe", guardrails="pii", config=tmp_path / "cascadeflow.toml")
    addresses = "write to ann@example.com, bob@example.org or cy@example.net"
    with cascadeflow.run(user="u-1") as session:
        litellm.completion(**chat_kwargs(provider, addresses))
    cascadeflow.shutdown()
    summary = session.summary()
    entries = [e for e in session.trace() if e["operation"] == "guardrail"]
    # the prompt, and the provider's answer that quotes it back
    assert sorted((e["stage"], e["count"]) for e in entries) == [("input", 3), ("output", 3)]
    assert summary["guardrail_findings"] == 6
    for source in (report.saved_sessions([session.save(tmp_path / "run.jsonl")]),
                   [report.LedgerRuns(tmp_path / "ledger.db")]):
        review = report.review(source)
        assert review.totals.findings == 6
        rows = sorted((r.count, r.would_have, sorted(r.by.items())) for r in review.findings)
        assert rows == [(3, 3, [("input", 3)]), (3, 3, [("output", 3)])], source


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path) -> None:
    """`cascadeflow trace FILE | head`: when the reader closes the pipe, the command stops
    quietly (exit status 1), as the help promises: never a traceback."""
    import subprocess
    import sys

    cascadeflow.init(mode="observe")

    @cascadeflow.tool
    def lookup(n: int) -> int:
        return n

    with cascadeflow.run() as session:
        for n in range(2_000):  # a table far larger than a pipe's buffer
            lookup(n)
    session.save(tmp_path / "long.jsonl")
    cascadeflow.shutdown()
    child = subprocess.Popen([sys.executable, "-m", "cascadeflow", "trace", str(tmp_path / "long.jsonl")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    assert child.stdout.read(100)
    child.stdout.close()
    errors = child.stderr.read().decode()
    assert child.wait(timeout=120) == 1
    assert "Traceback" not in errors and "Exception ignored" not in errors, errors


def test_trace_streams_a_large_file_run_by_run(tmp_path: Path) -> None:
    """`cascadeflow trace` read every run of the file into memory before printing the first one:
    a 200 MB file of saved sessions took 1.4 GB and 20 s before `| head` saw a line. It now
    checks and prints one run at a time, so memory stays at one run's size."""
    import io
    import tracemalloc
    from contextlib import redirect_stdout

    path = write_synthetic(tmp_path / "many.jsonl", 400)
    size = path.stat().st_size
    class Sink(io.StringIO):  # counts runs, keeps nothing: the output is not the reader's memory
        runs = 0

        def write(self, text: str) -> int:
            self.runs += text.count('"run_id"')
            return len(text)

    sink = Sink()
    tracemalloc.start()
    try:
        with redirect_stdout(sink):
            assert main(["trace", str(path)]) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.runs == 400
    assert peak < size / 4, (peak, size)


def test_trace_filters_still_name_the_values_a_whole_file_has(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Streaming keeps the promise that a value no entry has is an error listing those there are,
    and that an empty file is an error rather than an empty, successful trace."""
    path = write_synthetic(tmp_path / "x.jsonl", 3)
    assert main(["trace", str(path), "--agent", "nobody"]) == 2
    err = capsys.readouterr().err
    assert "--agent='nobody'" in err and "present: " in err and "none" not in err.split("present: ")[1]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["trace", str(empty)]) == 2
    assert "FILE='" in capsys.readouterr().err


def test_trace_filters_no_entry_matches_together_are_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An agent and a reason each in the file but never on one entry, or an action no entry has,
    is a one-line error with exit 2, not an empty trace that exits 0."""
    path = write_synthetic(tmp_path / "x.jsonl", 3)  # triage entries all have reason ok
    assert main(["trace", str(path), "--agent", "triage", "--reason", "max_steps_reached"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "no trace entry matches --agent='triage' and --reason='max_steps_reached' together" \
        in captured.err
    assert main(["trace", str(path), "--action", "block"]) == 2
    assert "--action='block'" in capsys.readouterr().err
    assert main(["trace", str(path), "--agent", "reviewer", "--reason", "max_steps_reached"]) == 0


@pytest.mark.parametrize(("argv", "named"), [
    (["report", "far.jsonl"], "started='1e+20'"),
    (["report", "far_step.jsonl"], "ts='1e+19'"),
    (["recommend", "far.jsonl"], "started='1e+20'"),
    (["report", "x.jsonl", "--since", "1e30"], "--since='1e30'"),
    (["report", "x.jsonl", "--since", "9999999999d"], "--since='9999999999d'"),
    (["ledger", "steps", "--ledger", "l.db", "--since", "1e30"], "--since='1e30'"),
])
def test_a_time_out_of_any_calendar_is_an_error_not_a_traceback(
        argv: list[str], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A start time of 1e20 in a saved file (or `--since 1e30`) passed every check and ended in
    an OverflowError traceback from the report's date formatting."""
    monkeypatch.chdir(tmp_path)
    write_synthetic(tmp_path / "x.jsonl", 2)
    far = {"type": "summary", "run_id": "a", "started": 1e20}
    (tmp_path / "far.jsonl").write_text(json.dumps(far) + "\n")
    (tmp_path / "far_step.jsonl").write_text(
        json.dumps({"type": "summary", "run_id": "a"}) + "\n"
        + json.dumps({"type": "entry", "step": 1, "ts": 1e19}) + "\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err, err


def test_a_long_unbroken_name_wraps_inside_its_cell(tmp_path: Path) -> None:
    """A Bedrock inference-profile ARN is a model name of 90 characters without a space: tables
    grew past the page, and the right-hand panel of each two-column row (cost per agent, latency
    per model) was pushed off screen. Cells may now break such a name, and each column of the
    two-column grid may shrink below its content's width."""
    model = "bedrock/arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-v2:0"
    record = report.RunRecord({"run_id": "r1", "cost_total": 0.01}, [
        {"step": 1, "model": model, "agent": "a" * 120, "cost": 0.01, "latency_ms": 5.0}], "r1")
    page = report.render(report.build([report.read_run(record)], ["r1"], None, 1))
    assert model in page
    css = re.search(r"<style>(.*)</style>", page, re.S)
    assert css is not None
    rules = {sel.strip(): body for sel, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css.group(1))}
    assert "overflow-wrap:anywhere" in rules["td"]  # not in headers: "runs" stays one word
    assert "minmax(0,1fr) minmax(0,1fr)" in rules[".grid"]


def test_a_waterfall_row_label_stays_left_of_the_bars() -> None:
    """The label of a step row shortened its model to 26 characters but not its agent: an agent
    named like a job ("customer_support_escalation_agent") with a Bedrock model ran 60 characters,
    about 400 px at 11 px, across the bars that start 280 px in. Labels are now cut to the room
    their nesting leaves (at most 6.5 px a character), and the full text is the row's tooltip."""
    from cascadeflow.report.svg import LABEL_W, waterfall

    agent = "customer_support_escalation_agent"
    record = report.RunRecord({"run_id": "r1", "cost_total": 0.01, "sessions": {
        "s1": {"agent": agent, "parent": None}, "s2": {"agent": agent, "parent": "s1"}}}, [
        {"step": 1, "model": "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0", "agent": agent,
         "run_id": "s1", "ts": 1.0, "latency_ms": 5.0},
        {"step": 2, "model": "openai/gpt-4o-mini", "agent": agent, "run_id": "s2", "ts": 1.1,
         "latency_ms": 5.0}], "r1")
    svg = waterfall(report.read_run(record))
    labels = re.findall(r'<text x="(\d+)" y="\d+" class=label>([^<]*)<title>', svg)
    assert len(labels) == 2
    for x, text in labels:
        assert int(x) + 6.5 * len(html.unescape(text)) <= LABEL_W - 8, (x, text)
    assert agent in svg  # in full, in a tooltip


def test_trace_prints_no_control_characters_from_the_file(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """An agent or model name with an escape sequence (from a saved file or an application that
    takes model names from its users) reached the terminal as is through `cascadeflow trace`:
    "\\x1b[2J" cleared the screen. Cells now show such characters escaped, as `ledger steps` does."""
    path = tmp_path / "esc.jsonl"
    path.write_text(json.dumps({"type": "summary", "run_id": "r1", "budget": 1.0}) + "\n" + json.dumps(
        {"type": "entry", "step": 1, "agent": "a\x1b[2J", "model": "m\x07\r", "reason": "r\x1b]0;t\x07",
         "action": "allow"}) + "\n")
    assert main(["trace", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "a\\x1b[2J" in out


def test_recommend_writes_valid_toml_for_any_agent_or_file_name(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """An agent named with an emoji came out as `[agents."\\ud83e\\udd16 helper"]` (JSON's
    surrogate escapes), which no TOML reader accepts; a DEL character went out raw (TOML forbids
    it), and a file name with a line break ended the `# from` comment and began a line of TOML.
    Names now keep their characters, escaped as TOML wants, and the snippet loads."""
    names = ["\U0001f916 helper \u00e9", "del\x7fete", 'quote"back\\slash', "tab\tnew\nline"]
    folder = tmp_path / "odd\n[run]\nbudget = 99"
    folder.mkdir()
    for i, name in enumerate(names):
        (folder / f"{i}.jsonl").write_text(
            json.dumps({"type": "summary", "run_id": f"r{i}", "agent": name, "steps": 2,
                        "cost_total": 0.01}) + "\n"
            + json.dumps({"type": "entry", "step": 1, "agent": name, "cost": 0.01}) + "\n")
    assert main(["recommend", str(folder)]) == 0
    proposed = tomllib.loads(capsys.readouterr().out)
    assert set(proposed["agents"]) == set(names)
    assert "run" not in proposed


@pytest.mark.parametrize(("cost", "headroom"), [(5e-324, "0.2"), (1e-13, "0.2"), (1.6e308, "1")])
def test_recommend_proposes_a_budget_for_a_cost_at_either_end_of_the_floats(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], cost: float, headroom: str) -> None:
    """A run costing 5e-324 crashed recommend with an OverflowError (10.0 ** 325 in the rounding),
    1.6e308 plus head-room did too (infinity), and 1e-13 was proposed as `budget = 0.0`. Each now
    gives a TOML budget no lower than the cost."""
    (tmp_path / "r.jsonl").write_text(
        json.dumps({"type": "summary", "run_id": "r1", "steps": 1, "cost_total": cost}) + "\n"
        + json.dumps({"type": "entry", "step": 1, "cost": cost}) + "\n")
    assert main(["recommend", str(tmp_path / "r.jsonl"), "--headroom", headroom]) == 0
    budget = tomllib.loads(capsys.readouterr().out)["run"]["budget"]
    assert cost <= budget < float("inf")


def test_top_level_help_is_for_a_user(capsys: pytest.CaptureFixture[str]) -> None:
    """`cascadeflow --help` printed the module docstring, implementation notes ("each registered
    by its own `add_*` function") included; it now says what the tool does and lists the
    commands."""
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "add_" not in text and "registered" not in text
    assert "Review and govern" in text
    for command in ("demo", "trace", "report", "recommend", "ledger"):
        assert re.search(rf"^ +{command}\b", text, re.MULTILINE), command


def test_a_report_of_no_runs_does_not_say_every_decision_was_applied(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty ledger's report said "No observe runs in these sources: every decision was
    applied" with no runs at all; it now says there are no runs."""
    SQLiteStore(tmp_path / "l.db").close()
    assert main(["report", "--ledger", str(tmp_path / "l.db"), "-o", str(tmp_path / "r.html")]) == 0
    assert "0 runs reviewed" in capsys.readouterr().out
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "every decision was applied" not in page
    assert "No runs in these sources" in page


def test_a_saved_file_with_a_byte_order_mark_is_read(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A saved session trimmed in a Windows editor starts with a UTF-8 byte order mark: trace,
    report and load_session refused it ("Unexpected UTF-8 BOM"), as the config file was until
    it learned to read one."""
    path = write_synthetic(tmp_path / "plain.jsonl", 1)
    marked = tmp_path / "marked.jsonl"
    marked.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert main(["trace", str(marked)]) == 0
    assert '"run_id"' in capsys.readouterr().out
    assert report.review(report.saved_sessions([marked])).totals.runs == 1
    assert cascadeflow.load_session(marked).summary() == cascadeflow.load_session(path).summary()


def test_the_scale_label_of_a_bar_chart_sits_above_the_tallest_bar() -> None:
    """The chart's top value ("$0.000618" in the demo's cost per day) was drawn at y 12 over the
    tallest bar, whose top was at y 10: on one day's bar the figure was dark text on blue. Bars
    now start below the label's baseline."""
    from cascadeflow.report.svg import bars

    chart = bars([("11-22", 0.000618), ("11-23", 0.0003)], money)
    label_y = float(re.findall(r'<text x="2" y="([\d.]+)" class=axis>', chart)[0])
    tops = [float(y) for y in re.findall(r'<rect x="[\d.]+" y="([\d.]+)"', chart)]
    assert min(tops) >= label_y + 3, (label_y, tops)
