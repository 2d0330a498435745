"""One process of the multi-process ledger tests (`run`, in a child of a fork server that
imported litellm once; or `python -m tests.ledger_procs SPEC_JSON` by hand).

It runs cascadeflow from a config file, makes concurrent litellm calls for one user from several
threads (in phases, each at a frozen clock when given, the processes meeting at a barrier of
files between phases), then prints one JSON line: what was answered and stopped per phase, the
alerts, and the state of every circuit breaker it used.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cascadeflow
import litellm
from cascadeflow.breakers import breakers
from cascadeflow.pipeline import shared

KEY = "sk-test-not-a-real-key-0000"


def _phase(spec: dict[str, Any]) -> dict[str, Any]:
    outcomes: list[str] = []
    endpoint = {"api_base": spec["api_base"], "api_key": KEY} if spec.get("api_base") else {}
    lock = threading.Lock()
    start = threading.Barrier(spec["threads"])

    def worker() -> None:
        start.wait()
        for _ in range(spec["calls"]):
            try:
                with cascadeflow.run(user=spec["user"]):
                    litellm.completion(model=spec["model"], messages=[
                        {"role": "user", "content": spec["prompt"]}], max_tokens=spec["max_tokens"],
                        **endpoint)
                outcome = "ok"
            except cascadeflow.PolicyStop as exc:
                outcome = f"{type(exc).__name__}:{exc.reason}"
            except Exception as exc:
                outcome = f"error:{type(exc).__name__}:{exc}"
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(spec["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return dict(Counter(outcomes))


def _barrier(folder: str, phase: int, procs: int, me: str) -> None:
    """Wait (a minute at most) until every process has finished `phase`."""
    Path(folder, f"{phase}-{me}").touch()
    deadline = time.monotonic() + 60
    while len(list(Path(folder).glob(f"{phase}-*"))) < procs and time.monotonic() < deadline:
        time.sleep(0.02)


def main(spec: dict[str, Any]) -> dict[str, Any]:
    os.environ["CF_TEST_KEY"] = KEY  # the config's tiers name it
    alerts: list[Any] = []
    cascadeflow.init(config=spec["config"], alerts=[alerts.append])
    phases = []
    for number, clock in enumerate(spec.get("clocks") or [None]):
        if clock is not None:  # every process decides at this same instant: a controlled window
            shared.time = SimpleNamespace(time=lambda at=clock: at)  # type: ignore[assignment]
        phases.append(_phase(spec))
        if spec.get("barrier"):
            _barrier(spec["barrier"], number, spec["procs"], spec["me"])
    states = {key: breaker.state for key, breaker in breakers._breakers.items()}
    store = type(breakers.store).__name__
    cascadeflow.shutdown()
    return {"phases": phases, "alerts": [a.kind for a in alerts], "breakers": states,
            "breaker_store": store}


def run(spec: dict[str, Any], out: str) -> None:
    """`main`, its report written to the file `out`."""
    Path(out).write_text(json.dumps(main(spec)))


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
