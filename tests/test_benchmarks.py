"""The benchmark suite runs (quick mode) so it cannot rot; no time is asserted here."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.__main__ import main


def test_quick_benchmarks_run_and_write_json(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    assert main(["--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    names = {row["benchmark"] for row in data["rows"]}
    assert {"decision time (Engine.decide)", "pre-flight budget check", "scale: ambient session",
            "trace memory", "litellm completion (mock_response)",
            "openai chat.completions.create (HTTP)"} <= names
    baselines = [r for r in data["rows"] if r["variant"] == "off"]
    assert baselines and all(r["added_us"] == 0 for r in baselines)
