"""The report of a synthetic ledger: how long reading and rendering take, how large the HTML is,
and how long headless Chromium takes to load and lay it out (issue #16: under 2 s and under 5 MB
for 10,000 runs).

    python -m benchmarks.report [--runs 10000] [--browser chromium] [--out benchmarks/results/report.json]

The browser figure is measured inside the browser: a harness page (never the report itself,
which holds no script) loads the report in an iframe and reads the clock when the iframe has
loaded and its layout is forced, so the browser's own start-up is not in it. Chromium's wall
time for a screenshot of the report, and of a blank page, are given too.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from cascadeflow import report
from cascadeflow.testing.runs import write_synthetic_ledger

HARNESS = """<!doctype html><html><body><p id=out>pending</p><script>
const t0 = performance.now();
const frame = document.createElement("iframe");
frame.style.width = "1400px"; frame.style.height = "900px";
frame.onload = () => {
  const height = frame.contentDocument.documentElement.scrollHeight;  // forces layout
  document.getElementById("out").textContent = `RENDER_MS=${performance.now() - t0} HEIGHT=${height}`;
};
frame.src = "REPORT";
document.body.appendChild(frame);
</script></body></html>"""
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--allow-file-access-from-files"]


def _chromium(browser: str, args: list[str], page: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([browser, *FLAGS, *args, page.as_uri()], capture_output=True, text=True,
                          timeout=120)
    return time.perf_counter() - t0, done.stdout


def browser_figures(browser: str, page: Path, rounds: int = 3) -> dict[str, Any]:
    """In-browser load + layout time of `page` (median of `rounds`), and wall times."""
    folder = page.parent
    harness = folder / "harness.html"
    harness.write_text(HARNESS.replace("REPORT", page.name), encoding="utf-8")
    blank = folder / "blank.html"
    blank.write_text("<!doctype html><p>blank</p>", encoding="utf-8")
    inside: list[float] = []
    height = 0
    for _ in range(rounds):
        _wall, dom = _chromium(browser, ["--dump-dom"], harness)
        found = re.search(r"RENDER_MS=([\d.]+) HEIGHT=(\d+)", dom)
        if found is None:
            raise SystemExit(f"the harness page did not report a time:\n{dom[-2000:]}")
        inside.append(float(found[1]))
        height = int(found[2])
    walls = {name: min(_chromium(browser, ["--window-size=1400,4000",
                                           f"--screenshot={folder / name}.png"], p)[0]
                       for _ in range(rounds)) for name, p in (("report", page), ("blank", blank))}
    return {"load_and_layout_ms": sorted(inside)[len(inside) // 2], "page_height_px": height,
            "screenshot_wall_s": walls["report"], "blank_screenshot_wall_s": walls["blank"],
            "screenshot": str(folder / "report.png")}


def measure(runs: int, folder: Path, browser: str | None) -> dict[str, Any]:
    ledger = folder / "ledger.db"
    t0 = time.perf_counter()
    write_synthetic_ledger(ledger, runs)
    t1 = time.perf_counter()
    review = report.review([report.LedgerRuns(ledger)])
    t2 = time.perf_counter()
    html = report.render(review)
    t3 = time.perf_counter()
    page = folder / "report.html"
    page.write_text(html, encoding="utf-8")
    row: dict[str, Any] = {"runs": review.totals.runs, "steps": review.totals.steps,
                           "ledger_bytes": ledger.stat().st_size, "write_ledger_s": t1 - t0,
                           "read_and_review_s": t2 - t1, "render_html_s": t3 - t2,
                           "html_bytes": len(html.encode()), "report": str(page)}
    if browser is not None:
        row |= browser_figures(browser, page)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--browser", default=shutil.which("chromium") or shutil.which("chromium-browser"),
                        help="a Chromium binary (default: on PATH); --browser '' measures without one")
    parser.add_argument("--dir", type=Path, help="where the ledger, report and screenshot go "
                        "(default: a new temporary folder)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/report.json"))
    args = parser.parse_args(argv)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="cascadeflow-report-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    row = measure(args.runs, folder, args.browser or None)
    print(json.dumps(row, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
