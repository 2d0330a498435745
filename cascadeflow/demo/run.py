"""`cascadeflow demo`: the triage agent in observe mode, then in enforce mode, step by step."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import cascadeflow
from cascadeflow import report
from cascadeflow.console import print_summary, print_trace
from cascadeflow.demo.triage import Llm, script_provider, triage
from cascadeflow.testing import serve

CONFIG = Path(__file__).with_name("cascadeflow.toml")
RUN_POLICY: dict[str, Any] = {"budget": 0.01, "max_tool_calls": 1, "compliance": "gdpr"}


async def _one_pass(mode: str, llm: Llm, out: TextIO, out_dir: Path) -> dict[str, Any]:
    if llm.provider is not None:
        script_provider(llm.provider)
    report = cascadeflow.init(mode=mode, config=CONFIG)
    print(f"\n=== mode={report.mode}  instrumented={report.instrumented}  "
          f"config={Path(report.config_file or '-').name} version={report.policy_versions.get('config')}",
          file=out)
    print(f"run policy: {RUN_POLICY}\n", file=out)
    async with cascadeflow.run(**RUN_POLICY, project="support") as session:
        result = await triage(llm)
    # what the run was for: a draft for the human agent to send
    session.outcome("resolved" if result["draft"] else "failed")
    session.save(out_dir / f"{mode}.jsonl")
    print_trace(session, out)
    print_summary(session, out)
    print(f"category: {result['category']}; similar tickets: {len(result['similar'])}; "
          f"review rounds: {result['review_rounds']}", file=out)
    print(f"draft: {result['draft'][:160]}", file=out)
    return session.summary()


@contextlib.contextmanager
def _llm(live: bool) -> Iterator[Llm]:
    if live:
        if not os.environ.get("OPENAI_API_KEY"):
            raise SystemExit("cascadeflow demo --live needs OPENAI_API_KEY in the environment")
        yield Llm()
        return
    with serve() as provider:
        yield Llm(api_base=provider.url, api_key="demo-key-not-secret", provider=provider)


def main(live: bool = False, out: TextIO | None = None, out_dir: Path | None = None
         ) -> dict[str, dict[str, Any]]:
    """Run the demo, save both runs and write their report into `out_dir` (a new temporary
    folder when None); returns both summaries (the tests read them)."""
    stream = out or sys.stdout
    folder = Path(tempfile.mkdtemp(prefix="cascadeflow-demo-")) if out_dir is None else out_dir
    folder.mkdir(parents=True, exist_ok=True)
    where = "a real provider (OPENAI_API_KEY)" if live else "the built-in local provider"
    print(f"cascadeflow demo: support triage on {where}", file=stream)
    results: dict[str, dict[str, Any]] = {}
    try:
        with _llm(live) as llm:
            for mode in ("observe", "enforce"):
                results[mode] = asyncio.run(_one_pass(mode, llm, stream, folder))
    finally:
        cascadeflow.shutdown()
    sources = report.saved_sessions([folder / "observe.jsonl", folder / "enforce.jsonl"])
    page = report.write_report(sources, folder / "report.html")
    print(f"\nreport of both runs: {page.resolve()}", file=stream)
    print(f"saved sessions: {folder.resolve()}/{{observe,enforce}}.jsonl "
          "(cascadeflow trace / report / recommend read them)", file=stream)
    return results
