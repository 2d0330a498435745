"""Every test starts from mode `off`, no cascadeflow env vars and an empty working directory."""

from __future__ import annotations

import json
import os
import subprocess
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cascadeflow
import pytest
from cascadeflow.breakers import breakers
from cascadeflow.cascade import (
    BreakerSettings,
    CircuitBreaker,
    InMemoryBreakerStore,
    RetryPolicy,
    Tier,
    stop_after_attempt,
)
from cascadeflow.testing import redis as redis_testing

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(autouse=True)
def _clean_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("CASCADEFLOW_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    cascadeflow.shutdown()
    breakers.reset()  # the provider's URL is the same in every test: so are its breakers' keys
    yield
    cascadeflow.shutdown()


@pytest.fixture
def provider(cascadeflow_provider: Any) -> Any:
    """The built-in provider (the plugin's fixture under a short name)."""
    return cascadeflow_provider


def chat_kwargs(provider: Any, content: str = "hello", model: str = "openai/gpt-4o-mini",
                **extra: Any) -> dict[str, Any]:
    """Arguments for a litellm chat call against the built-in provider."""
    return {"model": model, "messages": [{"role": "user", "content": content}],
            "api_base": provider.url, "api_key": "sk-test-not-a-real-key-0000", **extra}


# the cascade tests' API key, support-ticket message and one-attempt retry policy
KEY = "sk-test-not-a-real-key-0000"
MESSAGES = [{"role": "user", "content": "Classify: charged twice"}]
ONCE = RetryPolicy(stop=stop_after_attempt(1))


def tier(provider: Any, model: str, **kwargs: Any) -> Tier:
    """A cascade tier of `openai/<model>` on the built-in provider."""
    return Tier(f"openai/{model}", params={"api_base": provider.url, "api_key": KEY}, **kwargs)


class Clock:
    """A clock the test moves by hand: breakers and cascades take one, so nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def half_open(key: str, settings: BreakerSettings, clock: Clock) -> CircuitBreaker:
    """A breaker (failure_threshold=1) opened by one failure and moved to half-open."""
    breaker = CircuitBreaker(key, settings, InMemoryBreakerStore(), clock)
    breaker.acquire()
    breaker.failure()
    clock.now += settings.recovery_timeout
    return breaker


def forked_as_nobody(cwd: Path, body: Callable[[], Any]) -> Any:
    """`body()`'s result (JSON), run in a forked child in `cwd`, as `nobody` when the tests run as
    root, whom file modes do not stop (a user reading what another user's service wrote). A
    child that raises fails the test with its traceback; it never returns into pytest."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.chdir(cwd)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            outcome = ["ok", body()]
        except BaseException:
            outcome = ["crash", traceback.format_exc()]
        try:
            os.write(write, json.dumps(outcome).encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    kind, value = json.loads(b"".join(chunks))
    assert kind == "ok", value
    return value


def start_redis(folder: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A real redis-server on a loopback port (see cascadeflow.testing.redis); fails the test
    when none can be started."""
    try:
        return redis_testing.start_redis(folder, port)
    except redis_testing.RedisUnavailable as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the whole session; its URL."""
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.kill()
    proc.wait()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's redis-server, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server
