"""What shared state does at its edges: a Redis that answers too late, a URL the client rejects,
a half-open breaker probed by several processes at once (a real redis-server throughout), and a
call admitted in the window after the one it started in."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cascadeflow
import litellm
import pytest
from cascadeflow.breakers import BreakerSettings, CircuitBreaker
from cascadeflow.errors import ConfigError
from cascadeflow.ledger import SQLiteStore, nano
from cascadeflow.ledger.breakerstore import open_redis_breakers
from cascadeflow.ledger.redis import _ACQUIRE, COOL_DOWN_S, SOCKET_TIMEOUT_S, open_redis
from cascadeflow.ledger.store import Claim, Counter, Refusal, Settlement
from cascadeflow.pipeline import shared
from cascadeflow.windows import parse

from tests import ledger_procs
from tests.conftest import chat_kwargs, start_redis

DAY = parse("day")


class SlowProxy:
    """A loopback TCP proxy to a redis-server. Once `armed`, a connection that sends `marker`
    gets its replies late (after the client gave up waiting); its requests still reach the
    server at once, so what they do is done: a Redis too slow to answer in time."""

    def __init__(self, port: int, marker: bytes) -> None:
        self.port, self.marker, self.armed = port, marker, False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.port))
            slow = threading.Event()
            threading.Thread(target=self._pump, args=(client, server, slow, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, slow, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, slow: threading.Event,
              upstream: bool) -> None:
        try:
            while data := source.recv(65536):
                if upstream and self.armed and self.marker in data:
                    slow.set()
                if not upstream and slow.is_set():
                    time.sleep(3 * SOCKET_TIMEOUT_S)  # the client has timed out (and retried)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def slow_redis(tmp_path: Path) -> Iterator[tuple[str, SlowProxy]]:
    """A redis-server of its own (its URL) and a proxy in front of it that can answer the
    acquire script late."""
    proc, url = start_redis(tmp_path)
    proxy = SlowProxy(int(url.rsplit(":", 1)[1].split("/")[0]),
                      hashlib.sha1(_ACQUIRE.encode()).hexdigest().encode())
    yield url, proxy
    proxy.close()
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("failure", ["open", "closed"])
def test_an_acquire_redis_answered_too_late_leaves_no_hold_behind(
        provider: Any, tmp_path: Path, slow_redis: tuple[str, SlowProxy], failure: str) -> None:
    """The client gave up on the acquire script, but Redis ran it: the hold it took is released
    when the step settles (went on unchecked, or stopped), not kept for the rest of the day."""
    url, proxy = slow_redis
    config = tmp_path / "cascadeflow.toml"
    config.write_text(f'mode = "enforce"\n\n[ledger]\nurl = "{proxy.url}"\npath = "ledger.db"\n'
                      f'store_failure = "{failure}"\n\n[budgets.daily]\nscope = "user"\n'
                      f'window = "day"\nlimit = 1.0\n')
    errors = cascadeflow.stats()["ledger_store_errors"]  # (counted for the process)
    cascadeflow.init(config=config)
    with cascadeflow.run(user="u-1"):
        litellm.completion(**chat_kwargs(provider, max_tokens=50))  # loads the scripts
        assert cascadeflow.flush()
        proxy.armed = True
        if failure == "open":
            litellm.completion(**chat_kwargs(provider, max_tokens=50))
        else:
            with pytest.raises(cascadeflow.StoreUnreachable):
                litellm.completion(**chat_kwargs(provider, max_tokens=50))
        proxy.armed = False
    assert cascadeflow.stats()["ledger_store_errors"] - errors == 1
    cascadeflow.shutdown()  # its last batch went to Redis: the settlement of the late acquire
    store = open_redis(url, "test")
    ((settled, held),) = store.figures([Counter("budget:daily:u-1", DAY, 10**9)], time.time())
    store.close()
    assert settled > 0 and held == 0


@pytest.mark.parametrize("query", ["ssl=1", "ssl_cert_reqs=bogus"])
def test_a_redis_url_option_the_client_rejects_is_a_config_error(tmp_path: Path, query: str) -> None:
    """Not an exception out of every later call (TypeError: unexpected keyword argument 'ssl',
    even with store_failure = "open"); the password stays out of the message."""
    config = tmp_path / "cascadeflow.toml"
    config.write_text(f'mode = "enforce"\n\n[ledger]\nurl = "redis://:pw-kept-out@127.0.0.1:1/0?'
                      f'{query}"\nstore_failure = "open"\n\n[budgets.daily]\nscope = "user"\n'
                      f'window = "day"\nlimit = 1.0\n')
    with pytest.raises(ConfigError) as bad:
        cascadeflow.init(config=config)
    assert bad.value.setting == "ledger.url" and query.split("=")[0] in str(bad.value)
    assert "pw-kept-out" not in str(bad.value)


def _probe(url: str, key: str, start: Any, taken: Any) -> None:
    """One process: its own client of the shared breaker, asking for a probe slot when every
    process is ready."""
    breaker = CircuitBreaker(key, BreakerSettings(recovery_timeout=600), open_redis_breakers(url, "test"))
    assert breaker.state == "half_open"  # connected, and past the recovery timeout
    start.wait(60)
    taken.put(breaker.acquire())


def _open_long_ago(url: str, key: str) -> None:
    """Open `key`'s shared breaker as if it failed 10,000 s ago: half-open at the next look."""
    opener = open_redis_breakers(url, "test")
    CircuitBreaker(key, BreakerSettings(failure_threshold=1), opener,
                   lambda: time.monotonic() - 10_000).failure()
    opener.close()


def test_processes_asking_a_half_open_breaker_at_once_get_one_probe(redis_url: str) -> None:
    """Eight processes read the half-open state at the same moment: one probe slot is handed
    out (half_open_max_calls = 1), not one per process that read "no probe yet"."""
    _open_long_ago(redis_url, "openai/gpt-4o@x")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["cascadeflow", "tests.test_ledger_shared_edges"])
    start, taken = context.Barrier(8), context.Queue()
    procs = [context.Process(target=_probe, args=(redis_url, "openai/gpt-4o@x", start, taken))
             for _ in range(8)]
    for proc in procs:
        proc.start()
    answers = [taken.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(60)
    assert sorted(answers) == [False] * 7 + [True]


def test_a_half_open_breaker_hands_out_one_probe_across_processes(provider: Any, redis_url: str,
                                                                  tmp_path: Path) -> None:
    """Twelve calls in three processes find the shared breaker ready for its one probe at the
    same moment: one of them probes (the provider holds it), the other eleven fall back."""
    primary = f"openai/gpt-4o@{provider.url}"
    _open_long_ago(redis_url, primary)
    tier = '{{ model = "{}", api_base = "{}", api_key_env = "CF_TEST_KEY" }}'
    config = tmp_path / "cascadeflow.toml"
    config.write_text(f"""mode = "enforce"

[ledger]
url = "{redis_url}"
path = "ledger.db"

[cascades.classify]
max_attempts = 1
tiers = [{tier.format("openai/gpt-4o", provider.url)}, {tier.format("openai/gpt-4o-mini", provider.url)}]

[cascades.classify.breaker]
failure_threshold = 1
recovery_timeout_s = 600
half_open_max_calls = 1
""")
    provider.inject(model="gpt-4o", hold=True)
    spec = {"config": str(config), "user": "u-1", "threads": 4, "calls": 1, "model": "classify",
            "prompt": "Classify: charged twice", "max_tokens": 200}
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["cascadeflow", "litellm", "tests.ledger_procs"])
    outs = [tmp_path / f"report-{i}.json" for i in range(3)]
    procs = [context.Process(target=ledger_procs.run, args=(spec, str(out))) for out in outs]
    try:
        for proc in procs:
            proc.start()
        deadline = time.monotonic() + 120  # a safety net: every call sends one request
        while len(provider.requests) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        probes = [r for r in provider.requests if r.model == "gpt-4o"]
    finally:
        provider.release()
        for proc in procs:
            proc.join(120)
    assert all(proc.exitcode == 0 for proc in procs)
    assert len(probes) == 1, [r.model for r in provider.requests]
    reports = [json.loads(out.read_text()) for out in outs]
    assert sum(r["phases"][0].get("ok", 0) for r in reports) == 12, reports


def test_a_call_admitted_after_midnight_is_paid_for_by_the_new_day(
        provider: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call started before midnight, and its budget was read and its hold taken after it (it
    waited for money, or a guardrail scan took a while): tomorrow's budget admitted it, so its
    spend is tomorrow's. Today's budget, spent to its limit already, is not charged past it."""
    now = time.time()
    after_midnight = DAY.end(now) + 5
    daily = Counter("budget:daily:u-1", DAY, nano(1.0))
    today = SQLiteStore(tmp_path / "ledger.db")
    today.commit([Settlement(None, now, None, [(daily, nano(1.0))])])  # today's dollar is spent
    config = tmp_path / "cascadeflow.toml"
    config.write_text('mode = "enforce"\n\n[ledger]\npath = "ledger.db"\n\n[budgets.daily]\n'
                      'scope = "user"\nwindow = "day"\nlimit = 1.0\n')
    cascadeflow.init(config=config)
    monkeypatch.setattr(shared, "time", SimpleNamespace(time=lambda: after_midnight))
    with cascadeflow.run(user="u-1"):
        litellm.completion(**chat_kwargs(provider, max_tokens=50))
    cascadeflow.shutdown()
    assert today.figures([daily], now) == [(nano(1.0), 0)]
    ((settled, held),) = today.figures([daily], after_midnight)
    today.close()
    assert settled > 0 and held == 0


def test_a_replica_whose_clock_lags_keeps_its_window_on_redis(redis_url: str) -> None:
    """A replica a few minutes behind Redis's clock, in what is for it the last seconds of an
    hour that for Redis is over: what it spends and holds there stays counted (the keys do not
    expire at once), so it cannot spend that hour's budget again."""
    real = time.time()
    # an hour window whose start is at least a minute ago (UTC's, or India's, half an hour off)
    zone = "UTC" if real % 3600 >= 120 else "Asia/Kolkata"
    hour = parse("hour", zone)
    lagging = hour.start(real) - 30  # its clock reads 30 s before the hour Redis is already in
    budget = Counter("budget:hourly:u-1", hour, 1000)
    store = open_redis(redis_url, "test")
    assert store.acquire("h1", [Claim(budget, 400)], [], lagging) is None
    store.commit([Settlement(None, lagging, None, [(budget, 500)])])
    assert store.figures([budget], lagging) == [(500, 400)]
    assert store.acquire("h2", [Claim(budget, 400)], [], lagging) == Refusal(0, 500, 400)
    store.close()


def test_a_rolling_budget_over_its_alert_mark_alerts_once_per_window_not_per_bucket(
        provider: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """rolling:1m keeps 1-second buckets: four calls 2 s apart, each over `alert_at`, made four
    budget_threshold alerts (one per bucket; a rolling:1h alerted every minute). One now."""
    config = tmp_path / "cascadeflow.toml"
    config.write_text('mode = "enforce"\n\n[ledger]\npath = "ledger.db"\n\n[budgets.minute]\n'
                      'scope = "user"\nwindow = "rolling:1m"\nlimit = 1.0\nalert_at = 0.000001\n')
    alerts: list[Any] = []
    cascadeflow.init(config=config, alerts=[alerts.append])
    clock = SimpleNamespace(time=lambda: 0.0)
    monkeypatch.setattr(shared, "time", clock)
    start = time.time() // 60 * 60 + 1  # four calls in one minute (of the epoch's)
    with cascadeflow.run(user="u-1"):
        for i in range(4):
            clock.time = lambda at=start + 2 * i: at  # each call held in a bucket of its own
            litellm.completion(**chat_kwargs(provider, max_tokens=20))
            assert cascadeflow.flush()
    cascadeflow.shutdown()
    assert [a.kind for a in alerts].count("budget_threshold") == 1


def test_every_outage_of_the_store_raises_its_own_alert(provider: Any, tmp_path: Path) -> None:
    """The first failure of each outage is alerted, not only the process's first: a second
    outage, with calls going on unchecked (store_failure open), was silent until the 1000th
    failure of the process."""
    proc, url = start_redis(tmp_path)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    config = tmp_path / "cascadeflow.toml"
    config.write_text(f'mode = "enforce"\n\n[ledger]\nurl = "{url}"\npath = "ledger.db"\n'
                      f'store_failure = "open"\n\n[limits.per_user]\nscope = "user"\n'
                      f'requests_per_minute = 1000\n')
    alerts: list[Any] = []
    errors = cascadeflow.stats()["ledger_store_errors"]  # (counted for the process)
    cascadeflow.init(config=config, alerts=[alerts.append])
    try:
        with cascadeflow.run(user="u-1"):
            litellm.completion(**chat_kwargs(provider))
            for outage in (1, 2):
                proc.kill()
                proc.wait()
                for _ in range(3):  # unchecked: one alert per outage, every failure counted
                    litellm.completion(**chat_kwargs(provider))
                assert cascadeflow.flush()
                assert cascadeflow.stats()["ledger_store_errors"] - errors == 3 * outage
                assert [a.kind for a in alerts].count("store_unavailable") == outage
                proc, _ = start_redis(tmp_path, port)
                time.sleep(COOL_DOWN_S)  # calls fail fast for this long after a connection error
                litellm.completion(**chat_kwargs(provider))  # checked again: the outage is over
                assert cascadeflow.stats()["ledger_store_errors"] - errors == 3 * outage
    finally:
        cascadeflow.shutdown()
        proc.kill()
        proc.wait()


def test_a_forked_child_does_not_send_the_spend_its_parent_owes(provider: Any, tmp_path: Path) -> None:
    """Spend Redis refused during an outage is owed by the process that made the calls: a child
    forked while it was owed (a worker of a preloading server) sent it too, at its shutdown,
    and the budget counted those calls twice."""
    proc, url = start_redis(tmp_path)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    config = tmp_path / "cascadeflow.toml"
    config.write_text(f'mode = "enforce"\n\n[ledger]\nurl = "{url}"\npath = "ledger.db"\n'
                      f'store_failure = "open"\n\n[budgets.daily]\nscope = "user"\n'
                      f'window = "day"\nlimit = 1.0\n')
    cascadeflow.init(config=config)
    try:
        proc.kill()
        proc.wait()
        with cascadeflow.run(user="u-1"):
            litellm.completion(**chat_kwargs(provider))
        assert cascadeflow.flush()
        assert cascadeflow.stats()["ledger_counters_owed"] == 1
        proc, _ = start_redis(tmp_path, port)
        pid = os.fork()
        if pid == 0:  # the child: made no call, owes nothing
            code = 1
            try:
                cascadeflow.shutdown()
                code = 0
            finally:
                os._exit(code)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        cascadeflow.shutdown()  # the parent sends what it owes, once
        ((cost,),) = SQLiteStore(tmp_path / "ledger.db").read("SELECT cost FROM events")
        store = open_redis(url, "test")
        ((settled, held),) = store.figures([Counter("budget:daily:u-1", DAY, 10**9)], time.time())
        store.close()
        assert (settled, held) == (nano(float(cost), up=False), 0)  # type: ignore[arg-type]
    finally:
        cascadeflow.shutdown()
        proc.kill()
        proc.wait()
