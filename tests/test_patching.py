"""Patching is idempotent, thread-safe, and `off` / `shutdown` restore the originals exactly."""

from __future__ import annotations

import threading
from typing import Any

import cascadeflow
import litellm
import openai
from openai.resources.chat.completions import AsyncCompletions, Completions
from openai.resources.embeddings import Embeddings
from openai.resources.responses import Responses

NAMES = ("completion", "acompletion", "text_completion", "atext_completion", "embedding", "aembedding")


def _originals() -> dict[str, Any]:
    out = {name: getattr(litellm, name) for name in NAMES}
    for cls in (Completions, AsyncCompletions, Embeddings, Responses):
        out[cls.__name__] = cls.__dict__["create"]
    return out


def test_init_patches_and_shutdown_restores_exactly() -> None:
    before = _originals()
    cascadeflow.init(mode="observe")
    during = _originals()
    assert all(during[k] is not before[k] for k in before)
    assert litellm.completion.__wrapped__ is before["completion"]
    assert litellm.completion.__name__ == "completion"
    cascadeflow.shutdown()
    after = _originals()
    assert all(after[k] is before[k] for k in before)


def test_init_off_restores_and_is_idempotent() -> None:
    before = _originals()
    cascadeflow.init(mode="observe")
    first = _originals()
    cascadeflow.init(mode="enforce")
    cascadeflow.init(mode="observe")
    assert _originals() == first  # no double wrapping
    cascadeflow.init(mode="off")
    assert _originals() == before


def test_concurrent_init_patches_once() -> None:
    before = _originals()
    barrier = threading.Barrier(8)

    def go() -> None:
        barrier.wait()
        cascadeflow.init(mode="observe")

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert litellm.completion.__wrapped__ is before["completion"]
    cascadeflow.shutdown()
    assert _originals() == before


def test_stale_wrapper_passes_through_after_shutdown(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    kept = litellm.completion  # a reference taken while patched
    cascadeflow.shutdown()
    cascadeflow.init(mode="off")
    with cascadeflow.run() as session:
        kept(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
             api_base=provider.url, api_key="sk-test")
    assert session.trace() == []
    assert len(provider.requests) == 1


def test_instrument_selection() -> None:
    report = cascadeflow.init(mode="observe", instrument=["openai"])
    assert report.instrumented == ["openai"]
    assert not hasattr(litellm.completion, "__cascadeflow_original__")


def test_shutdown_leaves_a_plain_wrapper_made_after_it(provider: Any) -> None:
    """A wrapper cascadeflow cannot splice itself out from under stays working; cascadeflow's
    stays beneath it, passing straight through, and is removed once it is on top again."""
    from tests.conftest import chat_kwargs

    original = litellm.completion
    cascadeflow.init(mode="observe")
    ours = litellm.completion
    seen: list[str] = []

    def theirs(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["model"])
        return ours(*args, **kwargs)

    litellm.completion = theirs
    cascadeflow.shutdown()
    assert litellm.completion is theirs
    with cascadeflow.run() as session:  # mode off: nothing recorded
        litellm.completion(**chat_kwargs(provider))
    assert seen == ["openai/gpt-4o-mini"] and session.summary()["steps"] == 0
    cascadeflow.init(mode="observe")  # reuses the wrapper still in the chain: one step per call
    with cascadeflow.run() as session:
        litellm.completion(**chat_kwargs(provider))
    assert session.summary()["steps"] == 1
    litellm.completion = ours  # they leave
    cascadeflow.shutdown()
    assert litellm.completion is original


def test_a_later_init_that_drops_a_library_unpatches_it(provider: Any) -> None:
    # a second init() naming fewer libraries reported only those, but left the others patched
    before = _originals()
    cascadeflow.init(mode="observe")
    report = cascadeflow.init(mode="observe", instrument=["openai"])
    assert report.instrumented == ["openai"]
    assert all(getattr(litellm, name) is before[name] for name in NAMES)
    assert Completions.__dict__["create"] is not before["Completions"]
    with cascadeflow.run() as session:
        litellm.completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
                           api_base=provider.url, api_key="sk-test")
    assert [e["model"] for e in session.trace()] == ["gpt-4o-mini"]  # seen by the SDK's patch only
    cascadeflow.init(mode="observe")
    assert litellm.completion is not before["completion"]
    cascadeflow.shutdown()
    assert _originals() == before


def test_a_dropped_librarys_stale_references_pass_through(provider: Any) -> None:
    # references taken while the openai SDK was patched (a `with_raw_response` holder, a bound
    # method) kept making steps after an init() that no longer names it, litellm still patched
    cascadeflow.init(mode="observe")
    sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test")
    raw, kept = sdk.chat.completions.with_raw_response, sdk.chat.completions.create
    cascadeflow.init(mode="observe", instrument=["litellm"])
    with cascadeflow.run() as session:
        raw.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]).parse()
        kept(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        litellm.completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
                           api_base=provider.url, api_key="sk-test")
    assert [e["model"] for e in session.trace()] == ["openai/gpt-4o-mini"]
    assert len(provider.requests) == 3
