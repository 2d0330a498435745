"""Interceptors: thin adapters from one client library's calls to the shared step pipeline."""

from __future__ import annotations

from cascadeflow.interceptors import base
from cascadeflow.interceptors import litellm as litellm_interceptor
from cascadeflow.interceptors import openai as openai_interceptor

_INSTRUMENTORS = {"litellm": litellm_interceptor.instrument, "openai": openai_interceptor.instrument}


def instrument(libraries: tuple[str, ...]) -> list[str]:
    """Patch the named client libraries that are installed, and only those (one a previous call
    patched and this one does not name is restored); idempotent. Returns those patched."""
    with base._lock:
        for name in _INSTRUMENTORS.keys() - set(libraries):
            base.unpatch_library(name)
        done = [name for name in libraries if _INSTRUMENTORS[name]()]
        base.set_active(frozenset(done))
        return done


def uninstrument() -> None:
    """Restore every patched function exactly; stale references to wrappers pass straight through."""
    with base._lock:
        base.set_active(frozenset())
        base.unpatch_all()
