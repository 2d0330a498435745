"""The benchmark suite runs (quick mode) so it cannot rot; no time is asserted here."""

from __future__ import annotations

import json
from pathlib import Path

from cascadeflow import guardrails

from benchmarks.__main__ import main
from benchmarks.common import contact_export
from benchmarks.guardrail_paired import _scanner, baseline
from benchmarks.report import main as report_main


def test_quick_benchmarks_run_and_write_json(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    assert main(["--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    names = {row["benchmark"] for row in data["rows"]}
    assert {"decision time (Engine.decide)", "pre-flight budget check", "scale: ambient session",
            "trace memory", "litellm completion, mock_response, 2 KB prompt",
            "openai chat.completions.create (HTTP, built-in provider)",
            "guardrail scan, PII-dense contact export (pii profile)"} <= names
    writes = [r for r in data["rows"] if r["benchmark"] == "ledger sustained writes (batches of 500)"]
    assert len(writes) == 3 and all(r["events_per_s"] > 0 for r in writes)  # SQLite, Redis x 2
    added = [r for r in data["rows"] if "added_us" in r]
    assert added, "no paired rows"
    for row in added:  # every paired figure comes with its spread, its baseline and the worker's share
        assert {"added_p25_us", "added_p75_us", "baseline_us", "wall_added_us", "worker_us",
                "rounds", "n"} <= set(row)
        assert row["added_p25_us"] <= row["added_us"] <= row["added_p75_us"]


def test_the_report_benchmark_runs_without_a_browser(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert report_main(["--runs", "30", "--browser", "", "--dir", str(tmp_path), "--out", str(out)]) == 0
    row = json.loads(out.read_text())
    assert row["runs"] == 30 and row["html_bytes"] == (tmp_path / "report.html").stat().st_size
    assert "load_and_layout_ms" not in row  # measured only in a browser


def test_guardrail_baseline_of_a_git_ref_imports_beside_this_tree(tmp_path: Path) -> None:
    base = baseline("HEAD", tmp_path)
    assert base.__name__ == "_baseline_guardrails" and base is not guardrails
    assert base.detectors.secrets.__name__ == "_baseline_guardrails_secrets"
    text = contact_export(2_000)
    assert _scanner(base, "pii")(text) == _scanner(guardrails, "pii")(text)  # HEAD redacts as this tree
