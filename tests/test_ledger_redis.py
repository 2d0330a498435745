"""The Redis ledger store against a real redis-server: the same contract as the SQLite store,
shared budgets, rate limits and breakers across processes, and what a store outage does."""

from __future__ import annotations

import collections
import json
import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import pytest
from cascadeflow.breakers import BreakerSettings, CircuitBreaker, InMemoryBreakerStore, breakers
from cascadeflow.cli import main as cli_main
from cascadeflow.errors import ConfigError
from cascadeflow.ledger import SQLiteStore, StoreUnavailable, nano
from cascadeflow.ledger.breakerstore import RedisBreakerStore, open_redis_breakers
from cascadeflow.ledger.redis import COOL_DOWN_S, open_redis, safe_url
from cascadeflow.ledger.store import Claim, Counter, Refusal, Settlement, Slot, Store
from cascadeflow.pricing import PriceBook
from cascadeflow.testing import replies
from cascadeflow.windows import parse

from tests import ledger_procs
from tests.conftest import chat_kwargs, start_redis

DAY = parse("day")
HOUR_ROLLING = parse("rolling:1h")  # 60 buckets of 60 s


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Store]:
    """Each contract test runs against both stores."""
    if request.param == "sqlite":
        made: Store = SQLiteStore(tmp_path / "ledger.db")
    else:
        made = open_redis(request.getfixturevalue("redis_url"), "test")
    yield made
    made.close()


def _now() -> float:
    """The start of this minute (Redis expires keys by the real clock), or three hours on when
    today ends within two, so a test's hour stays in one day."""
    now = time.time() // 60 * 60
    return now + 10800 if DAY.end(now) - now < 7200 else now


def _settle(store: Store, hold: str | None, ts: float, *amounts: tuple[Counter, int]) -> None:
    store.commit([Settlement(None, ts, hold, list(amounts))])


def test_a_hold_counts_until_its_call_settles(store: Store) -> None:
    now = _now()
    budget = Counter(f"budget:daily:{uuid.uuid4().hex}", DAY, 100)
    assert store.acquire("h1", [Claim(budget, 60)], [], now) is None
    assert store.figures([budget], now) == [(0, 60)]
    assert store.acquire("h2", [Claim(budget, 50)], [], now) == Refusal(0, 0, 60)
    _settle(store, "h1", now, (budget, 45))
    assert store.figures([budget], now + 1) == [(45, 0)]
    assert store.acquire("h2", [Claim(budget, 55)], [], now + 1) is None
    assert store.acquire("h3", [Claim(budget, 1)], [], now + 1) == Refusal(0, 45, 55)


def test_acquire_takes_everything_or_nothing(store: Store) -> None:
    now = _now()
    user = Counter("budget:daily:u-1", DAY, 100)
    project = Counter("budget:proj:p-1", DAY, 30)
    slot = Slot("requests:rpm:u-1", 60, 5)
    assert store.acquire("h1", [Claim(user, 40), Claim(project, 40)], [slot], now) == Refusal(1, 0, 0)
    assert store.figures([user, project], now) == [(0, 0), (0, 0)]
    for i in range(5):  # the refused acquire took no request slot either
        assert store.acquire(f"s{i}", [], [slot], now) is None
    assert store.acquire("s5", [Claim(user, 1)], [slot], now) == Refusal(1, 5, 0)
    assert store.figures([user], now) == [(0, 0)]


def test_a_rate_claim_only_asks_that_something_is_left(store: Store) -> None:
    now = _now()
    tokens = Counter("tokens:tpm:u-1", parse("rolling:1m"), 1000)
    assert store.acquire("h1", [Claim(tokens, 0)], [], now) is None
    _settle(store, "h1", now, (tokens, 999))
    assert store.acquire("h2", [Claim(tokens, 0)], [], now + 1) is None
    _settle(store, "h2", now + 1, (tokens, 5))  # over: a call reports its tokens after the fact
    assert store.acquire("h3", [Claim(tokens, 0)], [], now + 2) == Refusal(0, 1004, 0)
    assert store.acquire("h3", [Claim(tokens, 0)], [], now + 63) is None  # the minute moved on


def test_a_rate_counts_a_long_call_where_it_ended_and_a_budget_where_it_began(store: Store) -> None:
    """A call that lasted longer than a rate's window: its tokens are in the window that ends
    now (a rate limits use in any minute); its spend stays in the window it started in, which
    has passed."""
    now = _now()
    tokens = Counter(f"tokens:tpm:{uuid.uuid4().hex}", parse("rolling:1m"), 1000, at_end=True)
    budget = Counter(f"budget:minute:{uuid.uuid4().hex}", parse("rolling:1m"), 10**9)
    store.commit([Settlement(None, now - 90, None, [(tokens, 50_000), (budget, 300)], ended=now)])
    assert store.figures([tokens, budget], now) == [(50_000, 0), (0, 0)]
    assert store.acquire("h1", [Claim(tokens, 0)], [], now) == Refusal(0, 50_000, 0)


def test_a_rolling_window_forgets_what_left_it(store: Store) -> None:
    now = _now()
    spend = Counter("usd:hourly:u-1", HOUR_ROLLING, 10**9)
    _settle(store, None, now - 1800, (spend, 300))
    _settle(store, None, now, (spend, 200))
    assert store.figures([spend], now) == [(500, 0)]
    assert store.figures([spend], now + 1800 + 61) == [(200, 0)]  # plus one bucket, counted whole
    assert store.figures([spend], now + 3600 + 61) == [(0, 0)]


def test_a_calendar_window_starts_again_the_next_day(store: Store) -> None:
    now = _now()
    budget = Counter("budget:daily:u-1", DAY, 100)
    _settle(store, None, now, (budget, 100))
    assert store.acquire("h1", [Claim(budget, 1)], [], now) == Refusal(0, 100, 0)
    tomorrow = DAY.end(now) + 10
    assert store.figures([budget], tomorrow) == [(0, 0)]
    assert store.acquire("h1", [Claim(budget, 1)], [], tomorrow) is None


def test_a_hold_taken_in_a_later_bucket_than_its_call_began_is_released(store: Store) -> None:
    """A call starts, waits, then holds in the next bucket: its settlement (dated at the start)
    releases the hold all the same."""
    now = time.time()
    spend = Counter("budget:rolling:u-1", HOUR_ROLLING, 1000)
    assert store.acquire("h1", [Claim(spend, 400)], [], now) is None
    _settle(store, "h1", now - 61, (spend, 100))
    assert store.figures([spend], now) == [(100, 0)]


def test_request_slots_slide(store: Store) -> None:
    now = _now()
    slot = Slot("requests:rpm:u-1", 60, 3)
    budget = Counter("budget:daily:u-1", DAY, 100)
    for i in range(3):
        assert store.acquire(f"h{i}", [], [slot], now + i * 10) is None
    assert store.acquire("h3", [Claim(budget, 1)], [slot], now + 59) == Refusal(1, 3, 0)
    assert store.figures([budget], now + 59) == [(0, 0)]
    assert store.acquire("h3", [], [slot], now + 60) is None  # the first left the minute
    assert store.acquire("h4", [], [slot], now + 61) == Refusal(0, 3, 0)


def test_request_slots_from_before_a_clock_stepped_back_do_not_block(store: Store) -> None:
    """A clock stepped back an hour (a VM resumed, NTP correcting a wrong time): the requests
    of the minute before the step were dated an hour ahead and stayed in the sliding log, so a
    user at the limit was refused for the whole hour. A slot more than its window ahead of now
    is from such a clock, and leaves the log; a few seconds of skew between machines stay."""
    now = _now()
    slot = Slot("requests:rpm:u-1", 60, 2)
    assert store.acquire("h0", [], [slot], now) is None
    assert store.acquire("h1", [], [slot], now + 1) is None
    assert store.acquire("h2", [], [slot], now - 5) == Refusal(0, 2, 0)  # a few seconds: kept
    assert store.acquire("h3", [], [slot], now - 3600) is None  # an hour back: the log restarts
    assert store.acquire("h4", [], [slot], now - 3599) is None
    assert store.acquire("h5", [], [slot], now - 3598) == Refusal(0, 2, 0)  # the limit holds


def test_a_mark_is_set_once(store: Store) -> None:
    until = time.time() + 60
    assert store.mark("budget_threshold:budget:daily:u-1:1", until) is True
    assert store.mark("budget_threshold:budget:daily:u-1:1", until) is False
    assert store.mark("budget_threshold:budget:daily:u-2:1", until) is True


def test_commit_without_holds_or_amounts_is_a_no_op(store: Store) -> None:
    store.commit([])
    store.commit([Settlement(None, _now(), None, [])])
    assert isinstance(store.purge(time.time()), dict)


# -- Redis only --------------------------------------------------------------------------------
def test_keys_share_one_hash_tag_and_expire_with_their_window(redis_url: str) -> None:
    import redis

    store = open_redis(redis_url, "test")
    now = time.time()
    budget = Counter("budget:daily:u-1", DAY, 100)
    assert store.acquire("h1", [Claim(budget, 10)], [Slot("requests:rpm:u-1", 60, 5)], now) is None
    _settle(store, None, now, (budget, 7))
    store.mark("m", now + 60)
    client = redis.Redis.from_url(redis_url)
    keys = sorted(k.decode() for k in client.keys("*"))
    assert len(keys) == 4 and all(k.startswith("cascadeflow:{cf}:") for k in keys), keys
    for key in keys:
        expires = time.time() + client.ttl(key)  # (EXPIRETIME needs Redis 7)
        assert now < expires <= DAY.end(now) + 3602, (key, expires)  # (an hour's margin)
    client.close()
    store.close()


def test_a_password_never_shows(redis_url: str) -> None:
    url = "redis://:hunter2-secret@127.0.0.1:1/0"
    assert "hunter2" not in safe_url(url)
    assert "hunter2" not in safe_url("redis://admin:hunter2-secret@127.0.0.1:1/0")
    store = open_redis(url, "test")
    with pytest.raises(StoreUnavailable) as caught:
        store.figures([Counter("budget:daily:u", DAY, 1)], time.time())
    assert "hunter2" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)
    with pytest.raises(ConfigError) as bad:
        open_redis("redis://:hunter2-secret@127.0.0.1:notaport/0", "file x.toml")
    assert "hunter2" not in str(bad.value)
    # a URL the config itself rejects: the password-only form is masked like user:password
    Path("cascadeflow.toml").write_text('[ledger]\nurl = "http://:hunter2-secret@127.0.0.1/0"\n')
    with pytest.raises(ConfigError) as rejected:
        cascadeflow.init()
    assert "hunter2" not in str(rejected.value) and "ledger.url" in str(rejected.value)


def test_a_store_down_fails_and_comes_back_with_the_server(tmp_path: Any) -> None:
    proc, url = start_redis(tmp_path)
    store = open_redis(url, "test")
    budget = Counter("budget:daily:u", DAY, 10)
    assert store.acquire("h1", [Claim(budget, 1)], [], time.time()) is None
    proc.kill()
    proc.wait()
    for op in (lambda: store.figures([budget], time.time()),
               lambda: store.acquire("h2", [Claim(budget, 1)], [], time.time()),
               lambda: store.commit([Settlement(None, time.time(), "h1", [(budget, 1)])]),
               lambda: store.mark("m", time.time() + 1)):
        with pytest.raises(StoreUnavailable):
            op()
    proc, _ = start_redis(tmp_path, int(url.rsplit(":", 1)[1].split("/")[0]))
    try:
        time.sleep(COOL_DOWN_S)  # calls on the caller's thread fail fast for this long
        assert store.figures([budget], time.time()) == [(0, 0)]  # a new server: nothing kept
    finally:
        store.close()
        proc.kill()
        proc.wait()


def test_a_forked_child_gets_its_own_connections(redis_url: str) -> None:
    store = open_redis(redis_url, "test")
    budget = Counter("budget:daily:u-1", DAY, 100)
    assert store.acquire("parent", [Claim(budget, 10)], [], time.time()) is None
    pid = os.fork()
    if pid == 0:  # the child: the pool reconnects instead of sharing the parent's socket
        code = 0 if store.acquire("child", [Claim(budget, 10)], [], time.time()) is None else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.figures([budget], time.time()) == [(0, 20)]
    store.close()


# -- across processes, through the real client ---------------------------------------------------
MODEL = "openai/gpt-4o"
PROMPT = "Please summarise the customer's order history below.\n" + "order line item " * 500
PRICE = PriceBook().price(MODEL, "openai")


def _processes(specs: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    """Run `tests.ledger_procs` in one process per spec, all at once; their reports. The
    processes are forked from a fork server that imported litellm once (seconds each
    otherwise), and so start with no thread of this one's."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["cascadeflow", "litellm", "tests.ledger_procs"])
    outs = [folder / f"report-{i}.json" for i in range(len(specs))]
    procs = [context.Process(target=ledger_procs.run, args=(spec, str(out)))
             for spec, out in zip(specs, outs, strict=True)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(180)
        assert proc.exitcode == 0, f"a ledger process ended with {proc.exitcode}"
    return [json.loads(out.read_text()) for out in outs]


def _config(tmp_path: Path, redis_url: str, body: str, name: str = "cascadeflow.toml") -> str:
    path = tmp_path / name
    path.write_text(f'mode = "enforce"\n\n[ledger]\nurl = "{redis_url}"\npath = "ledger.db"\n'
                    f'flush_interval_s = 0.02\n{body}')
    return str(path)


def _billed(provider: Any) -> tuple[int, float]:
    """Calls the provider answered (not a transport's resends of one) and what it billed for
    them, by its own rules (cascadeflow.testing.bill)."""
    calls = [r for r in provider.requests if r.headers.get("x-stainless-retry-count", "0") == "0"]
    total = 0.0
    for request in calls:
        body = request.json
        answer = replies.answer(body["model"], body["messages"], body, [], set())
        total += PRICE.cost(answer.prompt_tokens, answer.completion_tokens)
    return len(calls), total


def test_three_processes_never_overrun_a_shared_daily_budget(provider: Any, redis_url: str,
                                                             tmp_path: Path) -> None:
    limit = 0.05  # a call costs about 0.0040: a dozen fit
    config = _config(tmp_path, redis_url, f'\n[budgets.daily]\nscope = "user"\nwindow = "day"\n'
                                          f'limit = {limit}\nalert_at = 0.5\n')
    spec = {"config": config, "user": "u-42", "threads": 4, "calls": 5, "model": MODEL,
            "prompt": PROMPT, "max_tokens": 20, "api_base": provider.url}
    reports = _processes([spec] * 3, tmp_path)
    outcomes: collections.Counter[str] = collections.Counter()
    for report in reports:
        outcomes.update(report["phases"][0])
    calls, billed = _billed(provider)
    assert set(outcomes) <= {"ok", "BudgetExceeded:budget_window_exceeded"}, outcomes
    assert outcomes["ok"] == calls >= 10
    assert billed <= limit
    store = open_redis(redis_url, "test")
    budget = Counter("budget:daily:u-42", DAY, nano(limit, up=False))
    ((settled, held),) = store.figures([budget], time.time())
    store.close()
    assert held == 0  # every hold released
    assert abs(settled - nano(billed, up=False)) <= calls  # nano-USD, rounded once per call
    events = SQLiteStore(tmp_path / "ledger.db")  # each machine's events stay in its own file
    ((recorded, answered),) = events.read("SELECT SUM(cost), COUNT(*) FROM events WHERE user = "
                                          "'u-42' AND status = 'ok'")
    events.close()
    assert answered == calls and recorded == pytest.approx(billed, rel=1e-9)
    assert sum(r["alerts"].count("budget_threshold") for r in reports) == 1  # once, not per process


def test_a_breaker_opened_in_one_process_is_open_in_another(provider: Any, redis_url: str,
                                                            tmp_path: Path) -> None:
    tier = '{{ model = "{}", api_base = "{}", api_key_env = "CF_TEST_KEY" }}'
    config = _config(tmp_path, redis_url, f"""
[cascades.classify]
max_attempts = 1
tiers = [{tier.format("openai/gpt-4o", provider.url)}, {tier.format("openai/gpt-4o-mini", provider.url)}]

[cascades.classify.breaker]
failure_threshold = 2
recovery_timeout_s = 600
""")
    spec = {"config": config, "user": "u-1", "threads": 1, "calls": 3, "model": "classify",
            "prompt": "Classify: charged twice", "max_tokens": 200}
    provider.inject(model="gpt-4o", status=503)
    (first,) = _processes([spec], tmp_path)
    assert first["phases"] == [{"ok": 3}] and first["breaker_store"] == "RedisBreakerStore"
    primary = f"openai/gpt-4o@{provider.url}"
    assert first["breakers"][primary] == "open"
    assert [r.model for r in provider.requests] == ["gpt-4o", "gpt-4o-mini"] * 2 + ["gpt-4o-mini"]
    provider.reset()  # the primary is healthy again, but the other process's breaker says open
    (second,) = _processes([{**spec, "calls": 2}], tmp_path)
    assert second["phases"] == [{"ok": 2}] and second["breakers"][primary] == "open"
    assert [r.model for r in provider.requests] == ["gpt-4o-mini"] * 2


def test_sixty_requests_a_minute_across_three_processes(provider: Any, redis_url: str,
                                                        tmp_path: Path) -> None:
    """72 requests at one instant from 3 processes: exactly 60 go through; a minute later,
    60 more. (Every process's clock is frozen at the same instant per phase, so how fast a
    loaded machine sends them does not matter.)"""
    config = _config(tmp_path, redis_url, '\n[limits.rpm]\nscope = "user"\nrequests_per_minute = 60\n')
    now = time.time()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    spec = {"config": config, "user": "u-7", "threads": 4, "calls": 6, "model": "openai/gpt-4o-mini",
            "prompt": "hello", "max_tokens": 5, "api_base": provider.url, "clocks": [now, now + 60],
            "barrier": str(barrier), "procs": 3}
    reports = _processes([{**spec, "me": str(i)} for i in range(3)], tmp_path)
    for phase in range(2):
        outcomes: collections.Counter[str] = collections.Counter()
        for report in reports:
            outcomes.update(report["phases"][phase])
        assert outcomes == {"ok": 60, "RateLimited:rate_limited": 12}, (phase, outcomes)
    assert _billed(provider)[0] == 120


@pytest.mark.parametrize("failure", ["closed", "open"])
def test_a_store_that_cannot_be_reached(provider: Any, tmp_path: Path, failure: str) -> None:
    config = _config(tmp_path, "redis://:pw-not-shown@127.0.0.1:1/0",
                     f'store_failure = "{failure}"\n\n[budgets.daily]\nscope = "user"\n'
                     f'window = "day"\nlimit = 1.0\n')
    alerts: list[Any] = []
    errors = cascadeflow.stats()["ledger_store_errors"]  # (counted for the process)
    cascadeflow.init(config=config, alerts=[alerts.append])
    with cascadeflow.run(user="u-1"):
        if failure == "closed":
            with pytest.raises(cascadeflow.StoreUnreachable) as stop:
                litellm.completion(**chat_kwargs(provider))
            assert stop.value.reason == "store_unavailable" and "pw-not-shown" not in str(stop.value)
            assert not provider.requests
        else:
            litellm.completion(**chat_kwargs(provider))
            assert len(provider.requests) == 1
    cascadeflow.flush()
    unavailable = [a for a in alerts if a.kind == "store_unavailable"]
    assert len(unavailable) == 1 and "pw-not-shown" not in str(unavailable[0])
    assert cascadeflow.stats()["ledger_store_errors"] - errors == 1  # one step, one failure
    cascadeflow.shutdown()


def test_the_url_can_come_from_the_environment(provider: Any, redis_url: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`url_env` keeps a password out of the file; an unset variable is a ConfigError."""
    config = tmp_path / "cascadeflow.toml"
    config.write_text('mode = "enforce"\n\n[ledger]\nurl_env = "CF_TEST_REDIS_URL"\n'
                      'path = "ledger.db"\n\n[budgets.daily]\nscope = "user"\nwindow = "day"\n'
                      'limit = 1.0\n')
    monkeypatch.delenv("CF_TEST_REDIS_URL", raising=False)
    with pytest.raises(ConfigError) as unset:
        cascadeflow.init(config=config)
    assert unset.value.setting == "ledger.url_env" and "CF_TEST_REDIS_URL" in str(unset.value)
    monkeypatch.setenv("CF_TEST_REDIS_URL", "http://:pw-kept-out@127.0.0.1/0")
    with pytest.raises(ConfigError) as bad:
        cascadeflow.init(config=config)
    assert bad.value.source == "env CF_TEST_REDIS_URL" and "pw-kept-out" not in str(bad.value)
    monkeypatch.setenv("CF_TEST_REDIS_URL", redis_url)
    cascadeflow.init(config=config)
    with cascadeflow.run(user="u-9"):
        litellm.completion(**chat_kwargs(provider))
    cascadeflow.shutdown()
    store = open_redis(redis_url, "test")
    ((settled, _),) = store.figures([Counter("budget:daily:u-9", DAY, nano(1.0))], time.time())
    store.close()
    assert settled > 0  # the spend went to the Redis the variable named
    monkeypatch.delenv("CF_TEST_REDIS_URL")  # the command line reads the SQLite file only:
    assert cli_main(["ledger", "spend", "--config", str(config)]) == 0  # no Redis secret needed
    both = config.read_text().replace('url_env = "CF_TEST_REDIS_URL"',
                                      f'url_env = "CF_TEST_REDIS_URL"\nurl = "{redis_url}"')
    config.write_text(both)
    with pytest.raises(ConfigError, match="url or url_env"):
        cascadeflow.init(config=config)


def test_an_outage_keeps_every_event_and_sends_the_spend_it_owes_later(provider: Any,
                                                                      tmp_path: Path) -> None:
    """Events go to disk before spend goes to Redis: an outage loses no event, and the spend of
    the calls made during it reaches Redis with the first batch after it; what is still owed at
    shutdown is counted and alerted."""
    proc, url = start_redis(tmp_path)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    config = _config(tmp_path, url, 'store_failure = "open"\n\n[budgets.daily]\nscope = "user"\n'
                                    'window = "day"\nlimit = 1.0\n')
    alerts: list[Any] = []
    cascadeflow.init(config=config, alerts=[alerts.append])
    try:
        with cascadeflow.run(user="u-5"):
            litellm.completion(**chat_kwargs(provider))
            assert cascadeflow.flush()
            proc.kill()
            proc.wait()
            for _ in range(2):  # unchecked (store_failure = "open"), spend owed to Redis
                litellm.completion(**chat_kwargs(provider))
            assert cascadeflow.flush()
            assert cascadeflow.stats()["ledger_counters_owed"] == 2
            proc, _ = start_redis(tmp_path, port)  # a new server: it starts empty
            time.sleep(COOL_DOWN_S)
            litellm.completion(**chat_kwargs(provider))  # its batch carries what is owed
            assert cascadeflow.flush()
        stats = cascadeflow.stats()
        assert stats["ledger_counters_owed"] == 0 and stats["ledger_lost"] == 0
        costs = [c for (c,) in SQLiteStore(tmp_path / "ledger.db").read(
            "SELECT cost FROM events WHERE user = 'u-5' AND status = 'ok' ORDER BY id")]
        assert len(costs) == 4  # every event, the outage's included
        store = open_redis(url, "test")
        budget = Counter("budget:daily:u-5", DAY, nano(1.0))
        ((settled, held),) = store.figures([budget], time.time())
        store.close()
        assert held == 0 and abs(settled - sum(nano(c, up=False) for c in costs[1:])) <= 3
        owed = [a for a in alerts if a.kind == "ledger_write_failed"]
        assert [a.attributes["why"] for a in owed] == ["counters_owed"]

        proc.kill()  # down again, and still down at shutdown: the spend is lost, and said so
        proc.wait()
        lost_before = cascadeflow.stats()["ledger_counters_lost"]  # counted for the process
        with cascadeflow.run(user="u-5"):
            litellm.completion(**chat_kwargs(provider))
        cascadeflow.shutdown()
        assert cascadeflow.stats()["ledger_counters_lost"] == lost_before + 1
        lost = [a for a in alerts if a.attributes.get("why") == "counters_lost"]
        assert len(lost) == 1 and lost[0].severity == "error"
        assert len(SQLiteStore(tmp_path / "ledger.db").read("SELECT id FROM events")) == 5
    finally:
        cascadeflow.shutdown()
        proc.kill()
        proc.wait()


# -- breaker state -------------------------------------------------------------------------------
def test_breaker_state_crosses_processes_on_the_wall_clock(redis_url: str) -> None:
    """Two processes' monotonic clocks differ: the open breaker's age is the same for both."""
    here = open_redis_breakers(redis_url, "test")
    there = open_redis_breakers(redis_url, "test")
    here.clock, there.clock = (lambda: 1000.0), (lambda: 5000.0)
    settings = BreakerSettings(failure_threshold=1, recovery_timeout=30)
    opened = CircuitBreaker("openai/gpt-4o@x", settings, here, here.clock)
    opened.failure()
    seen = CircuitBreaker("openai/gpt-4o@x", settings, there, there.clock)
    assert seen.state == "open" and not seen.acquire()
    state = there.load("openai/gpt-4o@x")
    # opened "now" on the other clock, less the real time between the write and the read
    assert 5000.0 - settings.recovery_timeout < state.opened_at <= 5000.0
    assert list(state.outcomes) == [True]
    here.close()
    there.close()


def test_a_breaker_store_that_fails_never_breaks_a_call() -> None:
    store = open_redis_breakers("redis://127.0.0.1:1/0", "test")
    breaker = CircuitBreaker("d", BreakerSettings(failure_threshold=2), store)
    assert breaker.acquire()
    breaker.failure()
    breaker.failure()  # kept in this process meanwhile
    assert breaker.state == "open" and not breaker.acquire()
    assert store.errors == 1  # then Redis is left alone for a while


def test_init_shares_breakers_only_with_a_url(redis_url: str, tmp_path: Path) -> None:
    shared = _config(tmp_path, redis_url, "", "shared.toml")  # not found unless named
    cascadeflow.init(config=shared)
    assert isinstance(breakers.store, RedisBreakerStore)
    cascadeflow.init(mode="enforce")
    assert isinstance(breakers.store, InMemoryBreakerStore)
    (tmp_path / "off.toml").write_text(f'[ledger]\nurl = "{redis_url}"\nbreakers = false\n')
    cascadeflow.init(mode="enforce", config=tmp_path / "off.toml")
    assert isinstance(breakers.store, InMemoryBreakerStore)
    cascadeflow.init(config=shared)
    cascadeflow.shutdown()
    assert isinstance(breakers.store, InMemoryBreakerStore)
