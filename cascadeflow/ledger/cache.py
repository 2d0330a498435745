"""Prompt-cache hit rate per agent and model, and an alert when it drops sharply.

A provider's prompt cache bills cached input tokens at a fraction of the price, so a prompt
change that breaks the cacheable prefix (a timestamp in the system prompt, reordered tools) can
multiply the input bill without any error. The hit rate is cached / input tokens over blocks of
`block` calls that have a cacheable prefix (system messages or tools); a block whose rate falls
below `drop` times the previous block's (which had at least `floor`) raises one alert.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cascadeflow.alert import Alert
from cascadeflow.ledger.events import UsageEvent


@dataclass
class _Block:
    calls: int = 0
    cached: int = 0
    tokens: int = 0
    previous: float | None = None  # the last full block's hit rate
    prefixes: int = 0  # distinct prefix hashes seen in this block
    last_prefix: str | None = None


class CacheWatch:
    def __init__(self, alert: Callable[[Alert], None], block: int = 50, drop: float = 0.5,
                 floor: float = 0.2) -> None:
        self._alert = alert
        self.block, self.drop, self.floor = block, drop, floor
        self._blocks: dict[tuple[str | None, str | None], _Block] = {}
        self.rates: dict[tuple[str | None, str | None], float] = {}  # last full block's rate

    def observe(self, events: Sequence[UsageEvent]) -> None:
        for event in events:
            if event.prefix_hash is None or not event.tokens_in:
                continue
            key = (event.agent, event.model)
            block = self._blocks.setdefault(key, _Block())
            block.calls += 1
            block.cached += event.cached_tokens
            block.tokens += event.tokens_in
            if event.prefix_hash != block.last_prefix:
                block.prefixes += 1
                block.last_prefix = event.prefix_hash
            if block.calls >= self.block:
                self._close(key, block)

    def _close(self, key: tuple[str | None, str | None], block: _Block) -> None:
        rate = block.cached / block.tokens
        before = block.previous
        self.rates[key] = rate
        if before is not None and before >= self.floor and rate < before * self.drop:
            agent, model = key
            self._alert(Alert("prompt_cache_drop", f"prompt-cache hit rate of {agent or 'calls'} on "
                              f"{model} fell from {before:.0%} to {rate:.0%} over the last "
                              f"{block.calls} calls ({block.prefixes} distinct prompt prefixes)",
                              attributes={"agent": agent, "model": model, "before": before,
                                          "rate": rate, "prefixes": block.prefixes}))
        self._blocks[key] = _Block(previous=rate, last_prefix=block.last_prefix)
