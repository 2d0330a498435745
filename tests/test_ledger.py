"""The durable ledger on SQLite: usage events, budgets by window that survive a restart and a
SIGKILL, shared by several processes, rate limits, metering sinks and alerts."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cascadeflow
import openai
import pytest
from cascadeflow import windows
from cascadeflow.ledger import nano
from cascadeflow.ledger.redis import open_redis
from cascadeflow.ledger.store import Counter

KEY = "sk-test-not-a-real-key-0000"
CLIENT = Path(__file__).with_name("ledger_client.py")
PRICES = {"gpt-4o-mini": (1.5e-07, 6e-07, 7.5e-08)}  # litellm's map: input, output, cached input


def configure(tmp_path: Path, body: str) -> Path:
    config = tmp_path / "cascadeflow.toml"
    config.write_text(f'[ledger]\npath = "ledger.db"\nflush_interval_s = 0.02\n{body}')
    return config


def call(provider: Any, content: str = "count me", **kwargs: Any) -> Any:
    client = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", max_tokens=40,
                                          messages=[{"role": "user", "content": content}], **kwargs)


def rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def events(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM events ORDER BY id")]


# -- windows ----------------------------------------------------------------------------------

def test_calendar_windows_start_in_their_time_zone() -> None:
    now = 1_795_390_000.0  # 2026-11-22 23:26:40 UTC
    day = windows.parse("day")
    assert day.label(now) == "2026-11-22" and day.start(now) == 1_795_305_600
    assert day.end(now) == 1_795_392_000
    berlin = windows.parse("day", "Europe/Berlin")  # already 00:26 on the 23rd there
    assert berlin.label(now) == "2026-11-23" and berlin.start(now) == 1_795_388_400
    assert windows.parse("month").label(now) == "2026-11"
    assert windows.parse("month").end(now) == 1_796_083_200  # 2026-12-01 UTC


def test_rolling_windows_count_every_bucket_they_overlap() -> None:
    rolling = windows.parse("rolling:1h")
    assert rolling.bucket_s == 60
    buckets = rolling.buckets(3_600_030.0)
    assert buckets[0] == 3_600_000 and buckets[-1] == 3_596_400 and len(buckets) == 61


@pytest.mark.parametrize(("key", "value", "setting"), [
    ("window", '"weekly"', "budgets.daily.window"),
    ("scope", '"team"', "budgets.daily.scope"),
    ("limit", "0", "budgets.daily.limit"),
    ("limit", "1e-12", "budgets.daily.limit"),  # under the store's unit, nano-USD: a limit of 0
    ("mode", '"enforce"', "budgets.daily.mode"),
])
def test_a_bad_budget_names_its_key_and_file(tmp_path: Path, key: str, value: str,
                                             setting: str) -> None:
    fields = {"scope": '"user"', "window": '"day"', "limit": "1.0", key: value}
    body = "[budgets.daily]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items())
    with pytest.raises(cascadeflow.ConfigError) as info:
        cascadeflow.init(mode="enforce", config=configure(tmp_path, body))
    assert info.value.setting == setting
    assert str(tmp_path / "cascadeflow.toml") in info.value.source


def test_a_limit_needs_a_rate_and_a_ledger_a_known_time_zone(tmp_path: Path) -> None:
    with pytest.raises(cascadeflow.ConfigError, match="at least one of requests_per_minute"):
        cascadeflow.init(mode="enforce", config=configure(tmp_path, '[limits.u]\nscope = "user"\n'))
    config = tmp_path / "cascadeflow.toml"
    config.write_text('[ledger]\ntime_zone = "Mars/Olympus"\n')
    with pytest.raises(cascadeflow.ConfigError) as info:
        cascadeflow.init(mode="enforce", config=config)
    assert info.value.setting == "ledger.time_zone" and "unknown time zone" in str(info.value)


# -- events -----------------------------------------------------------------------------------

def test_every_settled_and_stopped_step_is_a_usage_event(provider: Any, tmp_path: Path) -> None:
    config = configure(tmp_path, "")
    cascadeflow.init(mode="enforce", config=config)
    with cascadeflow.run(user="u-1", project="support", budget=0.0001,
                         metadata={"ticket": "T-9", "token": "sk-proj-abcdefghijklmnop1234567890"}):
        call(provider, "my card is 4111 1111 1111 1111")
        with pytest.raises(cascadeflow.BudgetExceeded):
            call(provider, "x " * 2000)
    cascadeflow.shutdown()
    written = events(tmp_path / "ledger.db")
    assert [(e["status"], e["action"]) for e in written] == [("ok", "allow"), ("stopped", "stop")]
    ok = written[0]
    assert (ok["user"], ok["project"], ok["model"], ok["operation"]) == \
        ("u-1", "support", "gpt-4o-mini", "chat")
    assert ok["tokens_in"] > 0 and ok["tokens_out"] > 0 and ok["cost"] > 0 and ok["latency_ms"] > 0
    assert ok["content"] is None  # no prompt text unless content capture is on
    text = json.dumps(written)
    assert "4111" not in text and "sk-proj-abcdefghijklmnop" not in text
    assert json.loads(ok["metadata"])["ticket"] == "T-9"


def test_usage_sinks_see_committed_events_with_cached_tokens_apart(provider: Any,
                                                                    tmp_path: Path) -> None:
    config = configure(tmp_path, 'events_jsonl = "usage.jsonl"\n')
    seen: list[dict[str, Any]] = []
    cascadeflow.init(mode="observe", config=config, on_usage=[seen.append])
    system = {"role": "system", "content": "You triage support tickets. " * 200}
    client = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run(user="u-2"):
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o-mini", max_tokens=20,
                                           messages=[system, {"role": "user", "content": "hi"}])
    cascadeflow.flush()
    lines = [json.loads(x) for x in (tmp_path / "usage.jsonl").read_text().splitlines()]
    assert [e["tokens_in"] for e in lines] == [e["tokens_in"] for e in seen] and len(seen) == 2
    first, second = seen
    assert first["cached_tokens"] == 0 and second["cached_tokens"] > 0
    assert second["uncached_tokens"] == second["tokens_in"] - second["cached_tokens"]
    assert first["prefix_hash"] == second["prefix_hash"] is not None
    assert "triage" not in json.dumps(seen)  # the prefix is hashed, never kept


def test_a_usage_sink_that_raises_is_counted_and_never_breaks_calls(provider: Any,
                                                                    tmp_path: Path) -> None:
    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("billing is down")

    before = cascadeflow.stats()["usage_sink_errors"]
    cascadeflow.init(mode="enforce", config=configure(tmp_path, ""), on_usage=[broken])
    call(provider)
    cascadeflow.flush()
    assert cascadeflow.stats()["usage_sink_errors"] == before + 1
    # counted for the process, as every other loss is: a config reload does not forget it
    cascadeflow.init(mode="enforce", config=configure(tmp_path, ""), on_usage=[broken])
    assert cascadeflow.stats()["usage_sink_errors"] == before + 1
    cascadeflow.shutdown()
    assert cascadeflow.stats()["usage_sink_errors"] == before + 1


def test_a_prompt_change_that_breaks_the_cache_raises_one_alert(provider: Any,
                                                                tmp_path: Path) -> None:
    """A system prompt that starts carrying a timestamp stops the provider's cache hits."""
    alerts: list[Any] = []
    cascadeflow.init(mode="observe", config=configure(tmp_path, ""), alerts=[alerts.append])
    client = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    stable = "You triage support tickets for the billing team. " * 60
    with cascadeflow.run(user="u-3"):
        for i in range(100):  # two blocks of 50: the same prefix, then a new one every call
            system = stable if i < 50 else f"Now: 2026-11-22T10:{i:02d}. {stable}"
            client.chat.completions.create(model="gpt-4o-mini", max_tokens=10, messages=[
                {"role": "system", "content": system}, {"role": "user", "content": f"ticket {i}"}])
    cascadeflow.flush()
    drops = [a for a in alerts if a.kind == "prompt_cache_drop"]
    assert len(drops) == 1
    assert drops[0].attributes["before"] > 0.9 and drops[0].attributes["rate"] == 0
    assert drops[0].attributes["prefixes"] == 50
    assert "billing team" not in json.dumps([a.message for a in alerts])


# -- budgets by window ------------------------------------------------------------------------

def test_a_daily_budget_survives_a_restart(provider: Any, tmp_path: Path) -> None:
    """A user who spent the day's budget gets nothing more after the process restarts."""
    config = configure(tmp_path, '[budgets.daily]\nscope = "user"\nwindow = "day"\nlimit = 0.0002\n')
    alerts: list[Any] = []
    cascadeflow.init(mode="enforce", config=config, alerts=[alerts.append])
    ok = 0
    with pytest.raises(cascadeflow.BudgetExceeded) as info, cascadeflow.run(user="u-3"):
        for _ in range(100):
            call(provider)
            ok += 1
    assert info.value.reason == "budget_window_exceeded" and "budget daily (user u-3" in str(info.value)
    cascadeflow.shutdown()
    cascadeflow.init(mode="enforce", config=config, alerts=[alerts.append])  # "restarted"
    with pytest.raises(cascadeflow.BudgetExceeded), cascadeflow.run(user="u-3"):
        call(provider)
    with cascadeflow.run(user="u-4"):  # another user has a budget of their own
        call(provider)
    cascadeflow.shutdown()
    spent = sum(e["cost"] for e in events(tmp_path / "ledger.db") if e["user"] == "u-3")
    assert spent <= 0.0002
    assert spent == pytest.approx(provider.billed(PRICES) - events(tmp_path / "ledger.db")[-1]["cost"])
    assert ok > 3
    thresholds = [a for a in alerts if a.kind == "budget_threshold"]
    assert len(thresholds) == 1 and thresholds[0].attributes["value"] == "u-3"


def test_a_budget_in_observe_mode_alerts_and_never_stops(provider: Any, tmp_path: Path) -> None:
    config = configure(tmp_path, '[budgets.daily]\nscope = "global"\nwindow = "day"\n'
                                 'limit = 0.00005\nmode = "observe"\nalert_at = 0.5\n')
    alerts: list[Any] = []
    cascadeflow.init(mode="enforce", config=config, alerts=[alerts.append])
    for _ in range(8):
        call(provider)
    cascadeflow.flush()
    assert sorted({a.kind for a in alerts}) == ["budget_threshold", "budget_window_exceeded"]
    assert len(alerts) == 2


def test_a_process_killed_mid_run_leaves_every_settled_step_behind(provider: Any,
                                                                   tmp_path: Path) -> None:
    """SIGKILL a process that calls under a daily budget; a new process sees every step the
    killed one had settled and enforces the budget against them."""
    limit = 0.0004
    config = configure(tmp_path, f'[budgets.daily]\nscope = "user"\nwindow = "day"\nlimit = {limit}\n')
    child = subprocess.Popen([sys.executable, str(CLIENT), str(config), provider.url, "u-5", "loop"],
                             stdout=subprocess.PIPE, text=True, env=_env())
    assert child.stdout is not None
    reported = 0
    for line in child.stdout:
        reported += line.strip() == "ok"
        if reported == 10:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    db = tmp_path / "ledger.db"
    before = [e for e in events(db) if e["status"] == "ok"]
    assert len(before) >= reported
    cascadeflow.init(mode="enforce", config=config)
    mine = 0
    with pytest.raises(cascadeflow.BudgetExceeded) as info, cascadeflow.run(user="u-5"):
        for _ in range(100):
            call(provider)
            mine += 1
    assert info.value.reason == "budget_window_exceeded"
    cascadeflow.shutdown()
    after = [e for e in events(db) if e["status"] == "ok"]
    assert len(after) == len(before) + mine
    assert sum(e["cost"] for e in after) <= limit
    assert mine < 34  # the killed process's spend was counted (alone, about 33 calls fit)


@pytest.mark.parametrize(("processes", "backend"), [(8, "sqlite"), (3, "redis")])
def test_processes_never_overrun_a_shared_daily_budget(provider: Any, tmp_path: Path,
                                                       processes: int, backend: str,
                                                       request: pytest.FixtureRequest) -> None:
    """8 processes x 50 concurrent calls against one user's daily budget on one SQLite file, and
    3 x 50 pointed at one real Redis."""
    limit = 0.0006
    url = f'url = "{request.getfixturevalue("redis_url")}"\n' if backend == "redis" else ""
    config = configure(tmp_path, f'{url}[budgets.daily]\nscope = "user"\nwindow = "day"\n'
                                 f'limit = {limit}\n')
    env = dict(_env(), CASCADEFLOW_BUDGET_WAIT_S="60")  # a loaded machine settles slowly
    children = [subprocess.Popen([sys.executable, str(CLIENT), str(config), provider.url, "u-6",
                                  "burst", "50"], stdout=subprocess.PIPE, text=True, env=env)
                for _ in range(processes)]
    outcomes: list[str] = []
    for child in children:
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 0
        outcomes += json.loads(out.strip().splitlines()[-1])
    assert len(outcomes) == processes * 50
    assert set(outcomes) == {"ok", "budget_window_exceeded"}
    written = [e for e in events(tmp_path / "ledger.db") if e["status"] == "ok"]
    assert len(written) == outcomes.count("ok") == len(provider.answers)
    spent = sum(e["cost"] for e in written)
    assert spent <= limit
    assert spent == pytest.approx(provider.billed(PRICES), abs=1e-12)
    if backend == "sqlite":
        (settled,) = rows(tmp_path / "ledger.db", "SELECT SUM(amount) FROM counters")[0]
        assert rows(tmp_path / "ledger.db", "SELECT COUNT(*) FROM holds") == [(0,)]
    else:
        store = open_redis(request.getfixturevalue("redis_url"), "test")
        ((settled, held),) = store.figures([Counter("budget:daily:u-6", windows.parse("day"),
                                                    nano(limit))], time.time())
        store.close()
        assert held == 0
    assert settled == pytest.approx(spent * 1e9, abs=len(written))  # nano-dollars, rounded per call


# -- rate limits ------------------------------------------------------------------------------

def test_requests_per_minute_admits_exactly_the_limit(provider: Any, tmp_path: Path) -> None:
    config = configure(tmp_path, '[limits.per_user]\nscope = "user"\nrequests_per_minute = 5\n')
    cascadeflow.init(mode="enforce", config=config)
    outcomes = []
    with cascadeflow.run(user="u-7"):
        for _ in range(8):
            try:
                call(provider)
                outcomes.append("ok")
            except cascadeflow.RateLimited as exc:
                outcomes.append(exc.reason)
    assert outcomes == ["ok"] * 5 + ["rate_limited"] * 3
    assert len(provider.answers) == 5


def test_observe_records_would_be_rate_limits(provider: Any, tmp_path: Path) -> None:
    config = configure(tmp_path, '[limits.per_user]\nscope = "user"\nrequests_per_minute = 2\n')
    cascadeflow.init(mode="observe", config=config)
    with cascadeflow.run(user="u-8") as session:
        for _ in range(4):
            call(provider)
    trace = session.trace()
    assert [(e["action"], e["reason"], e["applied"]) for e in trace] == \
        [("allow", "ok", False)] * 2 + [("stop", "rate_limited", False)] * 2
    assert len(provider.answers) == 4


def test_tokens_per_minute_stops_once_the_window_is_used_up(provider: Any, tmp_path: Path) -> None:
    config = configure(tmp_path, '[limits.per_user]\nscope = "user"\ntokens_per_minute = 100\n')
    cascadeflow.init(mode="enforce", config=config)
    used = 0
    with pytest.raises(cascadeflow.RateLimited, match="tokens in the last minute"), \
            cascadeflow.run(user="u-9"):
        for _ in range(50):
            response = call(provider)
            used += response.usage.total_tokens
            cascadeflow.flush()  # settled before the next decision reads the window
    assert 100 <= used < 100 + 60


def _env() -> dict[str, str]:
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    env.pop("CASCADEFLOW_CONFIG", None)
    env.pop("CASCADEFLOW_MODE", None)
    return env
