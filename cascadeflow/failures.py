"""The failure taxonomy: what went wrong with an attempt, and what to do about it.

Each failure class has one disposition: `retry` (the same tier may succeed if asked again),
`next` (this tier will not serve this request; try the next one) or `fatal` (no tier will: raise).
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cascadeflow.errors import causes
from cascadeflow.secrets import mask

RETRY, NEXT, FATAL = "retry", "next", "fatal"

# failure class -> disposition
DISPOSITION: dict[str, str] = {
    "rate_limited": RETRY,
    "timeout": RETRY,
    "connection_error": RETRY,
    "server_error": RETRY,
    "malformed_response": RETRY,
    "stream_broken": RETRY,
    "empty_response": NEXT,
    "truncated": NEXT,
    "schema_invalid": NEXT,
    "refusal": NEXT,
    "content_policy": NEXT,
    "context_window_exceeded": NEXT,
    "model_not_found": NEXT,
    "authentication": FATAL,
    "bad_request": FATAL,
    "client_error": FATAL,
}
_PROVIDER_MODULES = ("openai", "litellm", "httpx", "httpcore", "aiohttp", "anthropic")

# failures that say something about the deployment's health: they count for circuit breakers
BREAKER_FAILURES = frozenset({"rate_limited", "timeout", "connection_error", "server_error",
                              "malformed_response", "stream_broken", "empty_response"})

DEFAULT_REFUSALS = (r"\bI(?:'m| am) (?:sorry|unable)\b.{0,40}\b(?:can(?:no|')t|unable|not able)\b",
                    r"\bI can(?:no|')t (?:help|assist) with (?:that|this)\b")


class EmptyStream(Exception):
    """A stream that ended before the provider sent its first chunk: an empty answer."""


@dataclass(frozen=True)
class Failure:
    kind: str
    message: str
    retry_after: float | None = None

    @property
    def disposition(self) -> str:
        return DISPOSITION.get(self.kind, NEXT)


def _status(exc: BaseException) -> int | None:
    for attr in ("status_code", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
    return None


def _retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asks to wait: `retry-after-ms` (OpenAI and Azure send it, the
    openai SDK reads it first), else `retry-after` in seconds or as an HTTP date (RFC 9110).
    None for none, or for a value that is no finite wait."""
    headers: Any = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    if headers is None or not hasattr(headers, "get"):
        return None
    millis = _seconds(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    seconds = _seconds(value)
    if seconds is None and isinstance(value, str):
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT; a malformed one may lack its zone
            when = when.replace(tzinfo=datetime.UTC)
        seconds = max((when - datetime.datetime.now(datetime.UTC)).total_seconds(), 0.0)
    return seconds


def _seconds(value: Any) -> float | None:
    """A header's number, when it is one that can be waited (finite, not negative)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


# error codes in the provider's error body (the openai SDK's `exc.code`) that name the failure
_CODES = {"context_length_exceeded": "context_window_exceeded", "content_filter": "content_policy",
          "content_policy_violation": "content_policy"}
# the wire said something with its status line: the response's status is the provider's word
_WIRE_STATUS = frozenset({"HTTPStatusError"})
# the connection broke while a body was being read
_BROKEN_BODY = frozenset({"RemoteProtocolError", "ReadError", "ClientPayloadError", "IncompleteRead",
                          "MidStreamFallbackError", "ServerDisconnectedError"})


def classify(exc: BaseException) -> Failure:
    """Map an exception from litellm, the openai SDK or httpx to a failure class, from the types
    of the exception and its causes and the response's status, never from message text: the
    same failure reads differently in every client and version."""
    chain = causes(exc)
    names = {cls.__name__ for link in chain for cls in type(link).__mro__}
    text = mask(f"{type(exc).__name__}: {exc}")  # provider error texts can quote the key that was sent
    if isinstance(exc, EmptyStream):
        return Failure("empty_response", text)
    coded = next((_CODES[code] for link in chain if isinstance(code := getattr(link, "code", None), str)
                  and code in _CODES), None)
    if "ContextWindowExceededError" in names or coded == "context_window_exceeded":
        return Failure("context_window_exceeded", text)
    if "ContentPolicyViolationError" in names or coded == "content_policy":
        return Failure("content_policy", text)
    if names & {"Timeout", "APITimeoutError", "TimeoutException", "TimeoutError", "ReadTimeout"}:
        return Failure("timeout", text)
    if any(isinstance(link, json.JSONDecodeError) for link in chain) and not names & _WIRE_STATUS:
        # a 2xx body that does not parse; the status a client made up for it (litellm says 500) is not
        # the provider's
        return Failure("malformed_response", text)
    if names & _BROKEN_BODY:
        return Failure("stream_broken", text)
    status = _status(exc)
    if status == 408:  # the provider gave up waiting for the request: as a timeout
        return Failure("timeout", text)
    if status == 429 or "RateLimitError" in names:
        return Failure("rate_limited", text, _retry_after(exc))
    if status in (401, 403) or names & {"AuthenticationError", "PermissionDeniedError"}:
        return Failure("authentication", text)
    if status == 404 or "NotFoundError" in names:
        return Failure("model_not_found", text)
    if status is not None and status >= 500:
        return Failure("server_error", text, _retry_after(exc))
    if names & {"APIConnectionError", "ConnectError", "ConnectionError"}:
        return Failure("connection_error", text)
    if (status is not None and 400 <= status < 500) or "BadRequestError" in names:
        # 400, 422 and every other 4xx left (405, 409, 413, 415...): the provider refused this
        # request, which says nothing about its health and will not change when sent again
        return Failure("bad_request", text)
    if not type(exc).__module__.startswith(_PROVIDER_MODULES):
        return Failure("client_error", text)  # a bug on our side of the wire: no tier will help
    return Failure("server_error", text)


@dataclass(frozen=True)
class Expectations:
    """What a successful answer must look like, beyond HTTP 200."""

    require_content: bool = True
    whole_answers: bool = True
    schema: Any = None  # a pydantic model class or a JSON schema dict
    refusal_patterns: Sequence[str] = DEFAULT_REFUSALS

    def check(self, text: str, finish_reason: str | None, tool_calls: int) -> Failure | None:
        """The semantic failure of an answer, if any."""
        if self.require_content and not text.strip() and not tool_calls:
            return Failure("empty_response", "the answer is empty")
        if self.whole_answers and finish_reason == "length":
            return Failure("truncated", "the answer was cut off (finish_reason=length)")
        if text and any(re.search(p, text, re.I) for p in self.refusal_patterns):
            return Failure("refusal", f"the model refused: {text[:80]!r}")
        if self.schema is not None and not tool_calls:
            problem = _schema_problem(self.schema, text)
            if problem:
                return Failure("schema_invalid", problem)
        return None


def _schema_problem(schema: Any, text: str) -> str | None:
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    if isinstance(schema, type) and hasattr(schema, "model_validate_json"):
        try:
            schema.model_validate_json(body)
        except ValueError as exc:
            return f"output does not match {schema.__name__}: {str(exc).splitlines()[0]}"
        return None
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        return f"output is not JSON: {exc.msg}"
    import jsonschema  # installed with litellm; checked when the cascade is built

    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as exc:
        return f"output does not match the schema: {exc.message}"
    return None
