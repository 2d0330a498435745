"""One HTTP client per deployment, reused by every attempt of every cascade.

litellm keys its cached openai SDK clients by the request timeout, and a cascade's timeout is what
is left of its deadline: a different number on every attempt, so every attempt used to build a new
client and open a new TCP (and TLS) connection, and the cache kept them all. A cascade now hands
litellm a client of its own for each OpenAI-protocol deployment (`client=`) and the deadline goes
with the request as its timeout, which the SDK applies per request: the connection pool is reused.
Its HTTP client verifies certificates as litellm's would (`ssl_verify`); an application's own
`litellm.client_session` / `aclient_session` is left to litellm to use.

Providers litellm reaches over its own HTTP handler (Anthropic, Bedrock, Vertex, ...) already pool
connections independently of the timeout and are left to it. Async clients belong to the event loop
they were made on: the pool keeps one per loop and forgets it with the loop.

A cascade's attempt takes its client on a `Lease` and gives it back when the attempt ends (a stream
it returned: when the stream ends, is closed or is collected). `close()` / `aclose()` (what
`cascadeflow.shutdown()` calls) close the clients no one is using and leave the pool empty, so a
call after them gets a fresh client; a client still in use is closed by its last user instead:
closed under an attempt in flight, it failed that attempt with a connection error, the cascade sent
the request again (billed twice) and the deployment's breaker counted a failure it never made.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any

_DEFAULT_BASE = "https://api.openai.com/v1"
Key = tuple[str, str, str | None]  # (api_base, api_key, organization)


class ClientPool:
    """openai SDK clients by endpoint and key; `close()` / `aclose()` close what it opened."""

    def __init__(self) -> None:
        self._sync: dict[Key, Any] = {}
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Key, Any]] = \
            weakref.WeakKeyDictionary()
        self._providers: dict[tuple[str, str | None], str | None] = {}
        self._lock = threading.RLock()
        self._users: dict[int, int] = {}  # id(client): the leases out on it
        self._retired: dict[int, Any] = {}  # closed by `close()` while in use: its last user closes it

    def lease(self, model: str, arguments: Mapping[str, Any], is_async: bool) -> Lease | None:
        """`client()` for one attempt: the client is not closed under it until it is released."""
        with self._lock:  # reentrant: `client()` takes it again
            found = self.client(model, arguments, is_async)
            if found is None:
                return None
            self._users[id(found)] = self._users.get(id(found), 0) + 1
        return Lease(self, found, is_async)

    def _release(self, client: Any) -> Any | None:
        """One lease on `client` given back: the client when it is now to be closed."""
        with self._lock:
            left = self._users.get(id(client), 0) - 1
            if left > 0:
                self._users[id(client)] = left
                return None
            self._users.pop(id(client), None)
            return self._retired.pop(id(client), None)

    def _retire(self, client: Any) -> bool:
        """Whether `client` is in use (then its last user closes it); the lock is held."""
        if id(client) not in self._users:
            return False
        self._retired[id(client)] = client
        return True

    def client(self, model: str, arguments: Mapping[str, Any], is_async: bool) -> Any | None:
        """The client for litellm's `client=` argument, or None when litellm should pick its own:
        another protocol, no key to build one with, or a client the caller passed already."""
        if arguments.get("client") is not None:
            return None
        import litellm  # loaded already: the cascade calls through it

        if (litellm.aclient_session if is_async else litellm.client_session) is not None:
            return None  # the application's own HTTP client (proxy, certificates): litellm uses it
        key = self._key(model, arguments)
        if key is None:
            return None
        with self._lock:
            if not is_async:
                found = self._sync.get(key)
                if found is None:
                    found = self._sync[key] = _new(key, is_async=False)
                return found
            clients = self._async.setdefault(asyncio.get_running_loop(), {})
            found = clients.get(key)
            if found is None:
                found = clients[key] = _new(key, is_async=True)
            return found

    def _key(self, model: str, arguments: Mapping[str, Any]) -> Key | None:
        base = arguments.get("api_base") or arguments.get("base_url")
        if self.provider(model, base) != "openai":
            return None
        import litellm  # loaded already: the cascade calls through it

        base = base or litellm.api_base or os.environ.get("OPENAI_BASE_URL") \
            or os.environ.get("OPENAI_API_BASE") or _DEFAULT_BASE
        key = arguments.get("api_key") or litellm.api_key or litellm.openai_key \
            or os.environ.get("OPENAI_API_KEY")
        if not key:
            return None  # litellm raises its own authentication error
        organization = arguments.get("organization") or litellm.organization
        return str(base), str(key), organization

    def provider(self, model: str, base: str | None) -> str | None:
        """litellm's provider for the model, remembered: resolving it walks litellm's tables."""
        found = self._providers.get((model, base), "")
        if found != "":
            return found
        import litellm

        try:
            provider: str | None = litellm.get_llm_provider(model=model, api_base=base)[1]
        except Exception:  # litellm cannot place it: the call will say so itself
            provider = None
        self._providers[(model, base)] = provider
        return provider

    def close(self) -> None:
        """Close the sync clients, and async ones whose event loop is no longer running; one in
        use is closed when its last attempt (or stream) is done. Later calls get new clients."""
        with self._lock:
            sync = [c for c in self._sync.values() if not self._retire(c)]
            self._sync = {}
            loops = [(loop, [c for c in clients.values() if not self._retire(c)])
                     for loop, clients in self._async.items()]
            self._async = weakref.WeakKeyDictionary()
        for client in sync:
            client.close()
        for loop, clients in loops:
            if loop.is_closed() or loop.is_running():
                continue  # a closed loop's sockets went with it; a running one closes its own
            for client in clients:
                loop.run_until_complete(client.close())

    async def aclose(self) -> None:
        """Close the sync clients and this event loop's async clients (those in use: when done)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            clients = [c for c in self._async.pop(loop, {}).values() if not self._retire(c)]
        for client in clients:
            await client.close()
        self.close()


class Lease:
    """A pooled client taken for one attempt, or for the stream it returned: `release()` (sync
    clients, and wherever no coroutine can run) or `await arelease()` gives it back, once."""

    def __init__(self, pool: ClientPool, client: Any, is_async: bool) -> None:
        self.client = client
        self._pool: ClientPool | None = pool
        self._is_async = is_async

    def _give_back(self) -> Any | None:
        pool, self._pool = self._pool, None
        return None if pool is None else pool._release(self.client)

    def release(self) -> None:
        """Give the client back; a retired sync client is closed. A retired async client cannot
        be closed without its event loop and is dropped, as `close()` drops those of a loop
        that is running."""
        retired = self._give_back()
        if retired is not None and not self._is_async:
            retired.close()

    async def arelease(self) -> None:
        retired = self._give_back()
        if retired is not None and self._is_async:
            await retired.close()
        elif retired is not None:
            retired.close()


def _new(key: Key, is_async: bool) -> Any:
    import openai

    base, api_key, organization = key
    cls = _classes()[is_async]
    # Certificates as litellm verifies them (`litellm.ssl_verify`, SSL_CERT_FILE, SSL_VERIFY),
    # which the SDK's defaults know nothing of. (The SDK's own async client schedules its close on
    # whatever loop is running when it is collected, which fails for one made on a loop since
    # closed; an httpx client with the SDK's defaults but no such finaliser is simply dropped.)
    verify = _litellm_verify()
    settings = {} if verify is None else {"verify": verify}
    http = openai.DefaultAsyncHttpxClient(**settings) if is_async else openai.DefaultHttpxClient(**settings)
    return cls(base_url=base, api_key=api_key, organization=organization, http_client=http)


def _litellm_verify() -> Any | None:
    """What litellm verifies TLS with (a bool, a CA bundle's SSL context), or None where this
    litellm cannot say."""
    try:
        from litellm.llms.custom_httpx.http_handler import get_ssl_configuration

        return get_ssl_configuration()
    except (ImportError, AttributeError, TypeError, ValueError, OSError):
        return None


@functools.cache
def _classes() -> tuple[type, type]:
    """openai SDK clients that never retry: the cascade retries, with its own backoff and breakers.
    litellm sets `max_retries` on a client it is handed (its embedding path turns 0 into 2), so
    the setting is held at 0 rather than passed once."""
    import openai

    never = property(lambda _self: 0, lambda _self, _value: None)
    sync = type("CascadeOpenAI", (openai.OpenAI,), {"max_retries": never})
    async_ = type("CascadeAsyncOpenAI", (openai.AsyncOpenAI,), {"max_retries": never})
    return sync, async_


clients = ClientPool()
