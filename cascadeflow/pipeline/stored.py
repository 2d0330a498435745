"""Input a provider holds: what a Responses call naming `previous_response_id` is billed again.

The provider bills the earlier response's whole chain (its input and its output) as input of the
next call, and the request does not carry it. Each Responses call this process settles leaves
its id and those tokens here, so the budget's worst case of the call that continues it counts
them (`Request.stored_tokens`); an id settled elsewhere stays unknown (docs/concepts.md).
"""

from __future__ import annotations

import threading

STORED_IDS = 10_000  # the most recent response ids remembered


class StoredInputs:
    """Response id -> the tokens a call continuing it is billed as input; bounded, oldest out."""

    def __init__(self, size: int = STORED_IDS) -> None:
        self._tokens: dict[str, int] = {}
        self._size = size
        self._lock = threading.Lock()

    def settled(self, response_id: str, tokens: int) -> None:
        with self._lock:
            if response_id not in self._tokens and len(self._tokens) >= self._size:
                del self._tokens[next(iter(self._tokens))]
            self._tokens[response_id] = tokens

    def get(self, response_id: str) -> int | None:
        return self._tokens.get(response_id)
