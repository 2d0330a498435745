"""Running rules over text and messages: findings, and the text after redact / rewrite.

A finding never carries the matched text, only a keyed hash of it, so the audit of near-misses
can be kept and shared without becoming a store of the PII it describes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import threading
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, islice, repeat
from operator import attrgetter, ge, itemgetter
from typing import Any, NamedTuple

from cascadeflow.guardrails.detectors import Match
from cascadeflow.guardrails.placeholders import Placeholders, json_start
from cascadeflow.guardrails.policy import Rule

# Hashes are keyed so that a hash of a card number cannot be reversed by trying every card.
# Set CASCADEFLOW_AUDIT_KEY to compare hashes across processes; otherwise each process has its own.
_KEY = (os.environ.get("CASCADEFLOW_AUDIT_KEY") or secrets.token_hex(32)).encode()


class _Keyed:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer hash states made once: each value
    then costs two copies and two updates of SHA-256 states, half of what `hmac.digest` costs
    when it sets the key up again for every value (a PII-dense text hashes dozens per kind)."""

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:  # SHA-256's block size: a longer key is hashed first
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self.inner = hashlib.sha256(key.translate(_IPAD))
        self.outer = hashlib.sha256(key.translate(_OPAD))

    def digest(self, data: bytes) -> bytes:
        inner = self.inner.copy()
        inner.update(data)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_HMAC = _Keyed(_KEY)


def fingerprint(text: str) -> str:
    """HMAC-SHA256 of the text with the audit key, first 16 hex digits."""
    return _HMAC.digest(text.encode("utf-8", "surrogatepass")).hex()[:16]


MAX_HASHES = 64  # keyed hashes a finding keeps of the distinct values it stands for


@dataclass(frozen=True, slots=True)
class Finding:
    """What one rule found of one kind in one text: every match of it, counted, never the text.

    `match_hash` is the keyed hash of the first match; `hashes` those of the first `MAX_HASHES`
    distinct values when there is more than one, so an auditor can still ask whether a given
    value was seen (hash it with the same key); `count` and `distinct` say how many there were."""

    rule: str
    detector: str
    kind: str
    action: str
    score: float  # the highest of its matches
    stage: str  # input | output
    match_hash: str
    message: str  # the block message, for `block` rules
    count: int = 1  # matches
    distinct: int = 1  # distinct matched values
    hashes: tuple[str, ...] = ()  # keyed hashes of the distinct values (when more than one)

    @property
    def reason(self) -> str:
        """The stable reason code: `prompt_injection`, or `<detector>_<kind>` (`pii_credit_card`)."""
        return self.detector if self.detector == "prompt_injection" else f"{self.detector}_{self.kind}"


Hit = tuple[Rule, Match]


class Scan(NamedTuple):
    """A text's matches (what redact and rewrite edit) and its findings (what is recorded)."""

    hits: list[Hit]
    findings: list[Finding]


def matches(rules: Sequence[Rule], text: str) -> list[Hit]:
    """Matches of every rule at or above its threshold; a span two profiles' rules both find is
    kept once (the first rule's)."""
    out: list[Hit] = []
    seen: set[tuple[str, int, int]] | None = None  # the spans in `out`, made when a second rule finds any
    for rule in rules:
        found = _above(rule.detector.scan(text), rule.threshold)
        if not found:
            continue
        if out:  # only a second rule's matches can repeat a span
            if seen is None:
                seen = set(map(_SPAN, map(_MATCH, out)))
            fresh = []
            for match in found:
                key = (match.kind, match.start, match.end)
                if key not in seen:
                    seen.add(key)
                    fresh.append(match)
            found = fresh
        out.extend(zip(repeat(rule), found, strict=False))
    return out


def _above(found: list[Match], threshold: float) -> list[Match]:
    """The matches scored at or above `threshold` and above 0 (their scores compared in C)."""
    if not threshold > 0:  # (0, or NaN: compared as written)
        return [m for m in found if m.score >= threshold and m.score > 0]
    return list(compress(found, map(ge, map(_SCORE, found), repeat(threshold))))


_MATCH, _SCORE, _SPAN = itemgetter(1), attrgetter("score"), attrgetter("kind", "start", "end")


def findings(hits: Sequence[Hit], text: str, stage: str) -> list[Finding]:
    """One finding per rule and kind (in the order first found): a contact export with 30,000
    e-mail addresses is one finding with `count` 30,000, and a few dozen keyed hashes, not
    30,000 of each."""
    groups: dict[tuple[int, str], list[Hit]] = {}
    for hit in hits:
        key = (id(hit[0]), hit[1].kind)
        group = groups.get(key)
        if group is None:
            groups[key] = [hit]
        else:
            group.append(hit)
    out: list[Finding] = []
    for group in groups.values():
        rule, first = group[0]
        values = dict.fromkeys(text[m.start:m.end] for _r, m in group) if len(group) > 1 \
            else {text[first.start:first.end]: None}
        hashes = [fingerprint(v) for v in islice(values, MAX_HASHES)]
        score = max(m.score for _r, m in group) if len(group) > 1 else first.score
        out.append(Finding(rule.name, rule.detector.name, first.kind, rule.action, round(score, 4), stage,
                           hashes[0], rule.message, len(group), len(values),
                           tuple(hashes) if len(values) > 1 else ()))
    return out


def scan_text(rules: Sequence[Rule], text: str, stage: str) -> Scan:
    """`matches` and their `findings`."""
    hits = matches(rules, text)
    return Scan(hits, findings(hits, text, stage) if hits else [])


def scan_json(rules: Sequence[Rule], text: str, stage: str) -> Scan:
    """`scan_text` over JSON text (a tool call's arguments), read through `json_view`: what
    the document's strings say, at the document's own offsets, for `transform(..., json=True)`."""
    view = json_view(text)
    scan = scan_text(rules, view, stage)
    return scan if view is text or not scan.hits else Scan(outside_escapes(scan.hits, text), scan.findings)


_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|.)", re.DOTALL)
# a prompt text written as JSON, with escapes in it: a tool result such as `{"notes": "Called
# from\\n+44 20 7946 0958"}` is read through `json_view` as a tool call's arguments are
_JSON_TEXT = re.compile(r"\s*[\[{](?=.*\\)", re.DOTALL)


def json_text(text: str) -> bool:
    """Whether a text is written as JSON with escapes in it (a tool result, an answer in JSON
    mode): read it through `json_view`."""
    return _JSON_TEXT.match(text) is not None


def json_answer(text: str) -> bool:
    """Whether a whole text (an unstreamed answer) is written as JSON: it starts as a document
    (`json_start`) and has escapes in it (it may have been cut short) or parses: edits in it are
    written as JSON string content, as they are in a streamed answer that starts as one."""
    if not json_start(text):
        return False
    if "\\" in text:
        return True
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def json_view(text: str) -> str:
    """JSON text with each escape sequence (`\\n`, `\\"`, `\\u00e9`) blanked to as many spaces.
    Read as it is written, `"Hi,\\nbob@example.com"` holds the address `nbob@example.com` (and
    its redaction would leave `\\[EMAIL]`, an invalid escape) and `"Call\\n+44 20 7946 0958"`
    no phone number at all; blanked, the escapes separate words as the characters they stand
    for do, and every offset is still the document's."""
    if "\\" not in text:
        return text
    return _ESCAPE.sub(_blank, text)


def _blank(m: re.Match[str]) -> str:
    return " " * (m.end() - m.start())


def outside_escapes(hits: Sequence[Hit], text: str) -> list[Hit]:
    """`hits` (found in `json_view(text)`) widened where one starts or ends inside an escape
    sequence of `text`, so that an edit never leaves half of one (a custom pattern may match
    the spaces an escape was blanked to)."""
    escapes = [m.span() for m in _ESCAPE.finditer(text)]
    if not escapes:
        return list(hits)
    starts = [a for a, _b in escapes]
    out: list[Hit] = []
    for rule, match in hits:
        start, end = match.start, match.end
        i = bisect_right(starts, start) - 1
        if i >= 0 and start < escapes[i][1]:
            start = escapes[i][0]
        i = bisect_right(starts, end - 1) - 1
        if i >= 0 and end < escapes[i][1]:
            end = escapes[i][1]
        out.append((rule, match if (start, end) == (match.start, match.end)
                    else match._replace(start=start, end=end)))
    return out


def escape_start(text: str, at: int) -> int:
    """`at`, moved back to the start of the escape sequence of JSON `text` it would split."""
    if "\\" not in text[max(at - 5, 0):at]:  # an escape is at most 6 characters (`\\u00e9`)
        return at
    for m in _ESCAPE.finditer(text):  # from the start: `\\\\` is one escape
        if m.end() > at:
            return m.start() if m.start() < at else at
    return at


class ScanCache:
    """Input scans of texts seen before: an agent sends its whole conversation on every call,
    so without this each turn would scan every earlier message again (quadratic in the
    conversation). Keyed by the rules and the text itself, so a text that changed is a new
    entry; holds at most `max_chars` characters of texts and forgets the oldest first."""

    def __init__(self, max_chars: int = 8_000_000, max_text: int = 256_000) -> None:
        self.max_chars = max_chars
        self.max_text = max_text
        self._entries: dict[tuple[tuple[int, ...], str], tuple[Sequence[Rule], Scan]] = {}
        self._chars = 0
        # calls on many threads share the cache: entries are added and forgotten under it (two
        # threads forgetting the same oldest entry raised KeyError, or RuntimeError from a dict
        # that changed while another read its first key, out of the caller's LLM call)
        self._lock = threading.Lock()

    def scan(self, rules: Sequence[Rule], key: tuple[int, ...], text: str) -> Scan:
        """`scan_text(rules, text, "input")`, remembered under `key` (the rules' identities)."""
        if len(text) > self.max_text:
            return scan_text(rules, text, "input")
        cached = self._entries.get((key, text))
        if cached is not None and cached[0] == rules:  # ids can be reused once rules are gone
            return cached[1]
        scan = scan_text(rules, text, "input")  # (outside the lock: the scan is the slow part)
        with self._lock:
            if (key, text) not in self._entries:
                self._chars += len(text)
            self._entries[(key, text)] = (rules, scan)
            entries = self._entries
            while self._chars > self.max_chars and entries:
                oldest = next(iter(entries))
                del entries[oldest]
                self._chars -= len(oldest[1])
        return scan


INPUTS = ScanCache()


def transform(text: str, hits: Scan | Sequence[Hit], placeholders: Placeholders | None = None,
              json: bool = False) -> str:
    """Apply redact and rewrite (the rule's replacement), right to left. Redact writes typed
    placeholders (`[EMAIL]`); a rule with `redaction` numbered or reversible writes the run's
    numbered ones from `placeholders` (`[EMAIL_1]`), which `Placeholders.restore` turns back into
    the originals for the application where the rule is reversible. `json`: `text` is JSON (a
    tool call's arguments, scanned with `scan_json`): a replacement is written as JSON string
    content, and a placeholder stands for the value the document's escapes spell."""
    if isinstance(hits, Scan):
        hits = hits.hits
    done = _typed(text, hits, placeholders is not None)
    if done is not None:
        return done
    typed: dict[str, str] = {}  # kind -> "[KIND]", made once per kind
    edits = []
    for rule, match in hits:
        action = rule.action
        if action == "redact" and (placeholders is None or rule.redaction == "typed"):
            new = typed.get(match.kind)
            if new is None:
                new = typed[match.kind] = f"[{match.kind.upper()}]"
            edits.append((match.start, match.end, new))
        elif action in ("redact", "rewrite"):
            edits.append((match.start, match.end, _replacement(rule, match, text, placeholders, json)))
    edits.sort(reverse=True)
    if not edits:
        return text
    kept: list[tuple[int, int, str]] = []
    last_start = len(text) + 1
    for start, end, new in edits:
        if end > last_start:
            continue  # overlaps an edit already kept
        kept.append((start, end, new))
        last_start = start
    pieces: list[str] = []  # built once, left to right: linear in the text and the edits
    at = 0
    for start, end, new in reversed(kept):
        pieces.append(text[at:start])
        pieces.append(new)
        at = end
    pieces.append(text[at:])
    return "".join(pieces)


def _typed(text: str, hits: Sequence[Hit], numbered: bool) -> str | None:
    """`transform` where every hit is redacted to its typed placeholder (`numbered`: the run's
    placeholders are there for rules that ask for them) and each starts after the previous one
    ends, as one PII rule's matches do: the text is then cut once, left to right, with no edits
    to sort. None where that does not hold (`transform` sorts those out)."""
    labels: dict[str, str] = {}  # kind -> "[KIND]", made once per kind
    pieces: list[str] = []
    at = 0
    for rule, match in hits:
        kind, start, end = match.kind, match.start, match.end
        if start < at or start == end or rule.action != "redact" or (numbered and rule.redaction != "typed"):
            return None
        label = labels.get(kind)
        if label is None:
            label = labels[kind] = f"[{kind.upper()}]"
        pieces.append(text[at:start])
        pieces.append(label)
        at = end
    pieces.append(text[at:])
    return "".join(pieces)


def _replacement(rule: Rule, match: Match, text: str, placeholders: Placeholders | None,
                 in_json: bool) -> str:
    if rule.action == "rewrite":
        replacement = rule.replacement or ""
        return json.dumps(replacement)[1:-1] if in_json else replacement  # (a quote cannot break it)
    if placeholders is not None and rule.redaction != "typed":
        value = text[match.start:match.end]
        if in_json and "\\" in value:
            with contextlib.suppress(ValueError):  # (what the escapes spell)
                value = json.loads(f'"{value}"')
        return placeholders.label(match.kind, value, rule.redaction == "reversible")
    return f"[{match.kind.upper()}]"


def _texts(value: Any) -> list[tuple[Any, Any, str]]:
    """(container, key, text) for every text the provider reads in messages / prompt / input, to
    read and replace: a message's content (and a reasoning model's `reasoning_content`), a
    Responses tool result (`output`), the arguments of tool calls sent back (chat's legacy
    `function_call` too) and custom tool calls' input, in dicts or in the SDK's own objects
    (read as their dicts)."""
    out: list[tuple[Any, Any, str]] = []
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                out.append((value, index, item))
                continue
            message = item if isinstance(item, dict) else _dumped(item)
            if message is None:
                continue
            _strings(message, "content", out)
            _strings(message, "output", out)  # {"type": "function_call_output", "output": ...}
            # a reasoning model's answer sent back as it came (the originals of reversible
            # placeholders were put back into it, as into its content)
            if isinstance(message.get("reasoning_content"), str):
                out.append((message, "reasoning_content", message["reasoning_content"]))
            if isinstance(message.get("arguments"), str):  # {"type": "function_call", ...}
                out.append((message, "arguments", message["arguments"]))
            # (most messages have none of what follows: each is looked for, nothing is built)
            calls = message.get("tool_calls")
            if calls:
                calls = [c for c in calls if isinstance(c, dict)]
                for call in calls:
                    function = call.get("function")
                    if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                        out.append((function, "arguments", function["arguments"]))
            legacy = message.get("function_call")  # (the legacy form: one call)
            if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
                out.append((legacy, "arguments", legacy["arguments"]))
            # a custom tool's free-form input: {"type": "custom_tool_call", "input": ...}, or a
            # chat tool call's {"type": "custom", "custom": {"input": ...}}
            if message.get("type") == "custom_tool_call" and isinstance(message.get("input"), str):
                out.append((message, "input", message["input"]))
            for call in calls or ():
                custom = call.get("custom")
                if isinstance(custom, dict) and isinstance(custom.get("input"), str):
                    out.append((custom, "input", custom["input"]))
    return out


def _strings(container: dict[str, Any], key: str, out: list[tuple[Any, Any, str]]) -> None:
    """The text under `key`: a string, or the `text` of each of its parts."""
    content = container.get(key)
    if isinstance(content, str):
        out.append((container, key, content))
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append((part, "text", part["text"]))


def _dumped(value: Any) -> dict[str, Any] | None:
    """An SDK object (a pydantic model, such as a message appended from a response) as the
    dict the SDK would send for it; None for anything else."""
    dump = getattr(value, "model_dump", None)
    if not callable(dump) or isinstance(value, type):
        return None
    plain = dump(exclude_none=True)
    return plain if isinstance(plain, dict) else None


def _copy(value: Any) -> Any:
    """Copy the containers of messages (not the strings) so edits never touch the caller's
    objects; an SDK object in them becomes its dict, which the SDK sends the same way."""
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    plain = _dumped(value)
    return value if plain is None else _copy(plain)


def scan_prompt(rules: Sequence[Rule], prompt: Any, edit: bool, placeholders: Placeholders | None = None
                ) -> tuple[list[Finding], Any]:
    """Findings over every text of a prompt, and (when `edit` and a redact or rewrite rule
    matched) an edited copy; otherwise the prompt itself. The copy is made only when needed.
    Texts scanned before with the same rules are not scanned again (`INPUTS`). `placeholders`:
    the run's, for rules that redact to numbered placeholders (see `transform`)."""
    key = tuple(map(id, rules))
    if isinstance(prompt, str):
        if placeholders is not None:
            placeholders.reserve(prompt)
        scan = INPUTS.scan(rules, key, prompt)
        return scan.findings, (transform(prompt, scan, placeholders) if edit and scan.hits else prompt)
    found: list[Finding] = []
    edits: list[tuple[int, str]] = []
    places = _texts(prompt)
    if placeholders is not None:  # the application's own `[EMAIL_1]`, anywhere in the prompt
        for _container, _key, text in places:
            placeholders.reserve(text)
    for index, (_container, name, text) in enumerate(places):
        in_json = name == "arguments" or json_text(text)  # read through `json_view`
        view = json_view(text) if in_json else text
        scan = INPUTS.scan(rules, key, view)
        if scan.hits:
            found.extend(scan.findings)
            if edit and any(r.action in ("redact", "rewrite") for r, _m in scan.hits):
                hits = scan.hits if view is text else outside_escapes(scan.hits, text)
                edits.append((index, transform(text, hits, placeholders, in_json)))
    if not edits:
        return found, prompt
    edited = _copy(prompt)
    copied = _texts(edited)  # the same places, in the copy
    for index, text in edits:
        container, key, _old = copied[index]
        container[key] = text
    return found, edited
