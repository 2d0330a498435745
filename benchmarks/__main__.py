"""`python -m benchmarks [--quick] [--out results.json]`: print the table, write JSON."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.suite import run

COLUMNS = ("median_us", "p99_us", "added_us", "added_pct", "mb_per_s", "growth", "bytes_per_entry",
           "peak_rss_mb", "events_per_s")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    lines = []
    header = f"{'benchmark':<46} {'variant':<34} " + " ".join(f"{c:>15}" for c in COLUMNS)
    lines.append(header)
    lines.append("-" * len(header))
    for row in rows:
        lines.append(f"{row['benchmark']:<46} {row['variant']:<34} "
                     + " ".join(f"{_fmt(row[c]) if c in row else '':>15}" for c in COLUMNS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="small counts, for CI (under a minute)")
    parser.add_argument("--out", default="benchmarks/results/latest.json")
    args = parser.parse_args(argv)
    started = time.time()
    rows = run(quick=args.quick)
    print(table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"quick": args.quick, "python": sys.version.split()[0],
                               "machine": platform.machine(), "started": started,
                               "seconds": time.time() - started, "rows": rows}, indent=2))
    print(f"\nwrote {out} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
