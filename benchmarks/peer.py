"""`make bench-peer`: cascadeflow against the peer harness on the same openai SDK call.

The peer is the unrelated `cascadeflow` package on PyPI (its in-process harness patches the openai
SDK too). It is installed into a throw-away virtual environment made for this run and deleted
after it, never into the project's. The built-in provider runs as a process of its own; both
runtimes are measured by `sdk_call.py` with the same paired method, in alternation, and the
figures are the medians over those runs.

    python -m benchmarks.peer [--version 1.2.0] [--runs 3] [--out benchmarks/results/peer.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _peer_python(folder: Path, version: str) -> Path:
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"cascadeflow=={version}",
                           "openai"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"installing the peer failed:\n{done.stdout}{done.stderr}")
    return python


def _measure(python: Path, runtime: str, url: str, cwd: Path) -> dict[str, Any]:
    out = subprocess.run([str(python), str(HERE / "sdk_call.py"), "--runtime", runtime, "--url", url],
                         check=True, capture_output=True, text=True, cwd=cwd)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer")
    parser.add_argument("--version", default="1.2.0", help="the peer's version on PyPI")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/peer.json")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="cascadeflow-peer-"))
    provider = subprocess.Popen([sys.executable, "-m", "cascadeflow.testing"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
    try:
        assert provider.stdout is not None
        url = provider.stdout.readline().strip()
        peer = _peer_python(scratch / "venv", args.version)
        runs: dict[str, list[dict[str, Any]]] = {"cascadeflow": [], "peer": []}
        for _ in range(args.runs):
            runs["cascadeflow"].append(_measure(Path(sys.executable), "cascadeflow", url, scratch))
            runs["peer"].append(_measure(peer, "peer", url, scratch))
    finally:
        if provider.stdin is not None:
            provider.stdin.close()
        provider.wait(timeout=10)
        shutil.rmtree(scratch, ignore_errors=True)
    table = _summarise(runs)
    print(f"{'runtime':<12} {'variant':<34} {'added_us':>9} {'baseline_us':>12} {'worker_us':>10}")
    for row in table["rows"]:
        print(f"{row['runtime']:<12} {row['variant']:<34} {row['added_us']:>9.1f} "
              f"{row['baseline_us']:>12.1f} {row['worker_us']:>10.1f}")
    for variant, ratio in table["ratios"].items():
        print(f"cascadeflow / peer, {variant}: {ratio:.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"peer_version": args.version, **table}, indent=2))
    return 0


# our variant -> the peer's variant it is compared with (the peer has no guardrails or telemetry
# variant: those are compared with its enforce, which is what the targets ask)
COUNTERPART = {"observe, bare run()": "observe, bare run()",
               "enforce (budget+compliance+kpi)": "enforce (budget+compliance+kpi)",
               "enforce + default guardrails": "enforce (budget+compliance+kpi)",
               "enforce + OpenTelemetry (batch)": "enforce (budget+compliance+kpi)"}


def _summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians over the runs, per runtime and variant, and our added cost over the peer's."""
    rows = []
    added: dict[tuple[str, str], float] = {}
    for runtime, results in runs.items():
        for variant in results[0]["rows"]:
            values = [r["rows"][variant] for r in results]
            row = {"runtime": runtime, "variant": variant,
                   **{k: statistics.median(v[k] for v in values)
                      for k in ("added_us", "baseline_us", "worker_us", "wall_added_us")}}
            rows.append(row)
            added[(runtime, variant)] = row["added_us"]
    ratios = {ours: added[("cascadeflow", ours)] / added[("peer", theirs)]
              for ours, theirs in COUNTERPART.items()}
    return {"rows": rows, "ratios": ratios}


if __name__ == "__main__":
    raise SystemExit(main())
