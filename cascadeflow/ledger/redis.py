"""Redis as the ledger's store across machines (docs/ledger-redis.md).

Why Redis: N replicas on N machines must share one budget and one rate limit, and a Lua script
runs atomically on the server, so a check-then-hold over several counters is one step for every
client, like SQLite's `BEGIN IMMEDIATE` on one machine. Counters and holds live here; usage
events stay in each machine's SQLite file (the `Ledger` routes them).

Keys (all under one hash tag, `{cf}`, so a Redis Cluster puts them in one slot: an `acquire`
checks a user's budget, a project's budget and a rate limit in one script, which a cluster only
runs when every key it touches shares a slot; the price is that the ledger lives on one shard):

- `cascadeflow:{cf}:c:<counter key>:<bucket>`: an integer (INCRBY), settled spend or tokens;
- `cascadeflow:{cf}:h:<counter key>:<bucket>`: a hash, hold id -> amount held by a call in flight;
- `cascadeflow:{cf}:s:<slot key>`: a sorted set, one member per request, scored by its time;
- `cascadeflow:{cf}:m:<mark key>`: set once (SET NX) per budget alert and window.

Every key expires at its window's end plus `MARGIN_S` (a calendar window's plus
`CALENDAR_MARGIN_S`), so nothing needs purging. Amounts are
integers (nano-USD, tokens); the scripts add them as Lua numbers, exact up to 2**53 (9 million
USD in one window). Times are the callers' clocks (`now`), as with SQLite: machines need them in
sync (NTP); a clock off by s seconds moves its windows by s seconds.

Any Redis error becomes `StoreUnavailable`, and the ledger's `store_failure` decides (stop, or
go on with an alert). After a connection error, reads and holds on the caller's thread fail at
once for `COOL_DOWN_S` instead of each waiting out a timeout. The client's connection pool is
fork-safe (redis-py resets it in a child, by pid); `redis` itself is imported only here, inside
functions, as the optional `cascadeflow[redis]` extra.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

from cascadeflow.errors import ConfigError
from cascadeflow.ledger.store import Claim, Counter, Refusal, Settlement, Slot, Store, StoreUnavailable
from cascadeflow.secrets import MASK, mask
from cascadeflow.windows import Window

PREFIX = "cascadeflow:{cf}:"
MARGIN_S = 60  # keys outlive their window by this much (clocks a little apart)
# a calendar window's keys outlive it by an hour: a replica whose clock lags finds the figures of
# the window it still believes current (an EXPIREAT already past on Redis's clock deletes the key,
# and with it the window's spend); its few keys cost nothing. A rolling window's newest bucket
# outlives the whole window anyway.
CALENDAR_MARGIN_S = 3600
CONNECT_TIMEOUT_S = 0.5
SOCKET_TIMEOUT_S = 1.0
COOL_DOWN_S = 1.0  # after a connection error, fail fast for this long on the caller's thread
T = TypeVar("T")

# sum of the counters and holds of one counter's buckets: KEYS[k .. k+n-1] are the counters,
# KEYS[k+n .. k+2n-1] the hold hashes of the same buckets
_SUM = """
local function figures(k, n)
  local settled, held = 0, 0
  for b = 0, n - 1 do
    settled = settled + tonumber(redis.call('GET', KEYS[k + b]) or '0')
    for _, v in ipairs(redis.call('HVALS', KEYS[k + n + b])) do held = held + tonumber(v) end
  end
  return settled, held
end
"""
# ARGV: count, then each counter's bucket count; returns settled, held, settled, held, ...
_FIGURES = _SUM + """
local out, k = {}, 1
for i = 2, tonumber(ARGV[1]) + 1 do
  local n = tonumber(ARGV[i])
  local settled, held = figures(k, n)
  out[#out + 1] = settled
  out[#out + 1] = held
  k = k + 2 * n
end
return out
"""
# ARGV: hold id, now, claims, slots; per claim: amount, limit, buckets, expire-at; per slot:
# seconds, limit, member, seconds to live. KEYS: per claim its counters and holds (newest bucket
# first), then one sorted set per slot. Returns {} when all were taken, else the refusal.
_ACQUIRE = _SUM + """
local hold, now = ARGV[1], tonumber(ARGV[2])
local claims, slots = tonumber(ARGV[3]), tonumber(ARGV[4])
local k, a, takes = 1, 5, {}
for i = 1, claims do
  local amount, limit, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local settled, held = figures(k, n)
  if settled + held + amount > limit or (amount == 0 and settled >= limit) then
    return {i - 1, settled, held}
  end
  if amount > 0 then takes[#takes + 1] = {KEYS[k + n], ARGV[a], ARGV[a + 3]} end
  k, a = k + 2 * n, a + 4
end
for i = 1, slots do
  local key = KEYS[k + i - 1]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - tonumber(ARGV[a]))
  -- more than a window ahead: a clock that stepped back dated them (skew of seconds stays)
  redis.call('ZREMRANGEBYSCORE', key, '(' .. (now + tonumber(ARGV[a])), '+inf')
  local used = redis.call('ZCARD', key)
  if used >= tonumber(ARGV[a + 1]) then return {claims + i - 1, used, 0} end
  a = a + 4
end
for _, take in ipairs(takes) do
  redis.call('HSET', take[1], hold, take[2])
  redis.call('EXPIREAT', take[1], take[3])
end
a = 5 + 4 * claims
for i = 1, slots do
  local key = KEYS[k + i - 1]
  redis.call('ZADD', key, now, ARGV[a + 2])
  redis.call('EXPIRE', key, ARGV[a + 3])
  a = a + 4
end
return {}
"""


def open_redis(url: str, source: str) -> Store:
    """The store at `url`; a ConfigError naming `ledger.url` when it cannot be used. Nothing is
    sent yet: a server down at start is the ledger's `store_failure` to handle, call by call."""
    return RedisStore(connect(url, source), url)


def connect(url: str, source: str) -> Any:
    """A client of `url` with short timeouts and one quick retry (a connection the server closed
    is replaced at once; a server that is down fails within a second)."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise ConfigError("ledger.url", safe_url(url), source, "install cascadeflow[redis]") from None
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                      socket_timeout=SOCKET_TIMEOUT_S, retry=Retry(NoBackoff(), 1),
                                      health_check_interval=30)
        # the pool builds its first connection only at the first command: build one now (no
        # I/O), so an option the client rejects (`?ssl=1`, `?ssl_cert_reqs=bogus`) is this
        # ConfigError, not an exception out of every call
        pool = client.connection_pool
        pool.connection_class(**pool.connection_kwargs).disconnect()
    except (TypeError, ValueError, redis.RedisError) as exc:
        raise ConfigError("ledger.url", safe_url(url), source, clean(str(exc), url)) from None
    return client


def safe_url(url: str) -> str:
    """`url` with its password (and a user name given with one) replaced by [SECRET]."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return mask(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit(parts._replace(netloc=f"{MASK}@{host}"))
    except ValueError:
        return MASK


def clean(text: str, url: str) -> str:
    """An error message without `url`'s password, whatever the client put in it."""
    try:
        parts = urlsplit(url)
        passwords = [parts.password, *parse_qs(parts.query).get("password", [])]
    except ValueError:
        passwords = []
    for password in passwords:
        if password:
            text = text.replace(password, MASK)
    return mask(text)


class RedisStore:
    """`Store` on Redis: counters, holds, request slots and marks (no events; see module doc)."""

    def __init__(self, client: Any, url: str) -> None:
        import redis

        self.client = client
        self.url = safe_url(url)  # as messages show it: no password
        self._dsn = url  # to take the password out of the client's messages
        self._errors = redis.RedisError
        self._down_errors = (redis.ConnectionError, redis.TimeoutError)
        self._acquire = client.register_script(_ACQUIRE)
        self._figures = client.register_script(_FIGURES)
        self._down_until = 0.0

    # -- error handling ----------------------------------------------------------------------
    def _call(self, op: Callable[[], T], fast: bool = False) -> T:
        """Run `op`; every Redis error as StoreUnavailable. `fast`: on the caller's thread, so
        fail at once while the server was just found down."""
        if fast and time.monotonic() < self._down_until:
            raise StoreUnavailable(f"redis {self.url}: unreachable a moment ago")
        try:
            return op()
        except self._errors as exc:
            if isinstance(exc, self._down_errors):
                self._down_until = time.monotonic() + COOL_DOWN_S
            raise StoreUnavailable(f"redis {self.url}: {clean(str(exc), self._dsn)}") from None
        except OSError as exc:  # a socket error the client did not wrap
            raise StoreUnavailable(f"redis {self.url}: {clean(str(exc), self._dsn)}") from None

    # -- Store -------------------------------------------------------------------------------
    def figures(self, counters: Sequence[Counter], now: float) -> list[tuple[int, int]]:
        if not counters:
            return []
        keys: list[str] = []
        sizes: list[int] = []
        for counter in counters:
            buckets = counter.window.buckets(now)
            keys += _bucket_keys(counter.key, buckets)
            sizes.append(len(buckets))
        flat = self._call(lambda: self._figures(keys=keys, args=[len(counters), *sizes]), fast=True)
        return [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    def acquire(self, hold: str, claims: Sequence[Claim], slots: Sequence[Slot], now: float
                ) -> Refusal | None:
        keys: list[str] = []
        args: list[Any] = [hold, repr(now), len(claims), len(slots)]
        for claim in claims:
            window = claim.counter.window
            buckets = window.buckets(now)
            keys += _bucket_keys(claim.counter.key, buckets)
            args += [claim.amount, claim.counter.limit, len(buckets), _expiry(window, now)]
        for slot in slots:
            keys.append(f"{PREFIX}s:{slot.key}")
            # a sliding log lives a window past its newest request, on Redis's clock: an
            # EXPIREAT from a clock behind Redis's (stepped back) deleted it at once, and with it
            # the rate limit
            args += [slot.seconds, slot.limit, f"{hold}:{uuid.uuid4().hex}",
                     slot.seconds + MARGIN_S]
        found = self._call(lambda: self._acquire(keys=keys, args=args), fast=True)
        if not found:
            return None
        return Refusal(int(found[0]), int(found[1]), int(found[2]))

    def commit(self, settlements: Sequence[Settlement]) -> None:
        """One MULTI/EXEC: every hold released and every amount added, or none. The batch is
        folded first (one HDEL per hold hash, one INCRBY per counter), so a batch of 500 calls on
        one budget is a handful of commands."""
        now = time.time()
        released: dict[str, list[str]] = {}
        added: dict[str, list[int]] = {}  # counter key -> [amount, expire-at]
        for s in settlements:
            for counter, amount in s.amounts:
                window = counter.window
                if s.hold is not None:
                    for bucket in _hold_buckets(window, s.ts, now):
                        released.setdefault(f"{PREFIX}h:{counter.key}:{bucket}", []).append(s.hold)
                if amount:
                    at = s.at(counter)  # a budget's start, a rate's end
                    entry = added.setdefault(f"{PREFIX}c:{counter.key}:{window.bucket(at)}",
                                             [0, _expiry(window, at)])
                    entry[0] += amount
        if not (released or added):
            return
        pipe = self.client.pipeline(transaction=True)
        for key, holds in released.items():
            pipe.hdel(key, *holds)
        for key, (amount, expire) in added.items():
            pipe.incrby(key, amount)
            pipe.expireat(key, expire)
        self._call(pipe.execute)

    def mark(self, key: str, until: float) -> bool:
        # a relative expiry (`EX`, every Redis; `EXAT` needs 6.2, and older servers refused it,
        # so budget alerts never fired there), counted on Redis's own clock
        seconds = max(int(until) + 1 - int(time.time()), 1)
        return bool(self._call(lambda: self.client.set(f"{PREFIX}m:{key}", 1, nx=True, ex=seconds)))

    def purge(self, now: float) -> dict[str, int]:
        """Nothing to do: every key expires with its window (Redis drops it)."""
        return {"counters": 0, "holds": 0, "slots": 0, "marks": 0}

    def close(self) -> None:
        self.client.close()


def _expiry(window: Window, now: float) -> int:
    """When the keys of the bucket holding `now` expire (epoch seconds)."""
    return window.end(now) + (CALENDAR_MARGIN_S if window.calendar is not None else MARGIN_S)


def _bucket_keys(key: str, buckets: Sequence[int]) -> list[str]:
    """The counter keys, then the hold keys, of `buckets` of one counter."""
    return [f"{PREFIX}c:{key}:{b}" for b in buckets] + [f"{PREFIX}h:{key}:{b}" for b in buckets]


def _hold_buckets(window: Window, started: float, now: float) -> list[int]:
    """Where a hold of a call that started at `started` may be: it was taken a little later (a
    decision, maybe a wait), in the bucket of that moment, so every bucket from the call's start
    to now (SQLite finds it by id alone)."""
    first, last = window.bucket(started), window.bucket(max(now, started))
    if window.calendar is not None:
        return [first] if first == last else [first, last]
    size = window.bucket_s
    return list(range(first, last + size, size))[:len(window.buckets(now)) + 1]
