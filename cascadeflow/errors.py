"""The exception hierarchy: everything cascadeflow raises derives from `CascadeflowError`."""

from __future__ import annotations

from typing import Any

from cascadeflow.secrets import mask, scrub


class CascadeflowError(Exception):
    """Base class of every error raised by cascadeflow."""

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and `copy` make an exception again as `type(self)(*self.args)`, which the
        # subclasses' own arguments (a stop's `reason`, `run_id`, `step`) refuse: a stop raised in
        # a process pool's worker broke the pool instead of reaching the caller. Made again
        # without `__init__`, with its attributes as its state.
        return (_rebuilt, (type(self), self.args), self.__dict__)


def _rebuilt(cls: type[CascadeflowError], args: tuple[Any, ...]) -> CascadeflowError:
    """An error as pickle or `copy` makes it again (its attributes follow as its state)."""
    return cls.__new__(cls, *args)


class _Missing:
    """The value of a required setting that was not given: shown as `<missing>`, not as the
    table it was missing from (which may hold word lists or other settings nobody asked about)."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


class ConfigError(CascadeflowError, ValueError):
    """A setting has a bad value. Names the setting, the value and where it came from."""

    def __init__(self, setting: str, value: Any, source: str, problem: str) -> None:
        # a key written into a config file must not come back in a traceback or a log line
        self.setting = setting
        self.value = scrub(value) if isinstance(value, str | dict | list | tuple) else value
        self.source = source
        self.problem = mask(problem)
        super().__init__(mask(f"invalid setting {setting}={self.value!r} (from {source}): {self.problem}"))


class PolicyStop(CascadeflowError):
    """Enforcement stopped a step before anything was sent.

    Carries the stable `reason` code, the `run_id` and `step` of the session that decided,
    and the trace entry (a dict, as `session.trace()` returns it).
    """

    # Read by retry layers that go by an error's HTTP status (litellm's Router): a stop is not to
    # be repeated, so it says 400, as litellm's own BudgetExceededError does, not the 500 a
    # status-less error is taken for (retried, and the deployment cooled down).
    status_code = 400

    def __init__(self, message: str, *, reason: str, run_id: str, step: int,
                 entry: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.run_id = run_id
        self.step = step
        self.entry = entry or {}


def causes(exc: BaseException) -> list[BaseException]:
    """The exception and what caused it, outermost first: clients wrap the wire's error in their
    own (litellm wraps the openai SDK's, which wraps httpx's), and the innermost says what
    actually happened."""
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(out) < 16 and all(current is not seen for seen in out):
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def stop_beneath(error: BaseException) -> PolicyStop | None:
    """The PolicyStop that `error` was raised while handling, itself included, or None: a client
    library that wraps whatever its provider call raised (litellm) turns a stop into its own error."""
    return next((link for link in causes(error) if isinstance(link, PolicyStop)), None)


class BudgetExceeded(PolicyStop):
    """The step's worst-case cost does not fit in the remaining budget; or, for a stream cut in
    enforce mode because its output passed what its reservation pays for, `text` holds all the
    text received, including the chunk that passed the cap (which is not yielded)."""

    text: str = ""


class RateLimited(PolicyStop):
    """A `[limits.NAME]` rate (requests or tokens per minute, USD per hour) has no room now."""


class StoreUnreachable(PolicyStop):
    """The ledger store that holds shared budgets and limits could not be reached, and
    `store_failure = "closed"` says to stop rather than go on unchecked."""


class StepLimitReached(PolicyStop):
    """`max_steps` was reached: a runaway loop is cut off."""


class ComplianceViolation(PolicyStop):
    """No model allowed by the compliance profile can serve the step."""


class ToolDenied(PolicyStop):
    """A tool execution was denied (tool cap, allow/deny lists, missing approval)."""


class GuardrailBlocked(PolicyStop):
    """A guardrail rule with action `block` matched."""


class AllProvidersFailed(CascadeflowError):
    """Every tier of a cascade failed; `attempts` holds each one."""

    def __init__(self, message: str, attempts: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.attempts = attempts
