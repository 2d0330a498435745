"""The `cascadeflow` command: `demo` runs the triage demo, `trace` prints a saved session,
`ledger` reads and trims the ledger."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from cascadeflow import ledger_cli
from cascadeflow.console import print_summary, print_trace
from cascadeflow.demo.run import main as run_demo
from cascadeflow.session import load_session


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cascadeflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the support-triage demo (built-in provider, no keys)")
    demo.add_argument("--live", action="store_true", help="use a real provider (OPENAI_API_KEY)")
    show = sub.add_parser("trace", help="print a session saved with session.save(path)")
    show.add_argument("path")
    ledger_cli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "ledger":
        return ledger_cli.main(args)
    if args.command == "demo":
        run_demo(live=args.live)
        return 0
    loaded = load_session(args.path)
    print(json.dumps({k: loaded.summary().get(k) for k in ("run_id", "mode", "steps", "cost_total")}))
    print_trace(loaded, sys.stdout)
    if loaded.summary().get("budget") is not None:
        print_summary(loaded, sys.stdout)
    return 0
