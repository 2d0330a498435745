"""Another instrumentation already reports the model call: an OpenTelemetry instrumentation of
the openai SDK (`opentelemetry-instrumentation-openai-v2`, the GenAI conventions' reference,
or OpenLLMetry's `opentelemetry-instrumentation-openai`).

Both would emit a CLIENT span for the same call and record the same `gen_ai.client.*`
metrics twice. Under `otel_client_spans = "auto"` cascadeflow then leaves those to the
instrumentation and keeps its own span as an INTERNAL one carrying its `cascadeflow.*`
attributes. Detection reads the SDK method the call goes through, on the background worker;
the answer is kept until the method object changes (an instrumentor instruments or leaves).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from cascadeflow.pipeline.observer import StepRecord

log = logging.getLogger("cascadeflow")

# operation -> (module, class) whose `create` these instrumentations wrap
_TARGETS = {"chat": ("openai.resources.chat.completions", "Completions"),
            "embeddings": ("openai.resources.embeddings", "Embeddings")}
# litellm providers litellm sends through the openai SDK's client
_VIA_OPENAI_SDK = frozenset({"openai", "azure"})
_INSTRUMENTATIONS = "opentelemetry.instrumentation.openai"


class Duplicates:
    """Whether an OpenTelemetry instrumentation of the openai SDK also reports a step."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Any, bool]] = {}
        self._told = False

    def covered(self, step: StepRecord) -> bool:
        request = step.request
        operation = request.operation
        if operation not in _TARGETS:
            return False
        if request.client == "litellm" and step.entry.provider not in _VIA_OPENAI_SDK \
                and "openai" not in (request.underneath or ()):  # (perplexity, deepinfra, ...)
            return False
        if request.client not in ("litellm", "openai"):
            return False
        if request.method != "create":  # `parse` posts itself: the instrumentations never see it
            return False
        module_name, class_name = _TARGETS[operation]
        module = sys.modules.get(module_name)  # not imported: not instrumented either
        owner = getattr(module, class_name, None)
        method = None if owner is None else vars(owner).get("create")
        seen = self._seen.get(operation)
        if seen is not None and seen[0] is method:
            return seen[1]
        found = instrumented(method)
        self._seen[operation] = (method, found)
        if found and not self._told:
            self._told = True
            log.info("cascadeflow: an OpenTelemetry instrumentation of the openai SDK reports model "
                     "calls; cascadeflow's spans for them are INTERNAL and it records no gen_ai.client.* "
                     "metrics for them (otel_client_spans = 'always' keeps both)")
        return found


def instrumented(method: Any) -> bool:
    """A wrapt wrapper from an OpenTelemetry openai instrumentation is in the method's chain."""
    layer = method
    for _ in range(32):
        if layer is None:
            return False
        wrapper = getattr(layer, "_self_wrapper", None)
        if wrapper is not None and str(getattr(wrapper, "__module__", "")).startswith(_INSTRUMENTATIONS):
            return True
        layer = getattr(layer, "__wrapped__", None)
    return False
