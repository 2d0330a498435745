"""Agent frameworks inside `run()` in enforce mode: exact accounting and budget stops.

They are installed by the `frameworks` extra (`make test` installs it) and reach the built-in
provider over HTTP through the openai SDK, each by its own entry point: pydantic-ai through
`chat.completions.create`, the Agents SDK through `responses.with_streaming_response.create`,
LangChain's `with_structured_output` through `chat.completions.with_raw_response.parse`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import agents
import cascadeflow
import openai
import pydantic
import pytest
from langchain_openai import ChatOpenAI
from pydantic_ai import Agent
from pydantic_ai.exceptions import UnexpectedModelBehavior
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

KEY = "sk-test-not-a-real-key-0000"
agents.set_tracing_disabled(True)  # the Agents SDK would export its own traces to OpenAI


class Ticket(pydantic.BaseModel):
    order_id: str
    status: str


def _pydantic_agent(provider: Any) -> Agent[None, Ticket]:
    model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(base_url=provider.url, api_key=KEY))
    agent: Agent[None, Ticket] = Agent(model, output_type=Ticket, retries=1)

    @agent.tool_plain
    def lookup_order(order_id: str) -> str:
        """Where an order is."""
        return f"order {order_id} shipped yesterday"

    return agent


def _totals(session: Any) -> tuple[int, int]:
    entries = [e for e in session.trace() if e["status"] == "ok"]
    return sum(e["tokens_in"] for e in entries), sum(e["tokens_out"] for e in entries)


def test_pydantic_ai_structured_output_with_a_tool(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    agent = _pydantic_agent(provider)
    with cascadeflow.run(budget=1.0, max_tool_calls=1) as session:
        result = agent.run_sync("Where is order 42?")
    assert isinstance(result.output, Ticket)
    usage = result.usage
    assert _totals(session) == (usage.input_tokens, usage.output_tokens)  # exact accounting
    assert usage.requests == 2 and len(session.trace()) >= 2
    # the second request hit the tool cap: lookup_order was stripped, final_result kept
    second = provider.bodies("/chat/completions")[1]
    assert [t["function"]["name"] for t in second["tools"]] == ["final_result"]


def test_pydantic_ai_fails_when_its_output_tool_is_stripped(provider: Any) -> None:
    """What `tools_exempt` prevents: with it emptied, the cap strips final_result too."""
    cascadeflow.init(mode="enforce", tools_exempt=[])
    with cascadeflow.run(budget=1.0, max_tool_calls=1), pytest.raises(UnexpectedModelBehavior):
        _pydantic_agent(provider).run_sync("Where is order 42?")


def test_pydantic_ai_budget_stop(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=1e-9), pytest.raises(cascadeflow.BudgetExceeded):
        _pydantic_agent(provider).run_sync("Where is order 42?")
    assert provider.requests == []


def _triage(provider: Any) -> agents.Agent[Any]:
    client = openai.AsyncOpenAI(base_url=provider.url, api_key=KEY)
    return agents.Agent(name="triage", instructions="Answer the customer briefly.",
                        model=agents.OpenAIResponsesModel("gpt-4o-mini", openai_client=client))


def test_openai_agents_streamed_responses(provider: Any) -> None:
    cascadeflow.init(mode="enforce")

    async def main() -> tuple[Any, Any]:
        async with cascadeflow.run(budget=1.0) as session:
            result = agents.Runner.run_streamed(_triage(provider), "Where is order 42?")
            async for _ in result.stream_events():
                pass
        return session, result

    session, result = asyncio.run(main())
    assert "Reply from gpt-4o-mini" in str(result.final_output)
    (entry,) = session.trace()
    reported = result.raw_responses[0].usage
    assert (entry["tokens_in"], entry["tokens_out"]) == (reported.input_tokens, reported.output_tokens)
    assert entry["status"] == "ok" and entry["usage_estimated"] is False
    assert provider.requests[0].json["stream"] is True


def test_openai_agents_budget_stop(provider: Any) -> None:
    cascadeflow.init(mode="enforce")

    async def main() -> None:
        async with cascadeflow.run(budget=1e-9):
            result = agents.Runner.run_streamed(_triage(provider), "Where is order 42?")
            async for _ in result.stream_events():
                pass

    with pytest.raises(cascadeflow.BudgetExceeded):
        asyncio.run(main())
    assert provider.requests == []


def test_langchain_with_structured_output(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=provider.url, api_key=KEY)  # type: ignore[arg-type]
    structured = llm.with_structured_output(Ticket, include_raw=True)
    with cascadeflow.run(budget=1.0) as session:
        out = structured.invoke("Where is order 42?")
    assert isinstance(out["parsed"], Ticket)
    meta = out["raw"].usage_metadata
    (entry,) = session.trace()
    assert (entry["tokens_in"], entry["tokens_out"]) == (meta["input_tokens"], meta["output_tokens"])
    body = provider.bodies("/chat/completions")[0]
    assert body["response_format"]["type"] == "json_schema"
    with cascadeflow.run(budget=1e-9), pytest.raises(cascadeflow.BudgetExceeded):
        structured.invoke("Where is order 43?")
    assert len(provider.requests) == 1
