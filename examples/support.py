"""A tiny agent for the examples: one litellm call per `run`, against the built-in provider."""

from __future__ import annotations

from typing import Any

import litellm


class Llm:
    """The model client the agent was written with; it knows nothing about cascadeflow."""

    def __init__(self, api_base: str, model: str = "openai/gpt-4o") -> None:
        self.api_base = api_base
        self.model = model

    async def complete(self, query: str) -> str:
        response = await litellm.acompletion(
            model=self.model, messages=[{"role": "user", "content": query}],
            api_base=self.api_base, api_key="example-key", max_tokens=100)
        return str(response.choices[0].message.content)


class Agent:
    """Classifies and answers: two model calls, the second offering a tool."""

    def __init__(self, llm: Llm) -> None:
        self.llm = llm

    async def run(self, query: str) -> Any:
        category = await self.llm.complete(f"Classify: {query}")
        return await self.llm.complete(f"Answer this {category[:20]} ticket: {query}")
