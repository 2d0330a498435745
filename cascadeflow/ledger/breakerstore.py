"""Circuit-breaker state in Redis, so a breaker one replica opened is open for every replica.

Each deployment's state is one JSON string at `cascadeflow:breaker:<deployment key>`: read on
every breaker decision, and written after a change only if no other process wrote it since the
read (a compare-and-set script); a change that lost the race is made again on the winner's
state. So the probe slots of a half-open breaker are counted across every process, and no
outcome is overwritten.
Times cross machines as wall-clock seconds: the breaker's own clock is monotonic, so they are
translated on the way in and out.

Redis never breaks a call: when it fails, the decision uses this process's last known state
(and the call's outcome is kept there), the failure is counted in `errors`, and Redis is not
asked again for `COOL_DOWN_S`, so an outage costs one timeout, not one per call.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from cascadeflow.breakers import BreakerState, Change, InMemoryBreakerStore
from cascadeflow.ledger.redis import clean, connect, safe_url

log = logging.getLogger("cascadeflow.breakers")
PREFIX = "cascadeflow:breaker:"
COOL_DOWN_S = 5.0
TTL_S = 7 * 86400  # a deployment unused for a week starts afresh
CAS_ATTEMPTS = 20  # updates that lost a race, tried again from the winner's state
T = TypeVar("T")
# compare-and-set: KEYS[1] becomes ARGV[2] (expiring in ARGV[3] s) if it still holds ARGV[1]
# ('' for no key); 1 when it was set
_SWAP = """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


class RedisBreakerStore:
    """`BreakerStore` in Redis, falling back to the process's own state while Redis fails."""

    def __init__(self, client: Any, url: str, clock: Callable[[], float] = time.monotonic) -> None:
        import redis

        self.client = client
        self.url = safe_url(url)
        self._dsn = url
        self._errors = (redis.RedisError, OSError, ValueError, KeyError, TypeError)  # or bad JSON
        self.clock = clock  # the breakers' clock, whose readings are translated to wall time
        self.local = InMemoryBreakerStore()  # the last known state, used while Redis fails
        self.errors = 0  # loads and saves Redis failed (each served from `local`)
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._swap = client.register_script(_SWAP)

    def load(self, key: str) -> BreakerState:
        if time.monotonic() < self._down_until:
            return self.local.load(key)
        try:
            raw = self.client.get(PREFIX + key)
            state = BreakerState() if raw is None else self._decode(raw)
        except self._errors as exc:
            self._failed(exc)
            return self.local.load(key)
        self.local.save(key, state)
        return state

    def save(self, key: str, state: BreakerState) -> None:
        self.local.save(key, state)
        if time.monotonic() < self._down_until:
            return
        try:
            self.client.set(PREFIX + key, self._encode(state), ex=TTL_S)
        except self._errors as exc:
            self._failed(exc)

    def update(self, key: str, change: Change[T]) -> T:
        """Read the state, apply `change`, and write it back only if no other process wrote the
        key in between (compare-and-set in one script), else again from what that process
        wrote: so N replicas taking the probe slots of a half-open breaker at once hand out
        exactly `half_open_max_calls`, not N."""
        if time.monotonic() < self._down_until:
            return self._locally(key, change)
        try:
            for attempt in range(CAS_ATTEMPTS):
                raw = self.client.get(PREFIX + key)
                state = BreakerState() if raw is None else self._decode(raw)
                result, changed = change(state)
                if changed:
                    value = self._encode(state)
                    if attempt == CAS_ATTEMPTS - 1:  # contended beyond reason: last write wins
                        self.client.set(PREFIX + key, value, ex=TTL_S)
                    elif not self._swap(keys=[PREFIX + key], args=[raw or b"", value, TTL_S]):
                        continue
                self.local.save(key, state)
                return result
        except self._errors as exc:
            self._failed(exc)
        return self._locally(key, change)

    def _locally(self, key: str, change: Change[T]) -> T:
        """`change` on this process's last known state (Redis failed or is resting)."""
        return self.local.update(key, change)

    def close(self) -> None:
        self.client.close()

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.errors += 1
            self._down_until = time.monotonic() + COOL_DOWN_S
            if self.errors == 1 or self.errors % 1000 == 0:
                log.warning("cascadeflow breakers: redis %s failed (%d so far), breakers use this "
                            "process's state for %g s: %s", self.url, self.errors, COOL_DOWN_S,
                            clean(str(exc), self._dsn))

    def _encode(self, s: BreakerState) -> str:
        shift = time.time() - self.clock()  # monotonic -> wall clock
        return json.dumps({
            "state": s.state, "opened_at": s.opened_at + shift if s.opened_at else 0.0,
            "consecutive": s.consecutive, "outcomes": [int(o) for o in s.outcomes],
            "probes_started": s.probes_started, "probes_succeeded": s.probes_succeeded,
            "probe_since": None if s.probe_since is None else s.probe_since + shift})

    def _decode(self, raw: bytes | str) -> BreakerState:
        data = json.loads(raw)
        shift = time.time() - self.clock()
        opened, since = float(data["opened_at"]), data["probe_since"]
        return BreakerState(state=str(data["state"]), opened_at=opened - shift if opened else 0.0,
                            consecutive=int(data["consecutive"]),
                            outcomes=deque(bool(o) for o in data["outcomes"]),
                            probes_started=int(data["probes_started"]),
                            probes_succeeded=int(data["probes_succeeded"]),
                            probe_since=None if since is None else float(since) - shift)


def open_redis_breakers(url: str, source: str) -> RedisBreakerStore:
    """Breaker state at `url` (a client of its own); a ConfigError naming `ledger.url`."""
    return RedisBreakerStore(connect(url, source), url)
