"""Cascades declared in the config, callable by their logical name through any intercepted client.

`litellm.completion(model="classify", ...)` or `client.chat.completions.create(model="classify")`
runs the `[cascades.classify]` chain: changing a fallback chain is a config edit, not a deploy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from cascadeflow.breakers import BreakerSettings
from cascadeflow.cascade.cascade import Cascade, Tier
from cascadeflow.config import CascadeSpec
from cascadeflow.errors import ConfigError
from cascadeflow.failures import DEFAULT_REFUSALS, Expectations
from cascadeflow.retry import RetryPolicy, stop_after_attempt, wait_full_jitter


def build(specs: Mapping[str, CascadeSpec], source: str) -> dict[str, Cascade]:
    """Cascade objects for every `[cascades.<name>]`, checked against each other and the env."""
    out: dict[str, Cascade] = {}
    for name, spec in specs.items():
        tiers = []
        for index, t in enumerate(spec.tiers):
            setting = f"cascades.{name}.tiers[{index}]"
            if t.model in specs:
                raise ConfigError(f"{setting}.model", t.model, source,
                                  "a tier cannot name another cascade")
            params: dict[str, str] = {}
            if t.api_base:
                params["api_base"] = t.api_base
            if t.api_key_env:
                key = os.environ.get(t.api_key_env)
                if not key:
                    raise ConfigError(f"{setting}.api_key_env", t.api_key_env, source,
                                      "that environment variable is not set")
                params["api_key"] = key
            tiers.append(Tier(model=t.model, static=t.static, timeout=t.timeout_s, degraded=t.degraded,
                              params=params))
        patterns = spec.refusal_patterns if spec.refusal_patterns is not None else DEFAULT_REFUSALS
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"cascades.{name}.refusal_patterns", pattern, source,
                                  f"not a regular expression: {exc}") from None
        b = spec.breaker
        out[name] = Cascade(
            tiers, name=name, deadline_s=spec.deadline_s,
            retry=RetryPolicy(stop=stop_after_attempt(spec.max_attempts),
                              wait=wait_full_jitter(spec.backoff_initial_s, spec.backoff_max_s)),
            breaker=BreakerSettings(b.failure_threshold, b.failure_rate, b.window, b.min_calls,
                                    b.recovery_timeout_s, b.half_open_max_calls,
                                    b.probe_timeout_s),
            expect=Expectations(require_content=spec.require_content, whole_answers=spec.whole_answers,
                                refusal_patterns=patterns))
    return out
