"""Guardrail scans of this tree against those of a git ref, paired in one run (CPU time).

    python -m benchmarks.guardrail_paired [--against main] [--quick]

The ref's `cascadeflow/guardrails` and `cascadeflow/secrets.py` are read with `git archive` into a
temporary folder and imported under other names, so both versions run in one process, in
alternating order, on the same texts: the default input profile on a 4 KB support ticket (the
`make bench` text), and the `pii` profile on a 1 MB contact export (39,460 matches). A shared,
busy machine moves both sides of a pair alike, which separate runs cannot promise.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from cascadeflow import guardrails

from benchmarks.common import contact_export, sample_text
from benchmarks.harness import Variant, paired
from benchmarks.suite import PII_TAIL

ROOT = Path(__file__).resolve().parent.parent
BASE = "_baseline_guardrails"


def baseline(ref: str, folder: Path) -> ModuleType:
    """The guardrails package of `ref`, importable as `_baseline_guardrails`."""
    archive = subprocess.run(["git", "archive", ref, "cascadeflow/guardrails", "cascadeflow/secrets.py"],
                             cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = folder / "cascadeflow" / "guardrails"
    package.rename(folder / BASE)
    (folder / "cascadeflow" / "secrets.py").rename(folder / f"{BASE}_secrets.py")
    for path in (folder / BASE).glob("*.py"):
        source = path.read_text(encoding="utf-8")
        source = re.sub(r"\bcascadeflow\.guardrails\b", BASE, source)
        source = source.replace("from cascadeflow import secrets", f"import {BASE}_secrets as secrets")
        path.write_text(source, encoding="utf-8")
    sys.path.insert(0, str(folder))
    return importlib.import_module(BASE)


def _scanner(module: Any, profile: str) -> Callable[[str], str]:
    rules = module.load(None).profiles[profile].input

    def scan(text: str) -> str:
        return str(module.transform(text, module.scan_text(rules, text, "input")))
    return scan


def _variant(old: Callable[[str], str], new: Callable[[str], str], text: str, block: int) -> Variant:
    """Each side of a pair is `block` scans in a row: one version's data stays in the CPU's
    caches through its block, as in a process that runs only one of them."""
    def repeat(scan: Callable[[str], str]) -> Callable[[], Any]:
        return lambda: [scan(text) for _ in range(block)]

    @contextlib.contextmanager
    def enter() -> Iterator[tuple[Callable[[], Any], Callable[[], Any]]]:
        gc.disable()  # collected between pairs instead: neither side pays for the other's garbage
        try:
            yield repeat(old), repeat(new)
        finally:
            gc.enable()
    return enter


def run(ref: str, quick: bool) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as folder:
        base = baseline(ref, Path(folder))
        ticket = sample_text(4_000 - 120) + PII_TAIL
        export = contact_export(100_000 if quick else 1_000_000)
        rows = []
        for label, profile, text, rounds, pairs, block in (
                ("4 KB ticket, default input profile", "default", ticket, 6, 6 if quick else 30, 20),
                ("contact export, pii profile", "pii", export, 2 if quick else 4, 2, 1)):
            old, new = _scanner(base, profile), _scanner(guardrails, profile)
            added = paired({label: _variant(old, new, text, block)}, rounds, pairs, settle=gc.collect,
                           warmup=1)[label].row()
            before = added["baseline_us"] / block
            now = before + added["added_us"] / block
            rows.append({"benchmark": f"guardrail scan against {ref}", "variant": label,
                         "chars": len(text), "baseline_us": before, "this_us": now, "ratio": now / before,
                         "rounds": added["rounds"]})
        return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.guardrail_paired")
    parser.add_argument("--against", default="main", help="the git ref to compare with")
    parser.add_argument("--quick", action="store_true", help="a 100 KB export, fewer pairs")
    args = parser.parse_args(argv)
    for row in run(args.against, args.quick):
        print(f"{row['variant']:<38} {row['chars']:>9,} chars  {args.against}: "
              f"{row['baseline_us']:>12,.0f} us  this tree: {row['this_us']:>12,.0f} us  "
              f"ratio {row['ratio']:.2f}  ({row['rounds']} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
