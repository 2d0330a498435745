"""Secrets never leave the process: API keys, tokens and passwords are masked in anything recorded.

One table of key formats serves every surface (trace, summary, saved files, logs, spans,
alerts, webhooks, exception messages) and the `api_key` PII detector. Each format has a literal
anchor that every key of that format contains: the text is searched for the anchor first (a
plain substring search, fast), and only where it occurs does the format's regular expression
run. Scanning is linear in the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MASK = "[SECRET]"
SECRET_KEYS = frozenset({"api_key", "apikey", "authorization", "x-api-key", "api-key", "openai_api_key",
                         "azure_ad_token", "aws_secret_access_key", "aws_session_token", "password",
                         "secret", "client_secret", "access_token", "refresh_token", "token", "private_key"})
# and every key named like one of them (`anthropic_api_key`, `bearer_token`, `db_password`)
SECRET_SUFFIXES = ("_api_key", "-api-key", "apikey", "_token", "-token", "_secret", "-secret", "_password",
                   "_private_key")


@dataclass(frozen=True)
class KeyFormat:
    """A kind of secret: literal anchors, and an expression matched where an anchor occurs
    (starting `back` characters before it), never run over the whole text."""

    name: str
    anchors: tuple[str, ...]  # substrings every secret of this kind contains
    pattern: re.Pattern[str]
    back: int = 0  # where the expression starts, in characters before the anchor
    group: int = 0  # the group holding the secret (0: the whole match)
    token: bool = True  # the secret starts a token: no letter, digit or `_` right before it
    lower: bool = False  # anchors are lower-case and searched in the lower-cased text
    named: tuple[str, ...] = ()  # the anchor must end one of these names (`api_` + `key`)
    # characters of which every secret of this kind contains one (a rare one, looked for once
    # per text at C speed): no anchor is searched in a text that has none of them
    gate: str = ""


def _format(name: str, anchors: tuple[str, ...], pattern: str, back: int = 0, group: int = 0,
            token: bool = True, lower: bool = False, named: tuple[str, ...] = (),
            gate: str = "") -> KeyFormat:
    if not gate:
        gate = next((c for c in _GATES if all(c in a for a in anchors)), "")
    return KeyFormat(name, anchors, re.compile(pattern), back, group, token, lower, named, gate)


_GATES = "_-=@J/"  # characters prose often lacks, in the order tried for an anchor's gate


_VALUE = r"[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{8,})"  # `name = "value"`, `name: value`, `"name": "v"`
FORMATS: tuple[KeyFormat, ...] = (
    _format("private_key", ("-----BEGIN ",),
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----", token=False),
    _format("jwt", ("eyJ",), r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    _format("authorization_header", ("authorization",),
            r"(?i:authorization)[\"']?\s*[:=]\s*[\"']?((?:[A-Za-z]+\s+)?[A-Za-z0-9._~+/=\-]{8,})", 0, 1,
            lower=True, gate=":="),
    _format("bearer", ("bearer",), r"(?i:bearer)(?:\s+|[\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9._~+/\-]{12,}=*)",
            0, 1, lower=True),
    _format("basic_auth", ("basic",), r"(?i:basic)\s+([A-Za-z0-9+/]{12,}={0,2})", 0, 1, lower=True),
    _format("openai", ("sk-",), r"sk-(?:proj-|svcacct-|admin-|ant-(?:api\d+-)?)?[A-Za-z0-9_\-]{10,}"),
    _format("stripe", ("k_live_", "k_test_"), r"[sr]k_(?:live|test)_[A-Za-z0-9]{10,}", 1),
    _format("groq", ("gsk_",), r"gsk_[A-Za-z0-9]{20,}"),
    _format("xai", ("xai-",), r"xai-[A-Za-z0-9]{20,}"),
    _format("perplexity", ("pplx-",), r"pplx-[A-Za-z0-9]{20,}"),
    _format("huggingface", ("hf_",), r"hf_[A-Za-z0-9]{20,}"),
    _format("github_pat", ("github_pat_",), r"github_pat_[A-Za-z0-9_]{22,}"),
    _format("github", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), r"gh[pousr]_[A-Za-z0-9]{30,}"),
    _format("gitlab", ("glpat-",), r"glpat-[A-Za-z0-9_\-]{20,}"),
    _format("slack", ("xoxb-", "xoxp-", "xoxa-", "xoxo-", "xoxs-", "xoxr-"),
            r"xox[abposr]-[A-Za-z0-9\-]{10,}"),
    _format("google", ("AIza",), r"AIza[0-9A-Za-z_\-]{35}", gate="I"),
    _format("aws_access_key_id", ("AKIA", "ASIA"), r"(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Za-z])", gate="I"),
    _format("sendgrid", ("SG.",), r"SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}", gate="G"),
    _format("npm", ("npm_",), r"npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])"),
    _format("replicate", ("r8_",), r"r8_[A-Za-z0-9]{30,}"),
    _format("digitalocean", ("_v1_",), r"do[op]_v1_[a-f0-9]{64}", 3),
    _format("azure_connection", ("AccountKey=",), r"AccountKey=([A-Za-z0-9+/=]{40,})", 0, 1, token=False),
    # webhook URLs are their own credential: whoever has one can post
    _format("slack_webhook", ("hooks.slack.com/",), r"hooks\.slack\.com/(?:services|workflows|triggers)/"
            r"([A-Za-z0-9/_\-]{20,})", 0, 1, token=False),
    _format("discord_webhook", ("/api/webhooks/",), r"/api/webhooks/\d+/([A-Za-z0-9_\-]{30,})", 0, 1,
            token=False),
    # a key or a token in a URL's query (`?key=...`, `&access_token=...`, a signed URL's `sig=`)
    _format("url_parameter", ("?", "&"), r"[?&][A-Za-z_\-]*?(?i:key|token|sig|signature|secret|password)"
            r"=([^&\s#\"'<>]{8,})", 0, 1, token=False, gate="="),
    _format("url_credentials", ("://",), r"://[^\s:/@]*:([^\s:/@]{3,})@", 0, 1, token=False, gate="@"),
    _format("password", ("passw",), r"(?i:password|passwd)" + _VALUE, 0, 1, token=False, lower=True,
            gate=":="),
    _format("aws_secret_access_key", ("secret_access_key", "secretaccesskey"),
            r"(?i:secret_?access_?key)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])", 0, 1,
            token=False, lower=True, gate=":="),
    _format("api_key", ("key",), r"(?i:key)" + _VALUE, 0, 1, token=False, lower=True,
            named=("api_", "api-", "api", "secret_", "secret"), gate=":="),
    _format("token", ("token",), r"(?i:token)" + _VALUE, 0, 1, token=False, lower=True,
            named=("access_", "access", "auth_", "auth", "refresh_", "refresh", "api_", "bot_", "bot"),
            gate=":="),
    _format("client_secret", ("secret",), r"(?i:secret)" + _VALUE, 0, 1, token=False, lower=True,
            named=("client_", "client", "app_", "app"), gate=":="),
)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _by_gate(formats: tuple[KeyFormat, ...]) -> tuple[tuple[str, tuple[KeyFormat, ...]], ...]:
    """The formats grouped by gate (in the order of their first format): a text is asked once
    per gate whether it holds one of its characters, and the formats of an absent gate are not
    looked at. Most text is short and holds few of them (a 7-character answer: 4 formats of 31)."""
    groups: dict[str, list[KeyFormat]] = {}
    for fmt in formats:
        groups.setdefault(fmt.gate, []).append(fmt)
    return tuple((gate, tuple(group)) for gate, group in groups.items())


_GROUPS = _by_gate(FORMATS)


def _possible(formats: tuple[KeyFormat, ...]) -> re.Pattern[str]:
    """What every text holding a secret contains: one of the gates' characters, or an anchor
    of a format that has no gate (case-insensitive where the format lowers the text). One
    search in C rules out most short texts (a one-word answer), which `find` would otherwise
    walk group by group."""
    gates = sorted({c for fmt in formats for c in fmt.gate})
    parts = ["[" + "".join(map(re.escape, gates)) + "]"] if gates else []
    for fmt in formats:
        if not fmt.gate:
            parts += [f"(?i:{re.escape(a)})" if fmt.lower else re.escape(a) for a in fmt.anchors]
    return re.compile("|".join(parts))


POSSIBLE = _possible(FORMATS)


def find(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, kind) of every secret in `text`; overlaps possible. Linear: the text is
    searched for each anchor (a plain substring search, skipped when its gate character is
    absent), and an expression runs only where an anchor occurs, from that position."""
    if POSSIBLE.search(text) is None:
        return
    low = ""  # the text with A-Z lowered (positions unchanged), made when a format needs it
    for gate, formats in _GROUPS:
        if gate and not (gate in text if len(gate) == 1 else any(map(text.__contains__, gate))):
            continue
        for fmt in formats:
            if fmt.lower and not low:  # str.lower is the same for ASCII text, and faster
                low = text.lower() if text.isascii() else text.translate(_ASCII_LOWER)
            haystack = low if fmt.lower else text
            pattern, back, group, token, named = fmt.pattern, fmt.back, fmt.group, fmt.token, fmt.named
            last = -1
            for anchor in fmt.anchors:
                at = haystack.find(anchor)
                while at != -1:
                    pos = at - back
                    if pos >= last and pos >= 0 and not (token and pos and _word_char(text[pos - 1])) \
                            and (not named or low.endswith(named, 0, at)):
                        m = pattern.match(text, pos)
                        if m:
                            last = m.end()
                            yield m.start(group), m.end(group), fmt.name
                    at = haystack.find(anchor, at + 1)


def _word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def spans(text: str) -> list[tuple[int, int]]:
    """The secrets of `text` as sorted, merged (start, end) spans."""
    found = sorted((start, end) for start, end, _name in find(text) if end > start)
    merged: list[tuple[int, int]] = []
    for start, end in found:
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def mask(text: str) -> str:
    """`text` with every secret replaced by `[SECRET]`."""
    found = spans(text)
    if not found:
        return text
    out: list[str] = []
    last = 0
    for start, end in found:
        out.append(text[last:start])
        out.append(MASK)
        last = end
    out.append(text[last:])
    return "".join(out)


def secret_key(name: str) -> bool:
    """Whether a key's value is a secret by its name."""
    low = name.lower()
    return low in SECRET_KEYS or low.endswith(SECRET_SUFFIXES)


def masked_url(url: str) -> str:
    """A URL as an error may show it, whatever its scheme (a URL rejected for its scheme still
    carries its password): everything up to the last `@` and any query masked. A value with no
    `:`, `/` or `@` is no URL at all and may be a bare password, so it is masked whole."""
    if not any(c in url for c in ":/@"):
        return MASK
    _, at, host = url.rpartition("@")
    shown = f"{MASK}@{host}" if at else url
    base, query, _ = shown.partition("?")
    return f"{base}?{MASK}" if query else base


def _key(key: Any) -> Any:
    """A dict key as JSON can hold it: str, int, float, bool and None as they are, else masked text."""
    return key if key is None or isinstance(key, str | int | float) else mask(str(key))


def scrub(value: Any) -> Any:
    """A copy of `value` with secrets masked; strings, lists and dicts are walked, and the values
    of keys named like secrets (`api_key`, `authorization`, `password`...) are masked whole. A
    key JSON cannot hold (a tuple, a date, an Enum) becomes text, so what is recorded can be saved."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {_key(k): (MASK if v is not None and secret_key(str(k)) else scrub(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if value is None or isinstance(value, int | float | bool):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return scrub(dump())
    return scrub(str(value))
