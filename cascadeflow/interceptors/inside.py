"""Whether this context is already inside an intercepted call.

A client library that calls another one underneath (litellm calls the openai SDK) makes one step,
not two: the outer call's step covers every call made for it, including those a stream makes
lazily while the caller reads it (litellm's text-completion streams send their request then).
"""

from __future__ import annotations

from contextvars import ContextVar

# None outside; inside, the libraries whose intercepted methods the call reached underneath it
# (litellm's call to `openai` went through the openai SDK, where its instrumentations see it)
inside: ContextVar[list[str] | None] = ContextVar("cascadeflow_inside_call", default=None)
