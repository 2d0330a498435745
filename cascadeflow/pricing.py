"""Prices per token from litellm's model map, with overrides from `[models]` in the config.

The map is read from the JSON file litellm ships (or from `litellm.model_cost` once litellm is
imported, so models registered with `litellm.register_model` count), never fetched. A model
with no known price gets `None`: costs are never guessed.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeGuard

from cascadeflow.config import ModelSpec

DEFAULT_MAX_OUTPUT = 4096  # assumed when neither the request nor the price map bounds the answer


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token."""

    input: float
    output: float
    cache_read: float | None = None
    max_output_tokens: int | None = None
    max_input_tokens: int | None = None  # the context window: no prompt is billed beyond it
    cache_write: float | None = None  # writing the prompt cache (Anthropic: 1.25x the input price)
    # Long-context tiers, lowest threshold first: a prompt of more than `threshold` tokens is
    # billed at the tier's prices, all of its tokens and its answer (litellm's map:
    # `input_cost_per_token_above_200k_tokens`, ...: Gemini 2.5 Pro, gpt-5.4)
    tiers: tuple[Tier, ...] = ()
    audio_input: float | None = None  # audio tokens of the prompt (`input_cost_per_audio_token`)
    audio_output: float | None = None  # audio tokens of the answer (`output_cost_per_audio_token`)
    # prices of the service tiers the map prices apart (OpenAI's `service_tier="priority"`,
    # `"flex"`): (name, price)
    service_tiers: tuple[tuple[str, Price], ...] = ()

    def for_tier(self, service_tier: Any) -> Price:
        """The prices of a call served at `service_tier` (as the response reports it, or the
        request asks for it); these when the map has none for it."""
        if self.service_tiers and isinstance(service_tier, str):
            for name, price in self.service_tiers:
                if name == service_tier:
                    return price
        return self

    def at(self, tokens_in: float) -> Price:
        """The prices a prompt of `tokens_in` tokens is billed at (its long-context tier's)."""
        found = self
        for tier in self.tiers:
            if tokens_in > tier.threshold:
                found = Price(tier.input, tier.output,
                              self.cache_read if tier.cache_read is None else tier.cache_read,
                              self.max_output_tokens, self.max_input_tokens,
                              self.cache_write if tier.cache_write is None else tier.cache_write,
                              (), self.audio_input, self.audio_output)
        return found

    @property
    def input_bound(self) -> float:
        """The most one input token can cost: a prompt may be written to the cache whole, or
        be audio (at these prices: `at(tokens).input_bound` for a prompt of up to `tokens`)."""
        return max(self.input, self.cache_write or 0.0, self.audio_input or 0.0)

    @property
    def output_bound(self) -> float:
        """The most one output token can cost: an answer may be audio."""
        return max(self.output, self.audio_output or 0.0)

    def output_limit(self, max_tokens: int | None) -> int:
        """The most one choice may answer: `max_tokens`, else the model's output limit."""
        return max_tokens or self.max_output_tokens or DEFAULT_MAX_OUTPUT

    def most(self, max_tokens: int | None, choices: Any = 1, inputs: int = 1) -> float | None:
        """The most one call can cost: a full context window in for each of its `inputs` (an
        embeddings batch), `max_tokens` (or the model's output limit) out for each of `n`
        choices. None when the context window is unknown."""
        if self.max_input_tokens is None:
            return None
        max_out = self.output_limit(max_tokens)
        n = choices if isinstance(choices, int) and choices > 1 else 1
        rated = self.at(self.max_input_tokens)
        return self.max_input_tokens * max(inputs, 1) * max(self.input_bound, rated.input_bound) \
            + n * max_out * max(self.output_bound, rated.output_bound)

    def cost(self, tokens_in: int, tokens_out: int, cached: int = 0, written: int = 0,
             audio_in: int = 0, audio_out: int = 0) -> float:
        """Cost of a call; of the input tokens, `cached` ones were read from the prompt cache and
        `written` ones written to it, and `audio_in` (of the output, `audio_out`) were audio,
        each at its own price when the map has one; a prompt longer than a long-context tier's
        threshold at that tier's prices."""
        if self.tiers:
            rated = self.at(tokens_in)
            if rated is not self:
                return rated.cost(tokens_in, tokens_out, cached, written, audio_in, audio_out)
        if audio_in > 0 or audio_out > 0:
            audio_in = min(audio_in, max(tokens_in - max(cached, 0) - max(written, 0), 0))
            audio_out = min(max(audio_out, 0), tokens_out)
            return self.cost(tokens_in - audio_in, tokens_out - audio_out, cached, written) \
                + audio_in * (self.input if self.audio_input is None else self.audio_input) \
                + audio_out * (self.output if self.audio_output is None else self.audio_output)
        if cached <= 0 and written <= 0:
            return tokens_in * self.input + tokens_out * self.output
        cached = min(max(cached, 0), tokens_in)
        written = min(max(written, 0), tokens_in - cached)
        read_price = self.input if self.cache_read is None else self.cache_read
        write_price = self.input if self.cache_write is None else self.cache_write
        return ((tokens_in - cached - written) * self.input + cached * read_price + written * write_price
                + tokens_out * self.output)


@dataclass(frozen=True, slots=True)
class Tier:
    """Prices for prompts of more than `threshold` tokens; None: the base price."""

    threshold: float
    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None


_TIER_KEY = re.compile(r"^input_cost_per_token_above_(\d+(?:\.\d+)?)(k?)_tokens(_priority|_flex)?$")
SERVICE_TIERS = ("priority", "flex")  # the service tiers litellm's map prices apart


def _tiers(entry: Mapping[str, Any], inp: float, out: float, suffix: str = "") -> tuple[Tier, ...]:
    """The long-context tiers of a map entry (of a service tier: `suffix` `_priority`),
    lowest threshold first."""
    found = []
    for key, value in entry.items():
        match = _TIER_KEY.match(key) if isinstance(key, str) else None
        if match is None or not _number(value) or (match.group(3) or "") != suffix:
            continue
        label = match.group(1) + match.group(2)
        threshold = float(match.group(1)) * (1000 if match.group(2) else 1)
        tier_out = entry.get(f"output_cost_per_token_above_{label}_tokens{suffix}")
        read = entry.get(f"cache_read_input_token_cost_above_{label}_tokens{suffix}")
        write = entry.get(f"cache_creation_input_token_cost_above_{label}_tokens{suffix}")
        found.append(Tier(threshold, float(value), float(tier_out) if _number(tier_out) else out,
                          float(read) if _number(read) else None,
                          float(write) if _number(write) else None))
    return tuple(sorted(found, key=lambda t: t.threshold))


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


_lock = threading.Lock()
_file_map: dict[str, Any] | None = None


def _model_map() -> Mapping[str, Any]:
    litellm = sys.modules.get("litellm")
    live = getattr(litellm, "model_cost", None) if litellm is not None else None
    if isinstance(live, dict) and live:
        return live
    global _file_map
    if _file_map is None:
        with _lock:
            if _file_map is None:
                _file_map = _read_bundled_map()
    return _file_map


def _read_bundled_map() -> dict[str, Any]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / "model_prices_and_context_window_backup.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data


def _candidates(model: str, provider: str | None) -> list[str]:
    keys = [model]
    bare = model.split("/", 1)[1] if "/" in model else model
    if provider:
        keys.append(f"{provider}/{bare}")
    keys.append(bare)
    return keys


class PriceBook:
    """Resolves a model to a `Price`, caching the answer per (model, provider)."""

    def __init__(self, overrides: Mapping[str, ModelSpec] | None = None) -> None:
        self._overrides = dict(overrides or {})
        self._cache: dict[tuple[str, str | None], Price | None] = {}

    def price(self, model: str, provider: str | None = None) -> Price | None:
        key = (model, provider)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._lookup(model, provider)
        self._cache[key] = found
        return found

    def _lookup(self, model: str, provider: str | None) -> Price | None:
        keys = _candidates(model, provider)
        table = _model_map()
        entry: Mapping[str, Any] = next((table[k] for k in keys if isinstance(table.get(k), dict)), {})
        spec = next((self._overrides[k] for k in keys if k in self._overrides), None)
        inp = spec.input_cost_per_token if spec and spec.input_cost_per_token is not None \
            else entry.get("input_cost_per_token")
        out = spec.output_cost_per_token if spec and spec.output_cost_per_token is not None \
            else entry.get("output_cost_per_token")
        if inp is None:
            return None
        cache_read = spec.cache_read_input_token_cost if spec and spec.cache_read_input_token_cost \
            is not None else entry.get("cache_read_input_token_cost")
        max_out = spec.max_output_tokens if spec and spec.max_output_tokens else \
            entry.get("max_output_tokens")
        max_in = entry.get("max_input_tokens")
        cache_write = spec.cache_creation_input_token_cost if spec and \
            spec.cache_creation_input_token_cost is not None else entry.get("cache_creation_input_token_cost")
        overridden = spec is not None and (spec.input_cost_per_token is not None
                                           or spec.output_cost_per_token is not None)
        # (a price set in the config is the price: the map's tiers are of the map's prices)
        tiers = () if overridden else _tiers(entry, float(inp), float(out or 0.0))
        audio_in = None if overridden else entry.get("input_cost_per_audio_token")
        audio_out = None if overridden else entry.get("output_cost_per_audio_token")
        base = Price(float(inp), float(out or 0.0), None if cache_read is None else float(cache_read),
                     int(max_out) if isinstance(max_out, int | float) else None,
                     int(max_in) if isinstance(max_in, int | float) else None,
                     float(cache_write) if isinstance(cache_write, int | float) else None, tiers,
                     float(audio_in) if _number(audio_in) else None,
                     float(audio_out) if _number(audio_out) else None)
        if overridden:
            return base
        served = tuple((name, found) for name in SERVICE_TIERS
                       if (found := _service_tier(entry, base, name)) is not None)
        return replace(base, service_tiers=served) if served else base

    def provider_of(self, model: str) -> str | None:
        """The provider litellm's map names for a model without a provider prefix."""
        entry = _model_map().get(model)
        return entry.get("litellm_provider") if isinstance(entry, dict) else None


def _service_tier(entry: Mapping[str, Any], base: Price, name: str) -> Price | None:
    """The prices of service tier `name` (`input_cost_per_token_priority`, ...), each falling
    back to the standard one; None when the map prices no input for it."""
    inp = entry.get(f"input_cost_per_token_{name}")
    if not _number(inp):
        return None
    out = entry.get(f"output_cost_per_token_{name}")
    read = entry.get(f"cache_read_input_token_cost_{name}")
    write = entry.get(f"cache_creation_input_token_cost_{name}")
    output = float(out) if _number(out) else base.output
    return replace(base, input=float(inp), output=output,
                   cache_read=float(read) if _number(read) else base.cache_read,
                   cache_write=float(write) if _number(write) else base.cache_write,
                   tiers=_tiers(entry, float(inp), output, f"_{name}"))
