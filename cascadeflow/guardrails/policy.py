"""The guardrail policy file: versioned, validated at load, re-read when it changes.

Owned by the people responsible for what the model may do (legal, security, ops), apart from
the feature code. A file that fails validation on reload leaves the last good policy in force
and reports the error; the version that judged each call is recorded with its findings.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from cascadeflow import _configfile
from cascadeflow.errors import MISSING, ConfigError
from cascadeflow.guardrails.detectors import Detector, PIIDetector, RegexDetector, WordsDetector
from cascadeflow.guardrails.injection import InjectionDetector
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger("cascadeflow.guardrails")
Action = Literal["redact", "block", "alert", "rewrite", "log_only"]
# what `redact` writes: `[EMAIL]`; `[EMAIL_1]`, the same for one value throughout a run; or that,
# with the originals put back into the answer the application receives (input rules only)
Redaction = Literal["typed", "numbered", "reversible"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_bool(value: Any) -> Any:
    """pydantic reads true as 1: `threshold = true` would be 1.0, a rule that never fires."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


class RuleSpec(_Strict):
    name: str = Field(min_length=1)
    detector: Literal["pii", "prompt_injection", "words", "regex"]
    action: Action
    types: tuple[str, ...] | None = None
    patterns: dict[str, str] | None = None
    words: tuple[str, ...] | None = None
    threshold: float | None = Field(default=None, ge=0, le=1)  # unset: 0.7 for prompt_injection, else 0
    replacement: str | None = None
    message: str | None = None
    redaction: Redaction = "typed"

    _threshold_no_bool = field_validator("threshold", mode="before")(_no_bool)


class ProfileSpec(_Strict):
    input: tuple[RuleSpec, ...] = ()
    output: tuple[RuleSpec, ...] = ()
    tools_allow: tuple[str, ...] | None = None
    tools_deny: tuple[str, ...] = ()
    max_steps: int | None = Field(default=None, ge=1)
    require_approval: tuple[str, ...] = ()

    _max_steps_no_bool = field_validator("max_steps", mode="before")(_no_bool)


class PolicySpec(_Strict):
    version: str = Field(min_length=1)
    profiles: dict[str, ProfileSpec]


@dataclass(frozen=True)
class Rule:
    name: str
    detector: Detector
    action: str
    threshold: float
    replacement: str | None
    message: str
    redaction: str = "typed"  # typed | numbered | reversible (see `Redaction`)


@dataclass(frozen=True)
class Profile:
    name: str
    input: tuple[Rule, ...]
    output: tuple[Rule, ...]
    tools_allow: tuple[str, ...] | None
    tools_deny: tuple[str, ...]
    max_steps: int | None
    require_approval: tuple[str, ...]
    version: str = ""


@dataclass(frozen=True)
class Policy:
    version: str
    profiles: dict[str, Profile]
    source: str


DEFAULT_BLOCK = "This request was blocked by a content policy."


def _parse(path: Path, origin: str) -> dict[str, Any]:
    text = _configfile.read(path, "guardrails_file", origin)
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError("guardrails_file", str(path), origin,
                              "YAML policy files need PyYAML (pip install pyyaml)") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError("guardrails_file", str(path), f"file {path}", f"invalid YAML: {exc}") from None
    elif path.suffix == ".json":
        data = _configfile.parse_json(text, path, "guardrails_file")
    else:
        data = _configfile.parse_toml(text, path, "guardrails_file")
    if not isinstance(data, dict):
        raise ConfigError("guardrails_file", str(path), f"file {path}", "the top level must be a table")
    return data


def compile_policy(data: dict[str, Any], source: str) -> Policy:
    """Validate and build a policy; errors name the profile and the rule."""
    try:
        spec = PolicySpec(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        where = ".".join(loc)
        if len(loc) >= 4 and loc[0] == "profiles" and loc[2] in ("input", "output") and loc[3].isdigit():
            rules = data.get("profiles", {}).get(loc[1], {}).get(loc[2], [])
            index = int(loc[3])
            if index < len(rules) and isinstance(rules[index], dict) and rules[index].get("name"):
                where += f" (rule {rules[index]['name']!r})"
        value = MISSING if err["type"] == "missing" else err.get("input")
        raise ConfigError(where, value, source, err["msg"].removeprefix("Value error, ")) from None
    profiles = {}
    for pname, p in spec.profiles.items():
        stages = {}
        for stage in ("input", "output"):
            rules = []
            for index, r in enumerate(getattr(p, stage)):
                setting = f"profiles.{pname}.{stage}[{index}] (rule {r.name!r})"
                if any(r.name == other.name for other in rules):  # findings are counted by name
                    raise ConfigError(f"profiles.{pname}.{stage}[{index}].name", r.name, source,
                                      f"another {stage} rule of profile {pname!r} has this name: "
                                      f"their findings would be counted as one rule's")
                rules.append(_rule(r, setting, source, stage))
            stages[stage] = tuple(rules)
        profiles[pname] = Profile(pname, stages["input"], stages["output"], p.tools_allow, p.tools_deny,
                                  p.max_steps, p.require_approval, spec.version)
    return Policy(spec.version, profiles, source)


# what each detector reads of `types`, `patterns` and `words` (a key it does not read would be
# ignored: the rule would not catch what the file says it does)
_READS = {"pii": {"types", "patterns", "words"}, "regex": {"patterns"}, "words": {"words"},
          "prompt_injection": set()}


def _rule(r: RuleSpec, setting: str, source: str, stage: str) -> Rule:
    ignored = [key for key in ("types", "patterns", "words")
               if getattr(r, key) is not None and key not in _READS[r.detector]]
    if ignored:
        raise ConfigError(setting, r.model_dump(exclude_none=True), source,
                          f"a {r.detector} detector does not read {' or '.join(ignored)}")
    try:
        detector: Detector
        if r.detector == "pii":  # `types = []`: none of the built-in ones, only patterns and words
            if r.types is not None and not (r.types or r.patterns or r.words):
                raise ValueError("a pii rule with `types = []` and no `patterns` or `words` "
                                 "detects nothing")
            detector = PIIDetector(types=r.types if r.types is not None else
                                   ("email", "phone", "credit_card", "ssn", "iban", "ip_address", "api_key"),
                                   patterns=r.patterns, words=r.words or ())
        elif r.detector == "prompt_injection":
            detector = InjectionDetector()
        elif r.detector == "words":
            detector = WordsDetector(r.words or ())
        else:
            detector = RegexDetector(r.patterns or {})
    except (ValueError, Exception) as exc:  # bad regexes and unknown types alike
        raise ConfigError(setting, r.model_dump(exclude_none=True), source, str(exc)) from None
    if r.action == "rewrite" and r.replacement is None:
        raise ConfigError(setting, r.action, source, "a rewrite rule needs a `replacement`")
    if r.redaction != "typed":
        if r.action != "redact":
            raise ConfigError(setting, r.redaction, source,
                              "`redaction` applies to rules whose action is redact")
        if stage == "output":  # the run's placeholders are restored: an output redaction would be undone
            raise ConfigError(setting, r.redaction, source, "numbered and reversible redaction are for "
                              "input rules; an output rule redacts to typed placeholders")
    threshold = r.threshold if r.threshold is not None else 0.7 if r.detector == "prompt_injection" else 0.0
    return Rule(r.name, detector, r.action, threshold, r.replacement, r.message or DEFAULT_BLOCK,
                r.redaction)


def builtin() -> Policy:
    """The built-in policy (`cascadeflow/guardrails/default.toml`)."""
    text = resources.files("cascadeflow.guardrails").joinpath("default.toml").read_text(encoding="utf-8")
    return compile_policy(tomllib.loads(text), "built-in guardrails")


def load(path: Path | None, origin: str = "init()") -> Policy:
    """The built-in profiles, with those of the file at `path` added (a same-named one replaces).
    `origin` is where the `guardrails_file` setting came from, for errors."""
    base = builtin()
    if path is None:
        return base
    if not path.is_file():
        raise ConfigError("guardrails_file", str(path), origin, "file not found")
    own = compile_policy(_parse(path, origin), f"file {path}")
    return Policy(own.version, {**base.profiles, **own.profiles}, own.source)


class PolicyStore:
    """Serves the current policy; re-reads the file when it changes: its mtime, size or inode
    (checked at most once per `interval` seconds, so the call path pays one clock read)."""

    def __init__(self, path: Path | None, interval: float = 1.0,
                 on_error: Callable[[str, str], None] | None = None, origin: str = "init()") -> None:
        """`on_error(kind, message)` hears of a rejected edit (`guardrail_policy_rejected`) and
        of profiles an edit removed (`guardrail_profile_missing`), which are kept. A relative
        `path` is taken from the working directory now: a process that changes it later still
        reloads the same file."""
        self.path = None if path is None else path.absolute()
        self.interval = interval
        self.origin = origin
        self.policy = load(path, origin)
        self.last_error: str | None = None
        self._on_error = on_error
        self._mtime = self._stat()
        self._digest = self._read_digest()
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def _stat(self) -> tuple[int, int, int] | None:
        """What tells an edit: the mtime alone misses a second write within the clock's tick
        (or one that keeps the mtime, as `touch -r` and some sync tools do)."""
        try:
            stat = os.stat(self.path) if self.path else None
        except OSError:
            return None
        return None if stat is None else (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _read_digest(self) -> bytes | None:
        """The file's content, hashed: an edit that keeps the version is told by it."""
        try:
            return hashlib.sha256(self.path.read_bytes()).digest() if self.path else None
        except OSError:
            return None

    def current(self) -> Policy:
        if self.path is not None and time.monotonic() - self._checked >= self.interval:
            self.reload()
        return self.policy

    def reload(self, force: bool = False) -> bool:
        """Re-read the file if it changed; True when a new policy is in force."""
        with self._lock:
            self._checked = time.monotonic()
            mtime = self._stat()
            if not force and mtime == self._mtime:
                return False
            self._mtime = mtime
            try:
                policy = load(self.path, self.origin)
            except (ConfigError, OSError) as exc:
                self.last_error = str(exc)
                log.warning("guardrail policy %s rejected, keeping version %s: %s", self.path,
                            self.policy.version, exc)
                if self._on_error is not None:
                    self._on_error("guardrail_policy_rejected", str(exc))
                return False
            missing = sorted(set(self.policy.profiles) - set(policy.profiles))
            if missing:  # sessions may use them: turning their guardrails off silently is worse
                kept = {name: self.policy.profiles[name] for name in missing}
                policy = Policy(policy.version, {**kept, **policy.profiles}, policy.source)
                message = (f"guardrail profile(s) {missing} are gone from {self.path}; the last "
                           f"version of each stays in force until restart")
                log.error("%s", message)
                if self._on_error is not None:
                    self._on_error("guardrail_profile_missing", message)
            digest = self._read_digest()
            if policy.version == self.policy.version and digest != self._digest:
                # findings name the version for the audit: two policies under one name mislead it
                log.warning("guardrail policy %s changed but its version %r did not: findings made "
                            "before and after this edit name the same version; give each edit a "
                            "version of its own", self.path, policy.version)
            self._digest = digest
            self.policy = policy
            self.last_error = None
            return True
