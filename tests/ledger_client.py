"""A worker process of the ledger tests: calls the built-in provider under one user's budget.

    python ledger_client.py CONFIG URL USER burst N   N concurrent calls; prints one JSON line of
                                                      outcomes at the end
    python ledger_client.py CONFIG URL USER loop      calls one after another until stopped,
                                                      printing each once it is in the ledger
"""

from __future__ import annotations

import json
import sys
import threading

import cascadeflow
import openai

KEY = "sk-test-not-a-real-key-0000"


def main() -> None:
    config, url, user, how = sys.argv[1:5]
    cascadeflow.init(mode="enforce", config=config, instrument=["openai"])  # litellm: seconds to import
    client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
    outcomes: list[str] = []

    def call() -> None:
        try:
            with cascadeflow.run(user=user):
                client.chat.completions.create(model="gpt-4o-mini", max_tokens=40,
                                               messages=[{"role": "user", "content": "count me"}])
            outcomes.append("ok")
        except cascadeflow.PolicyStop as exc:
            outcomes.append(exc.reason)

    if how == "burst":
        threads = [threading.Thread(target=call) for _ in range(int(sys.argv[5]))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        cascadeflow.shutdown()
        print(json.dumps(outcomes), flush=True)
        return
    while not outcomes or outcomes[-1] == "ok":
        call()
        cascadeflow.flush()  # committed to the ledger before it is reported
        print(outcomes[-1], flush=True)


if __name__ == "__main__":
    main()
