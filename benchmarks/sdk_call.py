"""What a runtime adds to one openai SDK chat call, measured the same way whichever runtime it is.

    python benchmarks/sdk_call.py --runtime cascadeflow --url http://127.0.0.1:PORT/v1
    python benchmarks/sdk_call.py --runtime peer --url ...     # in the peer's own venv

Run as a script (not `-m`): its folder goes first on `sys.path`, so it imports `harness` and
`common` from there and `cascadeflow` from the environment it runs in, which for the peer is a
throw-away venv holding the unrelated `cascadeflow` of PyPI. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import cascadeflow
import openai
from common import BUDGET_KPI, ENFORCE_RUN, MESSAGES, config_file, telemetry_providers
from harness import Call, Variant, paired


def _original(create: Any) -> Any:
    return getattr(create, "__wrapped__", create)


def _variants(client: Any, setups: dict[str, Callable[[], contextlib.AbstractContextManager[Any]]]
              ) -> dict[str, Variant]:
    completions = client.chat.completions

    def call(fn: Any) -> Any:
        return fn(completions, model="gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    def variant(setup: Callable[[], contextlib.AbstractContextManager[Any]]) -> Variant:
        @contextlib.contextmanager
        def enter() -> Iterator[tuple[Call, Call]]:
            with setup():
                create = type(completions).create
                original = _original(create)
                yield (lambda: call(original)), (lambda: call(create))

        return enter

    return {name: variant(setup) for name, setup in setups.items()}


def _ours() -> dict[str, Callable[[], contextlib.AbstractContextManager[Any]]]:
    config = config_file()
    tracer_provider, meter_provider = telemetry_providers()

    def setup(mode: str, run: dict[str, Any], **init: Any) -> Callable[[], Any]:
        @contextlib.contextmanager
        def enter() -> Iterator[None]:
            cascadeflow.init(mode=mode, config=config, **init)
            with cascadeflow.run(**run):
                yield
            cascadeflow.init(mode="off")

        return enter

    return {"observe, bare run()": setup("observe", {}),
            "enforce (budget+compliance+kpi)": setup("enforce", ENFORCE_RUN),
            "enforce + default guardrails": setup("enforce", {**ENFORCE_RUN, "guardrails": "default"}),
            "enforce + OpenTelemetry (batch)": setup("enforce", ENFORCE_RUN, tracer_provider=tracer_provider,
                                                     meter_provider=meter_provider)}


def _peer() -> dict[str, Callable[[], contextlib.AbstractContextManager[Any]]]:
    """The peer's harness API: `init(mode=...)`, `run(budget=..., compliance=..., kpi_weights=...)`."""

    def setup(mode: str, run: dict[str, Any]) -> Callable[[], Any]:
        @contextlib.contextmanager
        def enter() -> Iterator[None]:
            cascadeflow.init(mode=mode)
            with cascadeflow.run(**run):
                yield
            cascadeflow.init(mode="off")

        return enter

    return {"observe, bare run()": setup("observe", {}),
            "enforce (budget+compliance+kpi)": setup("enforce", {**BUDGET_KPI, "compliance": "gdpr"})}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", choices=("cascadeflow", "peer"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=60)
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.url, api_key="bench-key", max_retries=0)
    setups = _ours() if args.runtime == "cascadeflow" else _peer()
    settle = getattr(cascadeflow, "flush", lambda: None)  # the peer has no background writer
    results = paired(_variants(client, setups), args.rounds, args.pairs, settle=settle)
    json.dump({"runtime": args.runtime, "version": getattr(cascadeflow, "__version__", "?"),
               "rows": {name: added.row() for name, added in results.items()}}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
