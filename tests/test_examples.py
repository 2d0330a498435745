"""Every example runs as a user would run it, and the demo does what the README says."""

from __future__ import annotations

import io
import re
import runpy
import sys
from pathlib import Path

import cascadeflow
import pytest
from cascadeflow.demo.run import main as demo_main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.py") if p.stem != "support"))
def test_example_runs(name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                      ) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.chdir(EXAMPLES)
    monkeypatch.setattr(sys, "argv", [name])
    runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip()
    assert "Traceback" not in out


def test_concurrent_budget_switches_from_any_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Run from the repository root, as its docstring says, the example still loads the model
    pool of examples/cascadeflow.toml, so calls under budget pressure switch to a cheaper model."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CASCADEFLOW_CONFIG", raising=False)
    runpy.run_path(str(EXAMPLES / "concurrent_budget.py"), run_name="__main__")
    out = capsys.readouterr().out
    switched = re.search(r"\((\d+) on a cheaper model\)", out)
    assert switched and int(switched.group(1)) > 0, out


def test_rollout_guide_does_what_the_guide_says(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.delenv("CASCADEFLOW_CONFIG", raising=False)
    runpy.run_path(str(EXAMPLES / "rollout_guide.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "stage 1: {'cascadeflow.cost'" in out
    assert "Would-be enforcement actions: 2" in out  # gpt-4o is outside the gdpr profile
    assert "Step 1: switch_model — compliance_model_not_allowed" in out
    assert "stage 3: 2 steps, stopped=False" in out
    assert "stage 4, week 3: [('switch_model', 'openai/gpt-4o-mini'), ('switch_model', " \
           "'openai/gpt-4o-mini')]" in out
    assert "medical_agent stopped: compliance_no_allowed_model" in out
    assert "('triage_agent', 'switch_model', 'kpi_better_model')" in out
    assert "CASCADEFLOW_MODE=enforce: mode=enforce" in out


def test_demo_observe_then_enforce(tmp_path: Path) -> None:
    out = io.StringIO()
    summaries = demo_main(out=out, out_dir=tmp_path)
    text = out.getvalue()
    observe, enforce = summaries["observe"], summaries["enforce"]
    assert "=== mode=observe" in text and "=== mode=enforce" in text
    # observe: nothing applied, every would-be stop visible, the runaway loop runs to the end
    assert observe["stopped"] is False
    assert observe["actions"]["stop"] == 3
    assert observe["reasons"]["kpi_better_model"] == 1
    # enforce: the switch is applied (cheaper classify), the loop is cut off at max_steps
    assert enforce["stopped"] is True
    assert enforce["actions"]["stop"] == 1
    assert enforce["cost_total"] < observe["cost_total"]
    assert "stopped by max_steps_reached" in text
    # guardrails: the card is redacted from the input, the poisoned retrieved ticket is blocked
    assert enforce["findings_by_rule"]["prompt_injection"] == 1
    assert enforce["findings_by_rule"]["pii_redaction"] > 0
    assert enforce["actions"]["block"] == 1  # the drafter then drafts without the retrieved tickets
    # observe sends the poisoned prompt on: each of the drafting cascade's 3 attempts is flagged
    assert observe["actions"]["block"] == 3
    assert "4242 4242 4242 4242" not in text
    # the drafting cascade: the primary is overloaded twice, so it retries, then falls back
    for summary in (observe, enforce):
        assert (summary["retries"], summary["fallbacks"], summary["degraded"]) == (1, 1, True)
    assert cascadeflow.current_session().mode == "off"  # the demo shuts down after itself
    # it ends with the report of its own two runs
    assert text.rstrip().splitlines()[-2] == f"report of both runs: {tmp_path / 'report.html'}"
    assert (tmp_path / "report.html").stat().st_size > 0


def test_cli_demo_and_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cascadeflow.cli import main

    assert main(["demo"]) == 0
    assert "summary:" in capsys.readouterr().out
    cascadeflow.init(mode="observe")

    @cascadeflow.tool
    def ping() -> None:
        return None

    with cascadeflow.run(budget=1.0) as session:
        ping()
    path = session.save(tmp_path / "s.jsonl")
    assert main(["trace", str(path)]) == 0
    assert "ping" in capsys.readouterr().out


def test_live_demo_needs_a_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """Without the key, `demo --live` printed its banner and exited 1; it is now bad input: one
    line, exit status 2, nothing else printed and no folder made."""
    from cascadeflow.cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["demo", "--live", "--out-dir", str(tmp_path / "d")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "cascadeflow demo: error: --live needs OPENAI_API_KEY in the environment\n"
    assert not (tmp_path / "d").exists()


def test_demo_out_dir_that_cannot_be_a_folder_is_a_one_line_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`cascadeflow demo --out-dir report.html` (a file) ended in a FileExistsError traceback
    from mkdir; it is now exit status 2 and one line naming --out-dir and the path."""
    from cascadeflow.cli import main

    (tmp_path / "taken").write_text("a file, not a folder")
    for target in ("taken", "taken/inside"):
        assert main(["demo", "--out-dir", str(tmp_path / target)]) == 2
        err = capsys.readouterr().err
        assert f"--out-dir='{tmp_path / target}'" in err and len(err.strip().splitlines()) == 1, err
