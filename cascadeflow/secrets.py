"""Secrets never leave the process: API keys and bearer tokens are masked in anything recorded."""

from __future__ import annotations

import re
from typing import Any

_SECRET = re.compile(
    r"(?:sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{16,})"  # OpenAI, Anthropic
    r"|(?:AKIA[0-9A-Z]{16})"  # AWS access key id
    r"|(?:gh[pousr]_[A-Za-z0-9]{30,})"  # GitHub
    r"|(?:xox[abposr]-[A-Za-z0-9-]{10,})"  # Slack
    r"|(?:AIza[0-9A-Za-z_\-]{35})"  # Google
    r"|(?:(?i:bearer)\s+[A-Za-z0-9._~+/\-]{12,}=*)"  # bearer tokens
)
MASK = "[SECRET]"
SECRET_KEYS = frozenset({"api_key", "authorization", "x-api-key", "api-key", "openai_api_key",
                         "azure_ad_token", "aws_secret_access_key", "aws_session_token"})


def scrub(value: Any) -> Any:
    """A copy of `value` with secrets masked; strings, lists and dicts are walked."""
    if isinstance(value, str):
        return _SECRET.sub(MASK, value)
    if isinstance(value, dict):
        return {k: (MASK if str(k).lower() in SECRET_KEYS else scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if value is None or isinstance(value, int | float | bool):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return scrub(dump())
    return scrub(str(value))
