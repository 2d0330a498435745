"""The rollout guide, stage by stage, as written, on the built-in provider (no API keys).

Stages 1-2 observe, stages 3-5 enforce; each prints what it would show in production.
Run: python examples/rollout_guide.py
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

os.environ.setdefault("CASCADEFLOW_CONFIG", str(Path(__file__).with_name("cascadeflow.toml")))

import cascadeflow
from cascadeflow.testing import serve
from support import Agent, Llm

metrics: dict[str, float] = {}


def log_metric(name: str, value: float) -> None:
    metrics[name] = value


async def stage_1(agent: Agent, query: str) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        await agent.run(query)
        summary = session.summary()

        # Log these to your monitoring system
        log_metric("cascadeflow.cost", summary['cost_total'])
        log_metric("cascadeflow.steps", summary['steps'])
        log_metric("cascadeflow.latency", summary['latency_total_ms'])
    print(f"stage 1: {metrics}")


async def stage_2(agent: Agent, query: str) -> None:
    cascadeflow.init(mode="observe")

    with cascadeflow.run(budget=0.50, compliance="gdpr") as session:
        await agent.run(query)

        # Check what would have happened under enforcement
        violations = [r for r in session.trace() if r['action'] in ('stop', 'switch_model', 'deny_tool')]
        print(f"Would-be enforcement actions: {len(violations)}")
        for v in violations:
            print(f"  Step {v['step']}: {v['action']} — {v['reason']}")


async def stage_3(agent: Agent, query: str) -> None:
    cascadeflow.init(mode="enforce")

    # Start with budget only — generous cap
    with cascadeflow.run(budget=5.00) as session:
        await agent.run(query)
    print(f"stage 3: {session.summary()['steps']} steps, stopped={session.summary()['stopped']}")


async def stage_4(agent: Agent, query: str) -> None:
    # Week 2: Tighter budget + tool call cap
    with cascadeflow.run(budget=1.00, max_tool_calls=10) as session:
        await agent.run(query)

    # Week 3: Add compliance
    with cascadeflow.run(budget=1.00, max_tool_calls=10, compliance="gdpr") as session:
        await agent.run(query)
    print(f"stage 4, week 3: {[(e['action'], e['model']) for e in session.trace()]}")

    # Week 4: Add KPI optimization
    with cascadeflow.run(
        budget=1.00,
        max_tool_calls=10,
        compliance="gdpr",
        kpi_weights={"quality": 0.6, "cost": 0.3, "latency": 0.1},
    ) as session:
        await agent.run(query)
    print(f"stage 4, week 4: {[(e['action'], e['reason'], e['model']) for e in session.trace()]}")


def stage_5(llm: Llm) -> tuple[object, object]:
    @cascadeflow.agent(budget=0.10, kpi_weights={"cost": 0.9, "quality": 0.1})
    async def triage_agent(query):  # type: ignore[no-untyped-def]
        return await llm.complete(query)

    @cascadeflow.agent(budget=2.00, compliance="hipaa", kpi_weights={"quality": 0.9, "cost": 0.1})
    async def medical_agent(query):  # type: ignore[no-untyped-def]
        return await llm.complete(query)

    return triage_agent, medical_agent


async def main() -> None:
    query = "I was charged twice for my subscription"
    with serve() as provider:
        llm = Llm(provider.url)
        agent = Agent(llm)
        await stage_1(agent, query)
        await stage_2(agent, query)
        await stage_3(agent, query)
        await stage_4(agent, query)
        triage_agent, medical_agent = stage_5(llm)
        with cascadeflow.run() as session:
            await triage_agent(query)  # type: ignore[operator]
            try:
                await medical_agent(query)  # type: ignore[operator]
            except cascadeflow.ComplianceViolation as stop:
                # no configured model is tagged hipaa: enforce refuses to send the call at all
                print(f"stage 5: medical_agent stopped: {stop.reason}")
        print(f"stage 5: {[(e['agent'], e['action'], e['reason']) for e in session.trace()]}")
        requests = len(provider.requests)

    # Environment-driven mode: the same code in every environment
    for mode in ("off", "observe", "enforce"):
        os.environ["CASCADEFLOW_MODE"] = mode
        report = cascadeflow.init(mode=os.getenv("CASCADEFLOW_MODE", "observe"))
        print(f"CASCADEFLOW_MODE={mode}: mode={report.mode} instrumented={report.instrumented}")
    del os.environ["CASCADEFLOW_MODE"]
    cascadeflow.shutdown()
    print(f"provider served {requests} requests")


if __name__ == "__main__":
    asyncio.run(main())
