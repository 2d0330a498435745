"""Fifty concurrent calls share one budget: none overruns it, and none fails while money held
by the calls in flight would have come back.

Each call reserves its worst case before it is sent. When only those reservations keep a call
from fitting, it waits (up to `budget_wait_s`) for calls in flight to settle, instead of
stopping; it is stopped only once what is spent leaves no room for it. With the model pool of
examples/cascadeflow.toml, calls made when less than a fifth of the budget is left switch to a
cheaper model (`budget_pressure`).
Run: python examples/concurrent_budget.py
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import cascadeflow
import litellm
from cascadeflow.testing import serve

PROMPT = "Summarise this order history for the support agent.\n" + "order line item " * 400


async def main() -> None:
    cascadeflow.init(mode="enforce", budget_wait_s=10,
                     config=Path(__file__).with_name("cascadeflow.toml"))  # the model pool
    with serve() as provider:
        async def ask() -> str:
            response = await litellm.acompletion(
                model="openai/gpt-4o", api_base=provider.url, api_key="example-key", max_tokens=200,
                messages=[{"role": "user", "content": PROMPT}])
            return str(response.choices[0].message.content)

        async with cascadeflow.run(budget=0.05) as session:
            results = await asyncio.gather(*(ask() for _ in range(50)), return_exceptions=True)
    answered = sum(1 for r in results if isinstance(r, str))
    stopped = sum(1 for r in results if isinstance(r, cascadeflow.BudgetExceeded))
    switched = sum(1 for e in session.trace() if e["reason"] == "budget_pressure")
    spent = session.summary()["cost_total"]
    print(f"answered {answered} ({switched} on a cheaper model), stopped {stopped}; "
          f"spent {spent:.4f} of 0.05 USD")
    assert spent <= 0.05
    cascadeflow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
