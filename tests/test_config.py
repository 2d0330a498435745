"""Settings resolve keyword > env > file > default, and every bad value is a clear ConfigError."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cascadeflow
import pytest
from cascadeflow import ConfigError

from tests.conftest import forked_as_nobody


def test_defaults_are_off_and_reported() -> None:
    report = cascadeflow.init()
    assert report.mode == "off"
    assert report.instrumented == []
    assert report.sources["mode"] == "default"
    assert report.config_file is None


def test_keyword_beats_env_beats_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "cascadeflow.toml").write_text('mode = "observe"\n[run]\nbudget = 3.0\nmax_steps = 7\n')
    monkeypatch.setenv("CASCADEFLOW_BUDGET", "2.5")
    report = cascadeflow.init(mode="enforce")
    assert report.mode == "enforce"
    assert report.sources["mode"] == "code"
    assert report.sources["budget"] == "env"
    assert report.sources["max_steps"] == "file"
    assert report.sources["max_tool_calls"] == "default"
    assert report.config_file == str(tmp_path / "cascadeflow.toml")
    with cascadeflow.run() as session:
        pass
    assert session.summary()["budget"] == 2.5
    assert session.limits.max_steps == 7


def test_env_mode_switches_without_code_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADEFLOW_MODE", "observe")
    report = cascadeflow.init()
    assert report.mode == "observe"
    assert report.sources["mode"] == "env"
    assert "litellm" in report.instrumented and "openai" in report.instrumented


def test_pyproject_tool_section(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname="x"\n[tool.cascadeflow]\nmode = "observe"\n')
    report = cascadeflow.init()
    assert report.mode == "observe"
    assert report.sources["mode"] == "file"


def test_json_config_and_version(tmp_path: Path) -> None:
    path = tmp_path / "cf.json"
    path.write_text('{"version": "2026-11-01.2", "mode": "observe"}')
    report = cascadeflow.init(config=path)
    assert report.policy_versions == {"config": "2026-11-01.2", "guardrails": "builtin-2026-11-21"}
    assert report.sources["config"] == "code"


@pytest.mark.parametrize(
    ("kwargs", "env", "setting", "where"),
    [
        ({"mode": "enforced"}, {}, "mode", "init()"),
        ({}, {"CASCADEFLOW_MODE": "loud"}, "mode", "env CASCADEFLOW_MODE"),
        ({"budget": -1.0}, {}, "budget", "init()"),
        ({}, {"CASCADEFLOW_BUDGET": "lots"}, "budget", "env CASCADEFLOW_BUDGET"),
        ({}, {"CASCADEFLOW_MAX_STEPS": "1.5"}, "max_steps", "env CASCADEFLOW_MAX_STEPS"),
        ({"compliance": "sox"}, {}, "compliance", "init()"),
        ({}, {"CASCADEFLOW_COMPLIANCE": "sox"}, "compliance", "env CASCADEFLOW_COMPLIANCE"),
        ({"kpi_weights": {"speed": 1.0}}, {}, "kpi_weights", "init()"),
        ({}, {"CASCADEFLOW_KPI_WEIGHTS": "quality:1"}, "kpi_weights", "env CASCADEFLOW_KPI_WEIGHTS"),
        ({}, {"CASCADEFLOW_CAPTURE_CONTENT": "maybe"}, "capture_content",
         "env CASCADEFLOW_CAPTURE_CONTENT"),
        ({"budget_pressure": 2.0}, {}, "budget_pressure", "init()"),
    ],
)
def test_bad_values_name_setting_value_and_source(monkeypatch: pytest.MonkeyPatch, kwargs: dict,
                                                  env: dict, setting: str, where: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        cascadeflow.init(**kwargs)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.setting == setting
    assert err.source == where
    assert setting in str(err) and where in str(err)


@pytest.mark.parametrize(
    ("kwargs", "env", "setting"),
    [
        ({"mode": "observe"}, {"CASCADEFLOW_MODE": "enforec"}, "mode"),
        ({"budget": 1.0}, {"CASCADEFLOW_BUDGET": "-1"}, "budget"),
        ({"max_steps": 5}, {"CASCADEFLOW_MAX_STEPS": "-3"}, "max_steps"),
        ({"compliance": "gdpr"}, {"CASCADEFLOW_COMPLIANCE": "sox"}, "compliance"),
        ({"kpi_weights": {"cost": 1.0}}, {"CASCADEFLOW_KPI_WEIGHTS": "speed=1"}, "kpi_weights"),
        ({"unknown_price": "allow"}, {"CASCADEFLOW_UNKNOWN_PRICE": "maybe"}, "unknown_price"),
        ({"budget_wait_s": 1.0}, {"CASCADEFLOW_BUDGET_WAIT_S": "-2"}, "budget_wait_s"),
    ],
)
def test_a_bad_env_value_is_refused_even_where_code_overrides_it(
        monkeypatch: pytest.MonkeyPatch, kwargs: dict, env: dict, setting: str) -> None:
    # a bad value in the file is refused whether or not code overrides it, and so is an env
    # value that does not parse: a typo such as CASCADEFLOW_MODE=enforec is not ignored either
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    [var] = env
    with pytest.raises(ConfigError) as info:
        cascadeflow.init(**kwargs)
    assert info.value.setting == setting and info.value.source == f"env {var}"


def test_a_file_compliance_profile_overridden_by_code_is_still_checked(tmp_path: Path) -> None:
    (tmp_path / "cascadeflow.toml").write_text('[run]\ncompliance = "sox"\n')
    with pytest.raises(ConfigError) as info:
        cascadeflow.init(mode="observe", compliance="gdpr")
    assert info.value.setting == "compliance" and "cascadeflow.toml" in info.value.source


def test_env_kpi_weights_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADEFLOW_KPI_WEIGHTS", "quality=0.6, cost=0.4")
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        assert session.limits.kpi_weights == {"quality": 0.6, "cost": 0.4}


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    (tmp_path / "cascadeflow.toml").write_text('mode = "observe"\nbudget = = 1\n')
    with pytest.raises(ConfigError) as info:
        cascadeflow.init()
    assert "cascadeflow.toml" in str(info.value)
    assert "invalid TOML" in str(info.value)
    assert "line 2" in str(info.value)


def test_invalid_key_names_key_and_line(tmp_path: Path) -> None:
    (tmp_path / "cascadeflow.toml").write_text(
        'mode = "observe"\n\n[models."openai/gpt-4o"]\nquality = 0.9\n\n[models."openai/gpt-4o-mini"]\n'
        'quality = 7\n')
    with pytest.raises(ConfigError) as info:
        cascadeflow.init()
    err = info.value
    assert err.setting == "models.openai/gpt-4o-mini.quality"
    assert err.value == 7
    assert err.source.endswith("cascadeflow.toml line 7")


def test_a_key_in_a_dotted_table_or_a_list_of_tables_is_found_on_its_line(tmp_path: Path) -> None:
    """The line of the second tier's key, not of the table header (`[cascades.classify]`)."""
    (tmp_path / "cascadeflow.toml").write_text(
        'mode = "observe"\n\n[cascades.classify]\ndeadline_s = 5\ntiers = [\n'
        '  { model = "openai/gpt-4o", timeout_s = 10 },\n'
        '  { model = "openai/gpt-4o-mini", timeout_s = -1 },\n]\n')
    with pytest.raises(ConfigError) as info:
        cascadeflow.init()
    assert info.value.setting == "cascades.classify.tiers.1.timeout_s"
    assert info.value.source.endswith("cascadeflow.toml line 7")


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "cascadeflow.toml").write_text('mode = "observe"\nbugdet = 1.0\n')
    with pytest.raises(ConfigError) as info:
        cascadeflow.init()
    assert info.value.setting == "bugdet"
    assert "line 2" in info.value.source


def test_unknown_compliance_in_agent_section(tmp_path: Path) -> None:
    (tmp_path / "cascadeflow.toml").write_text('[agents.triage]\ncompliance = "sox"\n')
    with pytest.raises(ConfigError) as info:
        cascadeflow.init(mode="observe")
    assert info.value.setting == "agents.triage.compliance"


def test_missing_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CASCADEFLOW_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError) as info:
        cascadeflow.init()
    assert info.value.source == "env CASCADEFLOW_CONFIG"
    assert "not found" in str(info.value)


def test_bad_run_and_agent_arguments() -> None:
    cascadeflow.init(mode="observe")
    with pytest.raises(ConfigError) as info:
        cascadeflow.run(budget=-2)
    assert info.value.source == "run()" and info.value.setting == "budget"
    with pytest.raises(ConfigError) as info:
        cascadeflow.run(compliance="nope")
    assert info.value.setting == "compliance"
    with pytest.raises(ConfigError) as info:
        cascadeflow.agent(name="a", kpi_weights={"cost": 1, "vibes": 2})(lambda: None)
    assert info.value.source == "@agent('a')"
    with pytest.raises(ConfigError):
        cascadeflow.run(max_steps=0)
    for setting in ("budget", "max_steps", "max_tool_calls", "max_latency_ms"):
        with pytest.raises(ConfigError) as info:  # True is no amount (it read as 1)
            cascadeflow.run(**{setting: True})
        assert info.value.setting == setting and "True" in str(info.value)


def test_bad_config_keeps_previous_state() -> None:
    cascadeflow.init(mode="observe")
    with pytest.raises(ConfigError):
        cascadeflow.init(mode="nonsense")
    assert cascadeflow.current_session().mode == "observe"


def test_an_init_refused_after_the_ledger_opened_leaves_nothing_open(tmp_path: Path) -> None:
    """The ledger opens before the guardrail profile is checked: a refused init() closes it
    (each refused attempt kept the SQLite file open, and its writer ready)."""
    (tmp_path / "cascadeflow.toml").write_text('[ledger]\npath = "ledger.db"\n[run]\nguardrails = "nope"\n')

    def held() -> list[str]:
        fds = Path("/proc/self/fd")
        return [] if not fds.exists() else [
            link for fd in fds.iterdir() if (link := os.path.realpath(fd)).startswith(str(tmp_path))]

    for _ in range(3):
        with pytest.raises(ConfigError) as info:
            cascadeflow.init(mode="observe")
        assert info.value.setting == "guardrails"
    assert held() == []


DECORATED_BEFORE_INIT = """
import sys
import cascadeflow

@cascadeflow.agent("triage", compliance=sys.argv[2])  # at import, before init()
def triage() -> str:
    return cascadeflow.current_session().limits.compliance or ""

cascadeflow.init(mode="observe", config=sys.argv[1])
print(triage())
"""


def test_an_agent_may_name_a_profile_of_the_file_init_will_read(tmp_path: Path) -> None:
    """Decorators run at import; the file `init(config=...)` names is read later: a profile
    defined there is checked at the first call (it was refused at import), and a profile no
    file defines is refused then, naming the agent."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "cascadeflow.toml").write_text('[compliance.eu_only]\nmodels = ["openai/*"]\n')
    script = tmp_path / "app.py"
    script.write_text(DECORATED_BEFORE_INIT)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}

    def app(profile: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), str(conf / "cascadeflow.toml"), profile],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)

    assert app("eu_only").stdout.strip() == "eu_only"
    refused = app("eu_onyl")
    assert refused.returncode != 0 and "compliance='eu_onyl'" in refused.stderr
    assert "@agent('triage')" in refused.stderr


def test_custom_compliance_profile_from_file(tmp_path: Path) -> None:
    (tmp_path / "cascadeflow.toml").write_text('[compliance.internal]\nmodels = ["openai/*"]\n')
    cascadeflow.init(mode="observe")
    with cascadeflow.run(compliance="internal") as session:
        assert session.limits.compliance == "internal"


@pytest.mark.parametrize("value", [5, {"refund": True}, 2.5])
def test_a_tool_list_that_is_no_list_says_so(tmp_path: Path, value: object) -> None:
    """`tools_allow` / `tools_deny` given as a number or a table get the same message as a string
    (`expected a list of tool names`), in code and in the file, not pydantic's "valid tuple"."""
    cascadeflow.init(mode="observe")
    for setting in ("tools_allow", "tools_deny"):
        with pytest.raises(ConfigError, match="expected a list of tool names") as err:
            cascadeflow.run(**{setting: value})  # type: ignore[arg-type]
        assert err.value.setting == setting and err.value.source == "run()"
    with pytest.raises(ConfigError, match="expected a list of tool names") as err:
        cascadeflow.init(mode="observe", tools_exempt=value)  # type: ignore[arg-type]
    assert err.value.setting == "tools_exempt" and err.value.source == "init()"
    config = tmp_path / "cascadeflow.toml"
    rendered = "{ refund = true }" if isinstance(value, dict) else repr(value)
    config.write_text(f'[agents.triage]\ntools_deny = {rendered}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a list of tool names"):
        cascadeflow.init(mode="observe", config=config)
    cascadeflow.shutdown()


def test_instrument_given_as_one_name_says_so() -> None:
    with pytest.raises(ConfigError, match=r"expected a list such as \['litellm', 'openai'\]") as err:
        cascadeflow.init(mode="observe", instrument="openai")
    assert err.value.setting == "instrument" and err.value.source == "init()"


@pytest.mark.parametrize("setting", ["config", "guardrails_file"])
@pytest.mark.parametrize("value", [123, ["cascadeflow.toml"]])
def test_a_path_argument_that_is_no_path_says_so(setting: str, value: object) -> None:
    """`init(config=123)` was a TypeError from `os.fspath`, naming neither setting nor source."""
    with pytest.raises(ConfigError, match="expected a file path") as err:
        cascadeflow.init(mode="observe", **{setting: value})  # type: ignore[arg-type]
    assert err.value.setting == setting and err.value.source == "init()"
    assert err.value.value == value


CASCADE = '[cascades.c]\ntiers = [{ model = "openai/gpt-4o-mini" }]\n'


@pytest.mark.parametrize(("text", "setting"), [
    ("run_max_entries = true\n", "run_max_entries"),
    ("budget_alert = true\n", "budget_alert"),
    ("budget_wait_s = false\n", "budget_wait_s"),
    ('[models.mini]\ninput_cost_per_token = true\n', "models.mini.input_cost_per_token"),
    (CASCADE + "deadline_s = true\n", "cascades.c.deadline_s"),
    (CASCADE + "max_attempts = true\n", "cascades.c.max_attempts"),
    (CASCADE + "retries = { timeout = true }\n", "cascades.c.retries"),
    ('[cascades.c]\ntiers = [{ model = "a", timeout_s = true }]\n', "cascades.c.tiers.0.timeout_s"),
    ('[cascades.c]\ntiers = [{ deployments = [{ model = "a", weight = true }] }]\n',
     "cascades.c.tiers.0.deployments.0.weight"),
    ('[budgets.daily]\nscope = "user"\nwindow = "day"\nlimit = true\n', "budgets.daily.limit"),
    ('[limits.rpm]\nscope = "user"\nrequests_per_minute = true\n', "limits.rpm.requests_per_minute"),
    ("[ledger]\nqueue_size = true\n", "ledger.queue_size"),
])
def test_true_is_no_number_in_the_file(tmp_path: Path, text: str, setting: str) -> None:
    """pydantic reads `true` as 1: `limit = true` was a 1 USD budget, `input_cost_per_token =
    true` a price of 1 USD a token, `run_max_entries = true` a trace of one entry, silently. The
    docs promise `true` is refused for numbers, as `[run] budget = true` already was."""
    config = tmp_path / "cascadeflow.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a number") as err:
        cascadeflow.init(mode="observe", config=config)
    assert err.value.setting == setting
    assert err.value.source.startswith(f"file {config}")


@pytest.mark.parametrize("setting", ["run_max_entries", "ambient_max_entries", "budget_alert",
                                     "kpi_hysteresis", "budget_wait_s"])
def test_true_is_no_number_in_init(setting: str) -> None:
    with pytest.raises(ConfigError, match="expected a number") as err:
        cascadeflow.init(mode="observe", **{setting: True})  # type: ignore[arg-type]
    assert err.value.setting == setting and err.value.source == "init()"


AZURE_KEY = "0f3c9a7e2b6d41c8a5e9f0d3b7c1a2e4"


@pytest.mark.parametrize("text", [
    f'api_key = "{AZURE_KEY}"\n',
    f'[cascades.c]\ntiers = [{{ model = "azure/gpt-4o", api_key = "{AZURE_KEY}" }}]\n',
    f'[cascades.c]\ntiers = [{{ deployments = [{{ model = "a", password = "{AZURE_KEY}" }}] }}]\n',
    f'[ledger]\nredis_password = "{AZURE_KEY}"\n',
])
def test_a_key_named_like_a_secret_is_masked_in_the_error(tmp_path: Path, text: str) -> None:
    """`api_key = "..."` where `api_key_env` belongs is a likely mistake: the error named the key
    and showed its value, an Azure key (32 hex digits) no key format recognises, in full."""
    config = tmp_path / "cascadeflow.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="Extra inputs are not permitted") as err:
        cascadeflow.init(mode="observe", config=config)
    assert AZURE_KEY not in str(err.value)
    assert AZURE_KEY not in repr(err.value.value)


@pytest.mark.parametrize(("setting", "value"), [("tracer_provider", 5), ("meter_provider", "otel")])
@pytest.mark.parametrize("mode", ["off", "observe"])
def test_a_provider_that_is_no_provider_says_so(setting: str, value: object, mode: str) -> None:
    """`init(tracer_provider=5)` raised AttributeError ('int' object has no attribute
    'get_tracer') from deep in telemetry setup in observe, and passed unseen in off."""
    with pytest.raises(ConfigError, match="expected an OpenTelemetry") as err:
        cascadeflow.init(mode=mode, **{setting: value})  # type: ignore[arg-type]
    assert err.value.setting == setting and err.value.source == "init()"


@pytest.mark.parametrize(("name", "text"), [("cascadeflow.toml", 'mode = "observe"\n'),
                                            ("cascadeflow.json", '{"mode": "observe"}')])
def test_a_config_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path, name: str, text: str) -> None:
    """Editors on Windows may save UTF-8 with a BOM: the file was refused as `invalid TOML:
    Invalid statement (at line 1, column 1)`, with nothing to see there."""
    config = tmp_path / name
    config.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert cascadeflow.init(config=config).mode == "observe"


def test_a_working_directory_the_user_may_not_search_is_a_config_error(tmp_path: Path) -> None:
    """A service started in a directory its user may not read (`sudo -u app` from /root) raised
    PermissionError from deep inside the config lookup; it is now a ConfigError that names the
    path and the way out."""
    cascadeflow.init()  # whatever init imports lazily is imported before the child drops rights
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)

    as_root = os.geteuid() == 0  # (then the child runs as `nobody`, whom 0o700 keeps out)

    def init_there() -> str:
        if not as_root:
            locked.chmod(0)
        with pytest.raises(ConfigError) as refused:
            cascadeflow.init()
        return str(refused.value)

    try:
        message = forked_as_nobody(locked, init_there)
    finally:
        locked.chmod(0o700)
    assert str(locked / "cascadeflow.toml") in message and "Permission denied" in message
    assert "CASCADEFLOW_CONFIG" in message


@pytest.mark.parametrize("key", ["input_cost_per_token", "output_cost_per_token",
                                 "cache_read_input_token_cost", "cache_creation_input_token_cost",
                                 "latency_ms"])
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_a_model_price_or_latency_prior_that_is_not_finite_is_refused(
        tmp_path: Path, key: str, value: str) -> None:
    # `input_cost_per_token = inf` was taken: every step then cost inf USD (the summary's
    # cost_total too), and in enforce any budget stopped the first call
    (tmp_path / "cascadeflow.toml").write_text(
        f'mode = "observe"\n[models."openai/our-private-model"]\n{key} = {value}\n')
    with pytest.raises(ConfigError) as info:
        cascadeflow.init()
    err = info.value
    assert err.setting == f"models.openai/our-private-model.{key}"
    assert err.source.endswith("cascadeflow.toml line 3")


def test_a_rejected_price_is_shown_in_the_error(tmp_path: Path) -> None:
    # a price per token is no secret: the error names the value, not `[SECRET]` (the key ends
    # in `_token`, as secret keys such as `bearer_token` do)
    (tmp_path / "cascadeflow.toml").write_text(
        'mode = "observe"\n[models."openai/our-private-model"]\ninput_cost_per_token = -0.5\n'
        'output_cost_per_token = 0.001\n')
    with pytest.raises(ConfigError) as info:
        cascadeflow.init()
    err = info.value
    assert err.setting == "models.openai/our-private-model.input_cost_per_token"
    assert err.value == -0.5 and "-0.5" in str(err) and "SECRET" not in str(err)
