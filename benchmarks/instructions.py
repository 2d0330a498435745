"""Instructions cascadeflow's own code adds per call, counted by valgrind's callgrind.

An instruction count does not depend on what else the machine is doing, so it is the figure to
compare across runs and machines. A child process runs under callgrind with collection off;
a ten-line C helper (built here with gcc against valgrind's `callgrind.h`) switches it on around
each measured loop and dumps the count under the variant's name. Each loop makes `n` calls of
the litellm interceptor around a stub that returns a prebuilt response (no litellm, no HTTP:
litellm's import alone takes minutes under valgrind), so the count is cascadeflow's own work
per step on the caller's thread; the background's share is counted apart, by a window on the
worker around the flush that lets it write those steps, and one on the telemetry worker around
the spans and metrics it then builds.

    python -m benchmarks.instructions          # prints the rows (needs valgrind and gcc)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HELPER = r"""
#include <valgrind/callgrind.h>
void cf_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_TOGGLE_COLLECT; }
void cf_stop(const char *name) { CALLGRIND_TOGGLE_COLLECT; CALLGRIND_DUMP_STATS_AT(name); }
"""
HEADER = Path("/usr/include/valgrind/callgrind.h")
BENCHMARK = "instructions added per call (callgrind, stubbed response)"
Row = dict[str, Any]


def available() -> str | None:
    """Why the count cannot be taken here, or None when it can."""
    for tool in ("valgrind", "gcc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not HEADER.is_file():
        return f"{HEADER} is missing (Debian: apt-get install valgrind)"
    return None


def run(quick: bool, n: int | None = None) -> list[Row]:
    """The rows; skipped in the quick suite (python under callgrind takes a minute to start)."""
    if quick:
        return [{"benchmark": BENCHMARK, "variant": "skipped in the quick suite"}]
    missing = available()
    if missing is not None:
        return [{"benchmark": BENCHMARK, "variant": f"skipped: {missing}"}]
    calls = n or (50 if quick else 300)
    with tempfile.TemporaryDirectory(prefix="cascadeflow-callgrind-") as folder:
        out = Path(folder)
        (out / "helper.c").write_text(HELPER)
        lib = out / "libhelper.so"
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(out / "helper.c")],
                       check=True, capture_output=True)
        child = subprocess.run(["valgrind", "--tool=callgrind", "--collect-atstart=no",
                                f"--callgrind-out-file={out}/cg.%p", sys.executable, "-m",
                                "benchmarks.instructions", "--child", str(lib), str(calls)],
                               capture_output=True, text=True, timeout=1800)
        if child.returncode != 0:
            raise RuntimeError(f"the callgrind child failed:\n{child.stderr[-3000:]}")
        counts = _dumps(out)
    base = counts.pop("stub alone")
    rows = []
    for name, total in counts.items():
        if name.endswith((": worker", ": telemetry")):
            continue
        background = counts.get(f"{name}: worker", 0) + counts.get(f"{name}: telemetry", 0)
        rows.append({"benchmark": BENCHMARK, "variant": name,
                     "instructions": (total - base) / calls,
                     "worker_instructions": background / calls, "n": calls})
    return rows


def _dumps(folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for dump in folder.glob("cg.*"):
        text = dump.read_text(errors="replace")
        name = re.search(r"^desc: Trigger: Client Request: (.*)$", text, re.M)
        total = re.search(r"^summary: (\d+)$", text, re.M)
        if name and total:
            counts[name.group(1)] = int(total.group(1))
    return counts


def _held(inside: Any, gate: Any) -> None:
    """A worker's task that says it is running, then waits for the gate (threading.Events)."""
    inside.set()
    gate.wait()


def _child(lib_path: str, calls: int) -> None:
    """Runs under callgrind: each variant's loop between cf_start and cf_stop."""
    import contextlib
    import ctypes
    import gc
    import os
    import threading

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import cascadeflow
    from cascadeflow.interceptors import base
    from cascadeflow.interceptors import litellm as adapter
    from cascadeflow.worker import shared, telemetry
    from openai.types.chat import ChatCompletion

    from benchmarks.common import BUDGET_KPI, ENFORCE_RUN, config_file, sample_text, telemetry_providers

    helper = ctypes.CDLL(lib_path)
    config = config_file()
    response = ChatCompletion.model_validate({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "billing"}}],
        "usage": {"prompt_tokens": 520, "completion_tokens": 2, "total_tokens": 522}})

    def stub(**_kwargs: Any) -> Any:
        return response

    wrapped = base.sync_wrapper(stub, adapter._adapter("chat", ("model", "messages")), "chat", "litellm")
    messages = [{"role": "system", "content": "You classify support tickets."},
                {"role": "user", "content": sample_text(2_000)}]
    worker, spans = shared(), telemetry()
    worker.help_at = spans.help_at = 10**9  # the caller never runs the queues itself: both are held

    def loop(fn: Any) -> None:
        for _ in range(calls):
            fn(model="openai/gpt-4o-mini", messages=messages, mock_response="billing")

    def measure(name: str, fn: Any) -> None:
        loop(fn)  # warm-up: caches, memos, first-use imports
        cascadeflow.flush()
        # The collector is off while the loop is counted: with the worker held, every step's
        # objects stay alive until the loop ends, and the collections that provokes (the
        # full ones walk every object of the process) are an artifact of holding the worker;
        # whichever variant they fell into was billed 10,000s of instructions a call.
        gc.collect()
        gc.disable()
        # Both workers wait while the caller's loop is counted; then the worker counts its own,
        # then the telemetry worker (the spans and metrics the worker handed it). Each window
        # follows the one before: a thread that woke up meanwhile (the telemetry worker polls its
        # queue) would take the interpreter from the counted one and add to its count.
        # Each worker must be inside its gate before the count starts: a worker still asleep
        # has every `submit` of the loop wake it (an Event.set on the caller), which billed the
        # caller ~14,000 instructions a call in some runs and not in others.
        gate, spans_gate = threading.Event(), threading.Event()
        inside, spans_inside = threading.Event(), threading.Event()
        worker.submit(_held, inside, gate)
        worker.submit(helper.cf_start)
        spans.submit(_held, spans_inside, spans_gate)
        spans.submit(helper.cf_start)
        inside.wait()
        spans_inside.wait()
        helper.cf_start()
        loop(fn)
        helper.cf_stop(name.encode())
        gc.enable()
        worker.submit(helper.cf_stop, f"{name}: worker".encode())
        worker.submit(spans.submit, helper.cf_stop, f"{name}: telemetry".encode())
        worker.submit(spans_gate.set)
        gate.set()
        cascadeflow.flush()

    measure("stub alone", stub)
    for name, mode, run_kwargs, otel in (
            ("observe, bare run()", "observe", {}, False),
            ("observe, run(budget, kpi)", "observe", BUDGET_KPI, False),
            ("enforce (budget+compliance+kpi)", "enforce", ENFORCE_RUN, False),
            ("enforce + default guardrails", "enforce", {**ENFORCE_RUN, "guardrails": "default"}, False),
            ("enforce + OpenTelemetry (batch)", "enforce", ENFORCE_RUN, True)):
        # the batch span processor's thread exists only for its own variant: a thread waking up
        # under callgrind takes the GIL from the loop and adds switches to its count
        providers = dict(zip(("tracer_provider", "meter_provider"), telemetry_providers(),
                             strict=True)) if otel else {}
        cascadeflow.init(mode=mode, config=config, instrument=(), **providers)
        base.set_active(frozenset({"litellm"}))  # the stub's wrapper intercepts; nothing is patched
        with contextlib.ExitStack() as stack:
            stack.enter_context(cascadeflow.run(**run_kwargs))
            measure(name, wrapped)
        cascadeflow.shutdown()
        for provider in providers.values():
            provider.shutdown()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], int(sys.argv[3]))
    else:
        for row in run(quick="--quick" in sys.argv):
            print(row)
