"""Bad input gets a `ConfigError` naming the setting, the value and where it came from; a bad
edit of a live guardrail policy never reaches a call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import openai
import pytest
from cascadeflow.alert import Alert
from cascadeflow.cascade import Cascade, Tier
from cascadeflow.guardrails import load, scan_text, transform
from cascadeflow.testing import Fault
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from tests.conftest import chat_kwargs

BAD_RUN_ARGS = [
    ("budget", float("inf")), ("budget", float("nan")), ("budget", -1.0),
    ("max_latency_ms", float("inf")),
    ("kpi_weights", {"quality": float("nan")}), ("kpi_weights", {"quality": float("inf")}),
    ("kpi_weights", {"quality": -1.0}), ("kpi_weights", {"quality": True, "cost": 0.5}),
    ("tools_deny", "refund"), ("tools_allow", "refund"), ("tools_allow", 5),
    ("metadata", "str"), ("metadata", {1: "x"}), ("user", 3), ("project", ["p"]),
]


@pytest.mark.parametrize(("setting", "value"), BAD_RUN_ARGS)
def test_bad_run_argument(setting: str, value: Any) -> None:
    with pytest.raises(cascadeflow.ConfigError) as caught:
        cascadeflow.run(**{setting: value})
    assert caught.value.setting == setting and caught.value.source == "run()"


def test_a_string_deny_list_is_refused_not_split_into_letters() -> None:
    with pytest.raises(cascadeflow.ConfigError) as caught:
        cascadeflow.run(tools_deny="refund")
    assert "['refund']" in str(caught.value)


@pytest.mark.parametrize(("var", "raw"), [
    ("CASCADEFLOW_KPI_WEIGHTS", '{"quality": null}'), ("CASCADEFLOW_KPI_WEIGHTS", '{"quality": true}'),
    ("CASCADEFLOW_BUDGET", "inf"), ("CASCADEFLOW_BUDGET", "nan"), ("CASCADEFLOW_BUDGET_WAIT_S", "inf"),
])
def test_bad_environment_value(monkeypatch: pytest.MonkeyPatch, var: str, raw: str) -> None:
    monkeypatch.setenv(var, raw)
    with pytest.raises(cascadeflow.ConfigError) as caught:
        cascadeflow.init(mode="observe")
    assert caught.value.source == f"env {var}"


def test_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "cascadeflow.toml"
    path.write_bytes(b'mode = "observe"\n# caf\xe9\n')
    with pytest.raises(cascadeflow.ConfigError) as caught:
        cascadeflow.init(config=path)
    assert caught.value.setting == "config" and "UTF-8" in str(caught.value)


def test_an_unrelated_latin1_pyproject_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_bytes(b'[project]\nname = "caf\xe9"\n')
    report = cascadeflow.init(mode="observe")  # the test runs in tmp_path
    assert report.mode == "observe"


@pytest.mark.parametrize(("name", "content"), [
    ("policy.json", b'{"version": "1", "profiles": '),
    ("policy.toml", b'version = "1"\n# \xff\xfe\n'),
])
def test_guardrail_policy_that_cannot_be_read(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(cascadeflow.ConfigError) as caught:
        cascadeflow.init(mode="observe", guardrails_file=path)
    assert caught.value.setting == "guardrails_file" and str(path) in caught.value.source


def test_guardrail_errors_name_where_the_setting_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(cascadeflow.ConfigError) as caught:
        cascadeflow.init(mode="observe", guardrails="nope")
    assert caught.value.source == "init()"
    monkeypatch.setenv("CASCADEFLOW_GUARDRAILS", "nope")
    with pytest.raises(cascadeflow.ConfigError) as caught:
        cascadeflow.init(mode="observe")
    assert caught.value.source == "env CASCADEFLOW_GUARDRAILS"
    monkeypatch.delenv("CASCADEFLOW_GUARDRAILS")
    with pytest.raises(cascadeflow.ConfigError) as caught:
        cascadeflow.init(mode="observe", guardrails_file="missing.toml")
    assert caught.value.source == "init()"


def test_bare_agent_decorator_runs_the_agent() -> None:
    @cascadeflow.agent
    def triage(ticket: str) -> str:
        return cascadeflow.current_session().agent or ""

    assert triage("refund") == "triage"


def test_agent_compliance_profile_is_checked_at_decoration() -> None:
    with pytest.raises(cascadeflow.ConfigError) as caught:
        @cascadeflow.agent(compliance="no-such-profile")
        def medical() -> None:
            pass
    assert caught.value.setting == "compliance" and caught.value.source == "@agent('medical')"


def test_agent_compliance_from_the_config_file_is_known_before_init(tmp_path: Path) -> None:
    (tmp_path / "cascadeflow.toml").write_text('[compliance.internal]\nmodels = ["local/*"]\n')

    @cascadeflow.agent(compliance="internal")
    def helper() -> str:
        return "ok"

    cascadeflow.init(mode="observe")
    assert helper() == "ok"


# -- hot reload ------------------------------------------------------------------------------

POLICY = {"version": "v1", "profiles": {"triage": {"input": [
    {"name": "cards", "detector": "pii", "types": ["credit_card"], "action": "redact"}]}}}


def _edit(path: Path, text: str, bump: float) -> None:
    path.write_text(text)
    os.utime(path, (time.time() + bump, time.time() + bump))
    time.sleep(1.1)  # the store looks at the file at most once a second


def test_a_broken_json_edit_keeps_the_last_good_policy(tmp_path: Path, provider: Any) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(POLICY))
    alerts: list[Alert] = []
    cascadeflow.init(mode="enforce", guardrails_file=path, alerts=[alerts.append])
    with cascadeflow.run(guardrails="triage") as session:
        _edit(path, '{"version": "v2", "profiles": {', 5)
        litellm.completion(**chat_kwargs(provider, "card 4242 4242 4242 4242"))
    assert "4242 4242 4242 4242" not in json.dumps(provider.bodies())  # still redacted by v1
    assert [f["policy_version"] for f in session.findings()] == ["v1"]
    cascadeflow.shutdown()
    assert [a.kind for a in alerts] == ["guardrail_policy_rejected"]


def test_a_removed_profile_stays_in_force_and_alerts(tmp_path: Path, provider: Any) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(POLICY))
    alerts: list[Alert] = []
    cascadeflow.init(mode="enforce", guardrails_file=path, alerts=[alerts.append])
    with cascadeflow.run(guardrails="triage"):
        _edit(path, json.dumps({"version": "v2", "profiles": {"other": {}}}), 5)
        litellm.completion(**chat_kwargs(provider, "card 4242 4242 4242 4242"))
    assert "4242 4242 4242 4242" not in json.dumps(provider.bodies())
    cascadeflow.shutdown()
    [missing] = [a for a in alerts if a.kind == "guardrail_profile_missing"]
    assert missing.severity == "error" and "triage" in missing.message


# -- secrets on the surfaces that showed them -----------------------------------------------

KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"


def test_a_key_in_a_config_file_is_not_echoed_by_the_error(tmp_path: Path) -> None:
    path = tmp_path / "cascadeflow.toml"
    path.write_text(f'[cascades.support]\ntiers = [{{model = "openai/gpt-4o", api_key = "{KEY}"}}]\n')
    with pytest.raises(cascadeflow.ConfigError) as caught:
        cascadeflow.init(mode="observe", config=path)
    assert KEY not in str(caught.value) and KEY not in repr(caught.value.value)


def test_metadata_secrets_are_masked_in_summary_and_saved_file(tmp_path: Path) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run(metadata={"note": f"key {KEY}", "api_key": "plain-value-123"}) as session:
        pass
    saved = session.save(tmp_path / "trace.jsonl").read_text()
    for text in (json.dumps(session.summary()), saved):
        assert KEY not in text and "plain-value-123" not in text


def test_provider_error_texts_are_masked_in_fallback_events(provider: Any) -> None:
    events: list[dict[str, Any]] = []
    alerts: list[Alert] = []
    provider.inject(model="gpt-4o", status=503, message=f"overloaded; your key {KEY} is fine")
    cascadeflow.init(mode="enforce", alerts=[alerts.append])
    params = {"api_base": provider.url, "api_key": "sk-test-0000000000000000"}
    cascade = Cascade([Tier("openai/gpt-4o", params=params), Tier("openai/gpt-4o-mini", params=params)],
                      name="support", on_fallback=events.append)
    with cascadeflow.run() as session:
        cascade.complete(messages=[{"role": "user", "content": "hi"}])
    cascadeflow.shutdown()
    assert events and "overloaded" in json.dumps(events)
    for surface in (events, session.trace(), [a.message for a in alerts], [a.attributes for a in alerts]):
        assert KEY not in json.dumps(surface, default=str)


# -- user callbacks cannot break a call ------------------------------------------------------

def test_an_approver_that_raises_denies_the_tool() -> None:
    def approver(tool: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        raise TimeoutError("the pager is down")

    cascadeflow.init(mode="enforce", approver=approver)

    @cascadeflow.tool(irreversible=True)
    def refund(order_id: str) -> str:
        return f"refunded {order_id}"

    with cascadeflow.run() as session, pytest.raises(cascadeflow.ToolDenied) as caught:
        refund("A-1")
    assert caught.value.reason == "approver_error" and "TimeoutError" in str(caught.value)
    assert session.trace()[0]["reason"] == "approver_error"


def test_a_failed_save_leaves_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        pass
    path = session.save(tmp_path / "trace.jsonl")
    before = path.read_text()

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)  # the write fails as a full disk makes it fail
    with pytest.raises(OSError):
        session.save(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["trace.jsonl"]  # no temporary file left


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_a_tool_call_without_a_function_is_recorded_not_raised(provider: Any, mode: str) -> None:
    cascadeflow.init(mode=mode, capture_content=True)
    messages = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "call_1", "type": "function", "function": None}]},
                {"role": "user", "content": "and now?"}]
    with cascadeflow.run(budget=1.0, guardrails="default") as session:
        stream = openai.OpenAI(base_url=provider.url, api_key="sk-test-0000000000000000").chat \
            .completions.create(model="gpt-4o-mini", messages=messages, stream=True)  # type: ignore[arg-type]
        for _ in stream:
            pass
    assert session.trace()[0]["status"] == "ok"


class _Exploding(SpanProcessor):
    """A user's span processor with a bug in both hooks."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        raise RuntimeError("processor bug")

    def on_end(self, span: Any) -> None:
        raise RuntimeError("processor bug")


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_a_span_processor_that_raises_breaks_nothing(provider: Any, mode: str) -> None:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(_Exploding())
    cascadeflow.init(mode=mode, tracer_provider=tracer_provider)
    with cascadeflow.run(budget=1.0) as session:
        response = litellm.completion(**chat_kwargs(provider, "hi"))
        litellm.completion(**chat_kwargs(provider, "again"))
    assert response.choices[0].message.content
    entries = session.trace()
    assert [e["status"] for e in entries] == ["ok", "ok"]
    summary = session.summary()
    assert summary["cost_total"] > 0 and summary["steps"] == 2
    with cascadeflow.run(budget=1.0) as later:  # nothing was left reserved
        litellm.completion(**chat_kwargs(provider, "third"))
    assert later.trace()[0]["status"] == "ok"
    assert cascadeflow.stats()["telemetry_errors"] >= 2


class _Hanging(SpanProcessor):
    """A user's span processor whose exporter hangs (a wedged collector, a deadlock)."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def on_end(self, span: Any) -> None:
        self.gate.wait()


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_a_span_processor_that_hangs_holds_up_no_run(provider: Any, mode: str) -> None:
    hanging = _Hanging()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(hanging)
    cascadeflow.init(mode=mode, tracer_provider=tracer_provider)
    results: dict[str, Any] = {}
    stalls = cascadeflow.stats()["telemetry_stalls"]

    def calls() -> None:
        for name in ("first", "second"):  # the second run is not held up at all
            with cascadeflow.run(budget=1.0) as session:
                litellm.completion(**chat_kwargs(provider, name))
                litellm.completion(**chat_kwargs(provider, "again"))
            results[name] = session.summary()

    try:
        thread = threading.Thread(target=calls, daemon=True)
        thread.start()
        thread.join(60)  # a safety net: before, the run's exit waited for the processor forever
        assert not thread.is_alive()
        assert results["first"]["steps"] == results["second"]["steps"] == 2
        assert results["second"]["cost_total"] > 0
        assert cascadeflow.stats()["telemetry_stalls"] == stalls + 1  # waited once, then not
    finally:
        hanging.gate.set()
    assert cascadeflow.flush(30)


def test_an_exporter_that_hangs_holds_up_no_shutdown_or_init(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cascadeflow.lifecycle, "FLUSH_AT_EXIT_S", 0.5)  # how long shutdown waits
    entered, gate = threading.Event(), threading.Event()

    class Hanging(SpanExporter):  # a wedged collector behind the usual batch processor
        def export(self, spans: Any) -> SpanExportResult:
            entered.set()
            gate.wait()
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Hanging(), schedule_delay_millis=10))
    cascadeflow.init(mode="observe", tracer_provider=tracer_provider)

    @cascadeflow.tool
    def lookup() -> int:
        return 1

    stalls = cascadeflow.stats()["telemetry_stalls"]
    try:
        with cascadeflow.run():
            lookup()
        assert entered.wait(30)
        with cascadeflow.run():  # a second span, queued behind the export that hangs
            lookup()

        def again() -> None:  # the SDK's force_flush waits for the export, whatever its timeout
            cascadeflow.shutdown()
            cascadeflow.init(mode="observe", tracer_provider=tracer_provider)
            cascadeflow.init(mode="observe", tracer_provider=tracer_provider)

        thread = threading.Thread(target=again, daemon=True)
        thread.start()
        thread.join(60)  # a safety net: before, shutdown() waited for the exporter forever
        assert not thread.is_alive()
        assert cascadeflow.stats()["telemetry_stalls"] > stalls
    finally:
        gate.set()


def test_a_slow_exporter_is_waited_for_by_flush_after_calls_could_not_help_the_worker(
        provider: Any) -> None:
    """Calls outside any run() with a synchronous exporter slower than the calls: once 64 tasks
    waited, a call's entry tried 50 ms to take over from the telemetry worker (busy in an
    export) and marked it stuck, as if a flush had timed out on it. flush() and shutdown()
    then returned at once without waiting for the spans (not even counting a stall), and an
    exit lost them."""
    gate = threading.Event()
    exported: list[str] = []

    class Slow(SpanExporter):  # a collector slower to answer than the application's calls
        def export(self, spans: Any) -> SpanExportResult:
            gate.wait(30)
            exported.extend(span.name for span in spans)
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(Slow()))
    cascadeflow.init(mode="observe", tracer_provider=tracer_provider)
    for _ in range(40):
        litellm.completion(**chat_kwargs(provider, "hello"))
    answers = threading.Timer(0.3, gate.set)  # the collector answers, later than flush() starts
    answers.start()
    try:
        assert cascadeflow.flush()
        assert exported == ["chat gpt-4o-mini"] * 40
    finally:
        gate.set()
        answers.cancel()


def test_a_long_run_keeps_a_bounded_trace_and_exact_totals() -> None:
    cascadeflow.init(mode="observe", run_max_entries=50)

    @cascadeflow.tool
    def lookup(i: int) -> int:
        return i

    with cascadeflow.run() as session:
        for i in range(300):
            lookup(i)
    summary = session.summary()
    assert summary["steps"] == 300 and summary["actions"]["allow"] == 300
    assert len(session.trace()) == 50 and summary["trace_entries_dropped"] == 250
    assert session.trace()[-1]["step"] == 300


def test_redacting_many_matches_keeps_every_edit_in_place() -> None:
    """The redaction is built in one pass; each placeholder lands where its match was."""
    cascadeflow.init(mode="enforce")
    rows = [f"{i},user{i}@example.com,4242 4242 4242 4242\n" for i in range(2000)]
    text = "".join(rows)
    redacted = transform(text, scan_text(load(None).profiles["pii"].input, text, "input"))
    assert redacted.splitlines() == [f"{i},[EMAIL],[CREDIT_CARD]" for i in range(2000)]


EXIT_SCRIPT = """
import sys, time
import cascadeflow
from cascadeflow.testing import serve
import litellm

out = open(sys.argv[1], "a")

def slow_sink(alert):
    time.sleep(0.02)  # a sink slower than the program that raises the alerts
    out.write(alert.kind + "\\n")
    out.flush()

cascadeflow.init(mode="observe", budget_alert=0.01, alerts=[slow_sink])
with serve() as provider:
    for _ in range(20):  # each run spends past 1% of its budget: one alert each
        with cascadeflow.run(budget=0.0001):
            litellm.completion(model="openai/gpt-4o-mini", api_base=provider.url, api_key="k",
                               messages=[{"role": "user", "content": "hello"}])
# no shutdown(): the interpreter exits here
"""


SPANS_AT_EXIT_SCRIPT = """
import sys, time
import cascadeflow
from cascadeflow.testing import serve
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
import litellm

out = open(sys.argv[1], "a")

class SlowExporter(SpanExporter):  # slower than the program
    def export(self, spans):
        time.sleep(0.02)
        out.write("".join(span.name + "\\n" for span in spans))
        out.flush()
        return SpanExportResult.SUCCESS

tracer_provider = TracerProvider()  # it shuts itself down at exit, and then takes no span
tracer_provider.add_span_processor(SimpleSpanProcessor(SlowExporter()))
cascadeflow.init(mode="observe", tracer_provider=tracer_provider)
server = serve()  # left serving: the interpreter exits right after the last call
provider = server.__enter__()
for _ in range(10):  # outside any run(): nothing waits for the spans before exit
    litellm.completion(model="openai/gpt-4o-mini", api_base=provider.url, api_key="k",
                       messages=[{"role": "user", "content": "hello"}])
# no shutdown(): the interpreter exits here
"""


def _lines_at_exit(tmp_path: Path, script_text: str) -> list[str]:
    """Run `script_text` as an application that exits without `shutdown()`; the lines it wrote
    to the file named by its argument."""
    script, received = tmp_path / "app.py", tmp_path / "received.txt"
    script.write_text(script_text)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    subprocess.run([sys.executable, str(script), str(received)], check=True, env=env, timeout=120)
    return received.read_text().splitlines()


def test_queued_spans_reach_the_processors_at_normal_exit(tmp_path: Path) -> None:
    assert _lines_at_exit(tmp_path, SPANS_AT_EXIT_SCRIPT) == ["chat gpt-4o-mini"] * 10


def test_queued_alerts_are_delivered_at_normal_exit(tmp_path: Path) -> None:
    assert _lines_at_exit(tmp_path, EXIT_SCRIPT) == ["budget_threshold"] * 20


def test_alerts_a_hanging_sink_never_takes_are_counted(provider: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cascadeflow.lifecycle, "FLUSH_AT_EXIT_S", 0.5)  # how long shutdown waits
    gate = threading.Event()
    cascadeflow.init(mode="observe", budget_alert=0.01, alerts=[lambda alert: gate.wait(30)])
    for _ in range(20):
        with cascadeflow.run(budget=0.0001):
            litellm.completion(**chat_kwargs(provider, "hello"))
    cascadeflow.shutdown()
    gate.set()
    assert cascadeflow.stats()["alerts_dropped"] >= 19  # the first may be in the sink's hands


@pytest.mark.parametrize("then", ["init", "shutdown"])
def test_an_alert_of_a_call_in_flight_through_init_or_shutdown_is_delivered_before_flush_returns(
        provider: Any, then: str) -> None:
    """The call's budget alert went to the closed dispatcher, which started a thread again for
    it: nothing waited for that thread (flush() returned before the sink had it, and an exit
    lost it), and it could take the closing thread's end marker, leaving that one behind."""
    delivered: list[str] = []

    def slow_sink(alert: Alert) -> None:
        time.sleep(0.2)  # a webhook's round trip: longer than flush() took to return
        delivered.append(alert.kind)

    cascadeflow.init(mode="observe", budget_alert=0.01, alerts=[slow_sink])
    dropped = cascadeflow.stats()["alerts_dropped"]  # counted for the whole process

    def spend() -> None:
        with cascadeflow.run(budget=0.0001):  # spends past 1% of its budget: one alert
            litellm.completion(**chat_kwargs(provider, "hello"))

    provider.inject(Fault(hold=True, times=1))
    in_flight = threading.Thread(target=spend)
    in_flight.start()
    deadline = time.monotonic() + 20
    while not provider.requests:  # it waits for its answer
        assert time.monotonic() < deadline, "the call never reached the provider"
        time.sleep(0.01)
    if then == "init":
        cascadeflow.init(mode="observe", budget_alert=0.01, alerts=[slow_sink])  # a reload
    else:
        cascadeflow.shutdown()
    provider.release()
    in_flight.join(20)
    assert not in_flight.is_alive()
    assert cascadeflow.flush(20)
    assert delivered == ["budget_threshold"]
    assert cascadeflow.stats()["alerts_dropped"] == dropped


def test_a_forked_child_delivers_its_own_alerts(provider: Any, tmp_path: Path) -> None:
    """A process that had raised an alert, then forked (a prefork server, a multiprocessing
    pool): the child's dispatcher kept the parent's thread as started, which does not run
    there, so the child's alerts were queued for nobody; each flush() waited its 5 s for them."""
    received = tmp_path / "received.txt"

    def sink(alert: Alert) -> None:
        with received.open("a") as out:
            out.write(f"{os.getpid()} {alert.kind}\n")

    cascadeflow.init(mode="observe", budget_alert=0.01, alerts=[sink])

    def spend() -> None:
        with cascadeflow.run(budget=0.0001):  # spends past 1% of its budget: one alert
            litellm.completion(**chat_kwargs(provider, "hello"))

    spend()
    assert cascadeflow.flush(20)  # the parent's alert thread runs
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        try:
            spend()
            cascadeflow.flush(20)
            os._exit(0 if f"{os.getpid()} budget_threshold" in received.read_text() else 1)
        finally:
            os._exit(2)
    assert os.waitpid(pid, 0)[1] == 0
    assert received.read_text().splitlines() == [f"{os.getpid()} budget_threshold",
                                                 f"{pid} budget_threshold"]


def test_flush_says_false_while_an_alert_is_still_on_its_way(provider: Any) -> None:
    """flush(timeout) returned True while a slow sink had not taken the alert yet: the caller
    was told everything was delivered."""
    gate = threading.Event()
    delivered: list[str] = []

    def slow_sink(alert: Alert) -> None:
        gate.wait(30)  # a webhook slower to answer than the flush waits
        delivered.append(alert.kind)

    cascadeflow.init(mode="observe", budget_alert=0.01, alerts=[slow_sink])
    try:
        with cascadeflow.run(budget=0.0001):  # spends past 1% of its budget: one alert
            litellm.completion(**chat_kwargs(provider, "hello"))
        assert cascadeflow.flush(0.2) is False
        assert delivered == []
    finally:
        gate.set()
    assert cascadeflow.flush(20) is True
    assert delivered == ["budget_threshold"]


@pytest.mark.parametrize(("where", "error"), [("missing/trace.jsonl", FileNotFoundError),
                                              (".", IsADirectoryError)])
def test_a_save_that_cannot_write_names_the_path_asked_for(
        where: str, error: type[OSError], tmp_path: Path) -> None:
    """`session.save("runs/x.jsonl")` with no runs/ folder raised "No such file or directory:
    'runs/.x.jsonl.tzq0unsq.tmp'", naming a temporary file the caller never asked for; a folder
    as the target named the temporary file too. The error keeps its type and names the target."""
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        pass
    target = tmp_path / where
    with pytest.raises(error) as info:
        session.save(target)
    assert info.value.filename == str(target) and ".tmp" not in str(info.value), str(info.value)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
