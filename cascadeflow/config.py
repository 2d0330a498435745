"""Settings as pydantic models, resolved keyword > environment > file > default.

Every value that reaches the runtime went through one of these models, so a bad value is a
`ConfigError` naming the setting, the value and where it came from, never a crash later.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from cascadeflow import _configfile, windows
from cascadeflow.errors import ConfigError
from cascadeflow.secrets import masked_url
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

Mode = Literal["off", "observe", "enforce"]
MODES: tuple[str, ...] = ("off", "observe", "enforce")
KPI_KEYS: frozenset[str] = frozenset({"quality", "cost", "latency"})


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Strict(_Frozen):
    """A section of the configuration: no unknown keys, and no bool where a number belongs."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1: `limit = true` would be a 1 USD budget, a price of true 1 USD
        annotation = cls.model_fields[info.field_name or ""].annotation
        if _numeric(annotation):
            values: Any = (value,)
        elif get_origin(annotation) is dict and isinstance(value, dict) and _numeric(get_args(annotation)[1]):
            values = value.values()
        else:
            return value
        if any(isinstance(v, bool) for v in values):
            raise ValueError(f"expected a number, got {value!r}")
        return value


def _numeric(annotation: Any) -> bool:
    """Whether a field holds an int or a float (optional, constrained), which bool is not."""
    if get_origin(annotation) is Annotated:
        return _numeric(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return any(_numeric(arg) for arg in get_args(annotation))
    return annotation in (int, float)


class RunLimits(_Frozen):
    """The limits a run, an agent or the config defaults can set. Built on every `run()` and
    agent call, so its numbers are refused as bools by name (`_no_bool`), not by the check of
    every field that the file's sections have (it doubled the cost of opening a run)."""

    budget: float | None = Field(default=None, ge=0, allow_inf_nan=False,
                                 description="USD for the session; None for no limit")
    max_steps: int | None = Field(default=None, ge=1)
    max_tool_calls: int | None = Field(default=None, ge=0)
    max_latency_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    compliance: str | None = None
    kpi_weights: dict[str, float] | None = None
    guardrails: str | None = None
    tools_allow: tuple[str, ...] | None = None
    tools_deny: tuple[str, ...] = ()

    @field_validator("kpi_weights")
    @classmethod
    def _check_kpi(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - KPI_KEYS)
        if unknown:
            raise ValueError(f"unknown KPI key(s) {unknown}; allowed: {sorted(KPI_KEYS)}")
        if not all(isinstance(w, int | float) and math.isfinite(w) for w in value.values()):
            raise ValueError("KPI weights must be finite numbers")
        if any(w < 0 for w in value.values()):
            raise ValueError("KPI weights must be >= 0")
        if not any(w > 0 for w in value.values()):
            raise ValueError("at least one KPI weight must be > 0")
        return dict(value)

    @field_validator("budget", "max_steps", "max_tool_calls", "max_latency_ms", "kpi_weights", mode="before")
    @classmethod
    def _no_bool(cls, value: Any) -> Any:
        # budget=True would be a budget of 1 USD, {"quality": True} a weight of 1
        numbers = value.values() if isinstance(value, dict) else (value,)
        if any(isinstance(v, bool) for v in numbers):
            raise ValueError(f"expected a number, got {value!r}")
        return value

    @field_validator("tools_allow", "tools_deny", mode="before")
    @classmethod
    def _check_tool_list(cls, value: Any) -> Any:
        return _tool_list(value)


def _tool_list(value: Any) -> Any:
    """A list of tool names (globs), said so for anything else, before pydantic's "valid tuple"."""
    if isinstance(value, str):  # tuple("refund") would be six one-letter tool names
        raise ValueError(f"expected a list of tool names, got the string {value!r}; write [{value!r}]")
    if value is not None and not isinstance(value, list | tuple | set | frozenset):
        raise ValueError(f"expected a list of tool names, got {value!r}")
    return value


class ModelSpec(_Strict):
    """A model in the candidate pool; prices override litellm's map (per token, USD)."""

    quality: float | None = Field(default=None, ge=0, le=1)
    latency_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    input_cost_per_token: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    output_cost_per_token: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    cache_read_input_token_cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    cache_creation_input_token_cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_output_tokens: int | None = Field(default=None, ge=1)
    tags: tuple[str, ...] = ()


class ComplianceProfile(_Strict):
    """Which models and tools a profile allows, and whether prompt content may be captured."""

    models: tuple[str, ...] = ()
    model_tags: tuple[str, ...] = ()
    tools_allow: tuple[str, ...] | None = None
    tools_deny: tuple[str, ...] = ()
    capture_content: bool = False
    guardrails: str | None = None
    description: str = ""

    @field_validator("tools_allow", "tools_deny", mode="before")
    @classmethod
    def _check_tool_list(cls, value: Any) -> Any:
        return _tool_list(value)


# Self-hosted providers keep data on the user's own machines, so every built-in profile allows them.
_SELF_HOSTED = ("ollama/*", "ollama_chat/*", "hosted_vllm/*", "local/*")

BUILTIN_COMPLIANCE: dict[str, ComplianceProfile] = {
    "gdpr": ComplianceProfile(
        models=_SELF_HOSTED, model_tags=("gdpr", "eu"), guardrails="pii",
        description="Models tagged gdpr or eu in [models], or self-hosted; no content capture.",
    ),
    "hipaa": ComplianceProfile(
        models=_SELF_HOSTED, model_tags=("hipaa",), guardrails="pii",
        description="Models tagged hipaa (covered by a BAA), or self-hosted; no content capture.",
    ),
    "pci": ComplianceProfile(
        models=_SELF_HOSTED, model_tags=("pci",), guardrails="pci",
        description="Models tagged pci, or self-hosted; no content capture.",
    ),
    "strict": ComplianceProfile(
        models=_SELF_HOSTED, model_tags=("strict",), tools_allow=(), guardrails="strict",
        description="Only models tagged strict or self-hosted; no tools unless allowed; no capture.",
    ),
}


# how a tier with several deployments picks one (see cascadeflow/balance.py)
Strategy = Literal["weighted", "least_busy", "lowest_latency"]


class DeploymentSpec(_Strict):
    """One deployment of a tier's model: its own endpoint and key, and its share of the load."""

    model: str
    api_base: str | None = None
    api_key_env: str | None = None  # the environment variable holding the key: never the key
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)


class TierSpec(_Strict):
    """One tier of a configured cascade: a model, several deployments of one, or a static answer."""

    model: str | None = None
    static: str | None = None
    deployments: tuple[DeploymentSpec, ...] | None = Field(default=None, min_length=1)
    strategy: Strategy = "weighted"
    timeout_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    degraded: bool = False
    api_base: str | None = None
    api_key_env: str | None = None  # the environment variable holding the key: never the key


class BreakerSpec(_Strict):
    failure_threshold: int = Field(default=5, ge=1)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    window: int = Field(default=20, ge=1)
    min_calls: int = Field(default=10, ge=1)
    recovery_timeout_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    half_open_max_calls: int = Field(default=1, ge=1)
    probe_timeout_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)


class CascadeSpec(_Strict):
    """`[cascades.<name>]`: a fallback chain callable by its logical name."""

    tiers: tuple[TierSpec, ...] = Field(min_length=1)
    deadline_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    max_attempts: int = Field(default=3, ge=1)
    backoff_initial_s: float = Field(default=0.25, ge=0, allow_inf_nan=False)
    backoff_max_s: float = Field(default=8.0, ge=0, allow_inf_nan=False)
    require_content: bool = True
    whole_answers: bool = True
    refusal_patterns: tuple[str, ...] | None = None
    breaker: BreakerSpec = BreakerSpec()
    retries: dict[str, Annotated[int, Field(ge=0)]] = {}  # failure class -> retries on a tier
    fallbacks: dict[str, tuple[TierSpec, ...]] = {}  # failure class -> its own chain


Scope = Literal["user", "project", "agent", "run", "global"]


class RetentionSpec(_Strict):
    """`[ledger.retention]`: how long each class of record is kept (`cascadeflow ledger purge`)."""

    usage_days: int = Field(default=400, ge=1)  # usage events: billing, the request log
    content_days: int = Field(default=30, ge=1)  # captured prompt text (opt-in), kept shorter
    outcome_days: int = Field(default=400, ge=1)


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
REDIS_EXPECTED = "expected a redis:// (or rediss://, unix://) URL"


class LedgerSpec(_Strict):
    """`[ledger]`: where usage events, windowed spend, reservations and rate limits live."""

    path: str = ".cascadeflow/ledger.db"  # SQLite file (relative to the config file)
    url: str | None = None  # redis://host:6379/0: spend, reservations, limits, breakers shared
    url_env: str | None = None  # or the environment variable holding that URL (its password too)
    store_failure: Literal["closed", "open"] = "closed"  # store unreachable: stop, or allow + alert
    time_zone: str = "UTC"  # where calendar windows (day, month) start
    queue_size: int = Field(default=10_000, ge=1)  # events waiting for the writer
    flush_interval_s: float = Field(default=0.2, gt=0, le=60, allow_inf_nan=False)
    events_jsonl: str | None = None  # metering sink: every usage event appended as one JSON line
    retention: RetentionSpec = RetentionSpec()
    breakers: bool = True  # with `url`, circuit breakers are shared too

    @field_validator("time_zone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        windows.time_zone(value)
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(REDIS_SCHEMES):
            raise ValueError(REDIS_EXPECTED)
        return value

    @model_validator(mode="after")
    def _one_url(self) -> LedgerSpec:
        if self.url is not None and self.url_env is not None:
            raise ValueError("set url or url_env, not both")
        return self

    def redis_url(self, env: Mapping[str, str], config_file: str | None) -> tuple[str, str] | None:
        """The Redis URL and where it came from (`url`, or the variable `url_env` names), or
        None without one. Read when the ledger opens, not when the config is resolved: the
        command line reads the SQLite file without the Redis secret."""
        if self.url is not None:
            return self.url, f"file {config_file}"
        if self.url_env is None:
            return None
        url = env.get(self.url_env, "")
        if not url:
            raise ConfigError("ledger.url_env", self.url_env, f"file {config_file}",
                              f"the environment variable {self.url_env} is not set")
        if not url.startswith(REDIS_SCHEMES):
            raise ConfigError("ledger.url", masked_url(url), f"env {self.url_env}", REDIS_EXPECTED)
        return url, f"env {self.url_env}"


NANO_USD = 1e-9  # the unit the ledger's store counts spend in


class BudgetSpec(_Strict):
    """`[budgets.NAME]`: a spend limit per user, project, agent, run or overall, per window."""

    scope: Scope
    window: str
    # USD; the store counts nano-USD, so a smaller limit would be 0 there
    limit: float = Field(ge=NANO_USD, allow_inf_nan=False)
    alert_at: float | None = Field(default=0.8, gt=0, le=1)  # alert once per window at this share
    mode: Literal["inherit", "observe"] = "inherit"
    only: tuple[str, ...] = ()  # apply to these users / projects / agents only

    @field_validator("window")
    @classmethod
    def _check_window(cls, value: str) -> str:
        windows.parse(value)
        return value


class LimitSpec(_Strict):
    """`[limits.NAME]`: request, token and spend rates per user, project, agent, run or overall."""

    scope: Scope
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    usd_per_hour: float | None = Field(default=None, ge=NANO_USD, allow_inf_nan=False)
    only: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _one_rate(self) -> LimitSpec:
        if self.requests_per_minute is None and self.tokens_per_minute is None \
                and self.usd_per_hour is None:
            raise ValueError("set at least one of requests_per_minute, tokens_per_minute, usd_per_hour")
        return self


class FileConfig(_Strict):
    """The shape of `cascadeflow.toml` (or `[tool.cascadeflow]` in pyproject.toml)."""

    version: str | None = None
    mode: Mode | None = None
    capture_content: bool | None = None
    otel: bool | None = None
    otel_client_spans: Literal["auto", "always", "never"] | None = None
    guardrails_file: str | None = None
    instrument: tuple[Literal["litellm", "openai"], ...] | None = None
    budget_pressure: float | None = Field(default=None, gt=0, lt=1)
    budget_alert: float | None = Field(default=None, gt=0, le=1)
    kpi_hysteresis: float | None = Field(default=None, ge=0)
    ambient_max_entries: int | None = Field(default=None, ge=1)
    run_max_entries: int | None = Field(default=None, ge=1)
    unknown_price: Literal["allow", "stop"] | None = None
    budget_wait_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    tools_exempt: tuple[str, ...] | None = None
    run: RunLimits = RunLimits()
    models: dict[str, ModelSpec] = {}
    compliance: dict[str, ComplianceProfile] = {}
    agents: dict[str, RunLimits] = {}
    cascades: dict[str, CascadeSpec] = {}
    ledger: LedgerSpec | None = None
    budgets: dict[str, BudgetSpec] = {}
    limits: dict[str, LimitSpec] = {}

    @field_validator("tools_exempt", mode="before")
    @classmethod
    def _check_tool_list(cls, value: Any) -> Any:
        return _tool_list(value)

    @field_validator("instrument", mode="before")
    @classmethod
    def _check_instrument(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, list | tuple):  # "openai" is not ("openai",)
            raise ValueError(f"expected a list such as ['litellm', 'openai'], got {value!r}")
        return value


# (setting, environment variable, parser name)
ENV_VARS: dict[str, str] = {
    "mode": "CASCADEFLOW_MODE",
    "budget": "CASCADEFLOW_BUDGET",
    "max_steps": "CASCADEFLOW_MAX_STEPS",
    "max_tool_calls": "CASCADEFLOW_MAX_TOOL_CALLS",
    "max_latency_ms": "CASCADEFLOW_MAX_LATENCY_MS",
    "compliance": "CASCADEFLOW_COMPLIANCE",
    "guardrails": "CASCADEFLOW_GUARDRAILS",
    "guardrails_file": "CASCADEFLOW_GUARDRAILS_FILE",
    "kpi_weights": "CASCADEFLOW_KPI_WEIGHTS",
    "capture_content": "CASCADEFLOW_CAPTURE_CONTENT",
    "otel_client_spans": "CASCADEFLOW_OTEL_CLIENT_SPANS",
    "unknown_price": "CASCADEFLOW_UNKNOWN_PRICE",
    "budget_wait_s": "CASCADEFLOW_BUDGET_WAIT_S",
}
RUN_SETTINGS = ("budget", "max_steps", "max_tool_calls", "max_latency_ms", "compliance", "kpi_weights",
                "guardrails")
DEFAULTS: dict[str, Any] = {
    "mode": "off",
    "capture_content": False,
    "otel": False,
    "otel_client_spans": "auto",
    "guardrails_file": None,
    "instrument": ("litellm", "openai"),
    "budget_pressure": 0.2,
    "budget_alert": 0.8,
    "kpi_hysteresis": 0.05,
    "ambient_max_entries": 10_000,
    "run_max_entries": 100_000,
    "unknown_price": "stop",
    "budget_wait_s": 5.0,
    # tools agent frameworks add to every request: pydantic-ai's output tools, Agents SDK handoffs
    "tools_exempt": ("final_result*", "transfer_to_*"),
}


@dataclass(frozen=True)
class Config:
    """Fully resolved settings, plus where each one came from."""

    mode: Mode = "off"
    capture_content: bool = False
    otel: bool = False
    # model-call CLIENT spans and gen_ai.client.* metrics: "auto" leaves them to an OpenTelemetry
    # instrumentation of the openai SDK when one wraps the call (docs/telemetry.md)
    otel_client_spans: Literal["auto", "always", "never"] = "auto"
    guardrails_file: str | None = None
    instrument: tuple[str, ...] = ("litellm", "openai")
    budget_pressure: float = 0.2
    budget_alert: float = 0.8
    kpi_hysteresis: float = 0.05
    ambient_max_entries: int = 10_000
    run_max_entries: int = 100_000  # trace entries a run() or agent session keeps (totals stay exact)
    unknown_price: Literal["allow", "stop"] = "stop"  # a budgeted call whose cost cannot be bounded
    budget_wait_s: float = 5.0  # how long a call waits for in-flight calls to settle
    tools_exempt: tuple[str, ...] = ("final_result*", "transfer_to_*")
    run: RunLimits = field(default_factory=RunLimits)
    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    compliance: Mapping[str, ComplianceProfile] = field(default_factory=lambda: dict(BUILTIN_COMPLIANCE))
    agents: Mapping[str, RunLimits] = field(default_factory=dict)
    cascades: Mapping[str, CascadeSpec] = field(default_factory=dict)
    ledger: LedgerSpec | None = None  # None: no [ledger], [budgets] or [limits] in the file
    budgets: Mapping[str, BudgetSpec] = field(default_factory=dict)
    limits: Mapping[str, LimitSpec] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    config_file: str | None = None
    version: str | None = None

    def origin(self, setting: str) -> str:
        """Where a setting's value came from, as errors name it: `init()`, `env VAR`, `file PATH`."""
        return _origin(self.sources, setting, self.config_file)

    def check_compliance(self, name: str | None, setting: str, source: str) -> None:
        """Raise when `name` is not a known compliance profile."""
        if name is not None and name not in self.compliance:
            raise ConfigError(setting, name, source,
                              f"unknown compliance profile; known: {sorted(self.compliance)}")


def limits(values: Mapping[str, Any], source: str) -> RunLimits:
    """Validate run/agent keyword arguments into `RunLimits`, naming the source on error."""
    try:
        return RunLimits(**values)
    except ValidationError as exc:
        raise _from_validation(exc, source, values) from None


def _from_validation(exc: ValidationError, source: str, values: Mapping[str, Any] | None = None
                     ) -> ConfigError:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    setting = loc[0] if loc else "?"
    value: Any = err.get("input")
    if values is not None and setting in values:
        value = values[setting]
    problem = err["msg"].removeprefix("Value error, ")
    if len(loc) > 1:
        problem = f"at {'.'.join(loc)}: {problem}"
    return ConfigError(setting, value, source, problem)


def _parse_env(setting: str, var: str, raw: str) -> Any:
    source = f"env {var}"
    text = raw.strip()
    try:
        if setting in ("budget", "max_latency_ms", "budget_wait_s"):
            return float(text)  # inf and nan are refused where the value is validated
        if setting in ("max_steps", "max_tool_calls"):
            return int(text)
        if setting == "capture_content":
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if setting == "kpi_weights":
            if text.startswith("{"):
                parsed = json.loads(text)
                if not isinstance(parsed, dict):
                    raise ValueError("expected a JSON object")
                if any(v is None or isinstance(v, bool) for v in parsed.values()):
                    raise ValueError("every weight must be a number")
                return {str(k): float(v) for k, v in parsed.items()}
            pairs = [p for p in text.split(",") if p.strip()]
            out: dict[str, float] = {}
            for pair in pairs:
                key, sep, val = pair.partition("=")
                if not sep:
                    raise ValueError("expected key=value pairs such as quality=0.6,cost=0.4")
                out[key.strip()] = float(val)
            return out
    except (ValueError, TypeError) as exc:
        raise ConfigError(setting, raw, source, f"cannot parse: {exc}") from None
    return text


def resolve(code: Mapping[str, Any], environ: Mapping[str, str] | None = None,
            cwd: Path | None = None) -> Config:
    """Resolve settings: keyword arguments, then environment, then the config file, then defaults."""
    env = os.environ if environ is None else environ
    code = {k: v for k, v in code.items() if v is not None}
    config_path, config_source = _locate(code, env, cwd or Path.cwd())
    file_cfg = FileConfig()
    file_data: dict[str, Any] = {}
    if config_path is not None:
        file_data = _configfile.load(config_path, config_source)
        try:
            file_cfg = FileConfig(**file_data)
        except ValidationError as exc:
            raise _configfile.error_at(exc, config_path) from None
        _check_quota_names(file_cfg, config_path)

    sources: dict[str, str] = {}
    chosen: dict[str, Any] = {}
    env_values = {s: _parse_env(s, var, env[var]) for s, var in ENV_VARS.items() if env.get(var)}
    file_top = {k: getattr(file_cfg, k) for k in DEFAULTS if getattr(file_cfg, k) is not None}
    file_run = file_cfg.run.model_dump(exclude_defaults=True)
    for setting in (*DEFAULTS, *RUN_SETTINGS):
        if setting in code:
            chosen[setting], sources[setting] = code[setting], "code"
        elif setting in env_values:
            chosen[setting], sources[setting] = env_values[setting], "env"
        elif setting in file_top or setting in file_run:
            chosen[setting] = file_top.get(setting, file_run.get(setting))
            sources[setting] = "file"
        elif setting in DEFAULTS:
            chosen[setting], sources[setting] = DEFAULTS[setting], "default"
        else:
            sources[setting] = "default"

    def where(setting: str) -> str:
        return _origin(sources, setting, config_path)

    mode = chosen["mode"]
    if mode not in MODES:
        raise ConfigError("mode", mode, where("mode"), f"expected one of {list(MODES)}")
    for key in ("capture_content", "otel"):
        if not isinstance(chosen[key], bool):
            raise ConfigError(key, chosen[key], where(key), "expected true or false")
    run_values = {**file_cfg.run.model_dump(exclude_defaults=True),
                  **{s: chosen[s] for s in RUN_SETTINGS if s in chosen}}
    try:
        run_limits = RunLimits(**run_values)
    except ValidationError as exc:
        bad = str(exc.errors()[0]["loc"][0])
        raise _from_validation(exc, where(bad), run_values) from None
    try:
        FileConfig(**{k: chosen[k] for k in DEFAULTS
                      if k not in ("mode", "capture_content", "otel", "guardrails_file")})
    except ValidationError as exc:
        bad = str(exc.errors()[0]["loc"][0])
        raise _from_validation(exc, where(bad)) from None

    compliance = {**BUILTIN_COMPLIANCE, **file_cfg.compliance}
    cfg = Config(
        mode=mode,
        capture_content=chosen["capture_content"],
        otel=chosen["otel"],
        otel_client_spans=chosen["otel_client_spans"],
        guardrails_file=chosen["guardrails_file"],
        instrument=tuple(chosen["instrument"]),
        budget_pressure=float(chosen["budget_pressure"]),
        budget_alert=float(chosen["budget_alert"]),
        kpi_hysteresis=float(chosen["kpi_hysteresis"]),
        ambient_max_entries=int(chosen["ambient_max_entries"]),
        run_max_entries=int(chosen["run_max_entries"]),
        unknown_price=chosen["unknown_price"],
        budget_wait_s=float(chosen["budget_wait_s"]),
        tools_exempt=tuple(chosen["tools_exempt"]),
        run=run_limits,
        models=dict(file_cfg.models),
        compliance=compliance,
        agents=dict(file_cfg.agents),
        cascades=dict(file_cfg.cascades),
        ledger=_ledger(file_cfg, config_path),
        budgets=dict(file_cfg.budgets),
        limits=dict(file_cfg.limits),
        sources=dict(sources, config=config_source if config_path else "default"),
        config_file=str(config_path) if config_path else None,
        version=file_cfg.version,
    )
    cfg.check_compliance(run_limits.compliance, "compliance", where("compliance"))
    for name, agent in cfg.agents.items():
        cfg.check_compliance(agent.compliance, f"agents.{name}.compliance", f"file {config_path}")
    _check_overridden(cfg, env_values, file_run.get("compliance"), config_path)
    return cfg


def _check_overridden(cfg: Config, env_values: Mapping[str, Any], file_compliance: Any,
                      config_path: Path | None) -> None:
    """Values a higher source overrides are refused when bad, as the file's others are: a typo
    such as `CASCADEFLOW_MODE=enforec` must not lie unnoticed until code stops passing `mode=`."""
    for setting, value in env_values.items():
        if cfg.sources.get(setting) == "env":
            continue  # in force, and checked above
        origin = f"env {ENV_VARS[setting]}"
        if setting == "mode":
            if value not in MODES:
                raise ConfigError("mode", value, origin, f"expected one of {list(MODES)}")
        elif setting in RUN_SETTINGS:
            limits({setting: value}, origin)
            if setting == "compliance":
                cfg.check_compliance(value, "compliance", origin)
        elif setting != "capture_content":  # parsed to a bool already
            try:
                FileConfig(**{setting: value})
            except ValidationError as exc:
                raise _from_validation(exc, origin) from None
    if file_compliance is not None and cfg.sources.get("compliance") != "file":
        cfg.check_compliance(file_compliance, "compliance", f"file {config_path}")


def _check_quota_names(file_cfg: FileConfig, config_path: Path) -> None:
    """A budget's or limit's name is part of its keys in the store (`budget:NAME:VALUE`), split
    at the first ':': a name holding one would share keys with another budget."""
    for table, names in (("budgets", file_cfg.budgets), ("limits", file_cfg.limits)):
        for name in names:
            if ":" in name:
                raise ConfigError(f"{table}.{name}", name, _configfile.place(config_path, [table, name]),
                                  "a budget or limit name cannot contain ':' (it separates the parts "
                                  "of the ledger's keys); use '-' or '_' instead")


def _ledger(file_cfg: FileConfig, config_path: Path | None) -> LedgerSpec | None:
    """The ledger's settings, its path made absolute against the config file's folder; a ledger
    at the default path when budgets or limits need one and `[ledger]` is absent."""
    spec = file_cfg.ledger
    if spec is None and not (file_cfg.budgets or file_cfg.limits):
        return None
    spec = spec or LedgerSpec()
    path = Path(spec.path)
    if not path.is_absolute() and config_path is not None:
        path = config_path.resolve().parent / path
    updates: dict[str, Any] = {"path": str(path)}
    if spec.events_jsonl is not None and not Path(spec.events_jsonl).is_absolute() and config_path:
        updates["events_jsonl"] = str(config_path.resolve().parent / spec.events_jsonl)
    return spec.model_copy(update=updates)


def _origin(sources: Mapping[str, str], setting: str, config_file: Any) -> str:
    found = sources.get(setting, "default")
    if found == "env":
        return f"env {ENV_VARS.get(setting, setting)}"
    if found == "file":
        return f"file {config_file}"
    return "init()" if found == "code" else "default"


def _locate(code: Mapping[str, Any], env: Mapping[str, str], cwd: Path) -> tuple[Path | None, str]:
    """Find the config file: `config=` argument, CASCADEFLOW_CONFIG, ./cascadeflow.toml, pyproject."""
    if "config" in code:
        path, source = Path(code["config"]), "code"
    elif env.get("CASCADEFLOW_CONFIG"):
        path, source = Path(env["CASCADEFLOW_CONFIG"]), "env"
    else:
        for candidate in (cwd / "cascadeflow.toml", cwd / "pyproject.toml"):
            try:
                found = candidate.is_file()
            except OSError as exc:  # a working directory this user may not search (a service in /root)
                raise ConfigError("config", str(candidate), "the working directory",
                                  f"cannot look for a config file there ({exc.strerror}); run from a "
                                  "directory this user may read, or name the file with "
                                  "init(config=...) or CASCADEFLOW_CONFIG") from None
            if found and (candidate.name != "pyproject.toml" or _configfile.has_tool_section(candidate)):
                return candidate, "file"
        return None, "default"
    if not path.is_file():
        where = "init(config=...)" if source == "code" else "env CASCADEFLOW_CONFIG"
        raise ConfigError("config", str(path), where, "file not found")
    return path, source
