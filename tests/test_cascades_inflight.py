"""A pooled client is not closed under a call still using it: `shutdown()` (or `aclose()`) while a
cascade's attempt is on the wire, or while the stream it returned is read, leaves that client to
its last user, who closes it. Closed under the attempt, the attempt failed, the cascade sent the
request again (the provider billed it twice) and the breaker counted a failure the deployment
never made. On the built-in provider, over HTTP."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import cascadeflow
from cascadeflow.cascade import Cascade, clients
from cascadeflow.testing import Fault

from tests.conftest import KEY, MESSAGES, ONCE, tier


def _on_the_wire(provider: Any, count: int) -> None:
    """Until the provider has seen `count` requests (the held one among them)."""
    while len(provider.requests) < count:
        time.sleep(0.005)


def _pooled(provider: Any, model: str, is_async: bool = False) -> Any:
    """The pooled client the cascade's attempts at `model` use."""
    return clients.client(f"openai/{model}", {"api_base": provider.url, "api_key": KEY}, is_async)


def test_shutdown_leaves_a_call_in_flight_its_client(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    cascade = Cascade([tier(provider, "gpt-4o"), tier(provider, "gpt-4o-mini")], retry=ONCE)
    pooled = _pooled(provider, "gpt-4o")
    provider.inject(Fault.parse("hold,times=1,model=gpt-4o"))
    out: dict[str, Any] = {}

    def call() -> None:
        with cascadeflow.run() as session:
            out["response"] = cascade.complete(messages=MESSAGES)
        out["trace"] = session.trace()

    worker = threading.Thread(target=call)
    worker.start()
    _on_the_wire(provider, 1)
    cascadeflow.shutdown()  # the client is in use: its last user closes it
    provider.release()
    worker.join(30)
    assert out["response"].choices[0].message.content.startswith("Reply from gpt-4o:")
    assert [r.model for r in provider.requests] == ["gpt-4o"]  # sent once, billed once
    assert not [e for e in out["trace"] if e.get("kind") in ("fallback", "retry")]
    assert pooled.is_closed()  # by the call, when it was done with it
    again = cascade.complete(messages=MESSAGES)  # a call after shutdown: a fresh client
    assert again.choices[0].message.content.startswith("Reply from gpt-4o:")
    assert _pooled(provider, "gpt-4o") is not pooled


def test_shutdown_leaves_a_stream_being_read_its_client(provider: Any) -> None:
    cascade = Cascade([tier(provider, "gpt-4o"), tier(provider, "gpt-4o-mini")], retry=ONCE)
    pooled = _pooled(provider, "gpt-4o")
    stream = cascade.complete(messages=MESSAGES, stream=True)
    first = next(stream)
    cascadeflow.shutdown()
    assert not pooled.is_closed()
    text = (first.choices[0].delta.content or "") + "".join(
        c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("Reply from gpt-4o:")
    assert pooled.is_closed()  # the stream ended: its client went with it


def test_a_stream_closed_unread_gives_its_client_back(provider: Any) -> None:
    cascade = Cascade([tier(provider, "gpt-4o")], retry=ONCE)
    pooled = _pooled(provider, "gpt-4o")
    stream = cascade.complete(messages=MESSAGES, stream=True)
    cascadeflow.shutdown()
    assert not pooled.is_closed()
    stream.close()
    assert pooled.is_closed()


async def test_aclose_leaves_a_task_in_flight_its_client(provider: Any) -> None:
    cascade = Cascade([tier(provider, "gpt-4o"), tier(provider, "gpt-4o-mini")], retry=ONCE)
    pooled = _pooled(provider, "gpt-4o", is_async=True)
    provider.inject(Fault.parse("hold,times=1,model=gpt-4o"))
    task = asyncio.create_task(cascade.acomplete(messages=MESSAGES))
    while not provider.requests:
        await asyncio.sleep(0.005)
    await clients.aclose()
    provider.release()
    response = await task
    assert response.choices[0].message.content.startswith("Reply from gpt-4o:")
    assert [r.model for r in provider.requests] == ["gpt-4o"]
    assert pooled.is_closed()
    stream = await cascade.acomplete(messages=MESSAGES, stream=True)  # a fresh client
    await clients.aclose()
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.startswith("Reply from gpt-4o:")
