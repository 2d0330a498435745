"""Calls from worker threads count in the session that submitted them.

`asyncio.to_thread` copies the context by itself. A plain thread pool does not: submit through
`contextvars.copy_context().run` so each task carries the submitter's session.
Run: python examples/thread_pool.py
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor

import cascadeflow
import litellm
from cascadeflow.testing import serve


def classify(api_base: str, text: str) -> str:
    response = litellm.completion(model="openai/gpt-4o-mini", api_base=api_base, api_key="example-key",
                                  messages=[{"role": "user", "content": f"Classify: {text}"}])
    return str(response.choices[0].message.content)


def main() -> None:
    cascadeflow.init(mode="observe")
    tickets = ["refund please", "cannot log in", "charged twice", "change my plan"]
    with serve() as provider, cascadeflow.run() as session, ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(contextvars.copy_context().run, classify, provider.url, t)
                   for t in tickets]
        answers = [f.result() for f in futures]
    print(f"{len(answers)} answers, session steps: {session.summary()['steps']}")
    cascadeflow.shutdown()


if __name__ == "__main__":
    main()
