"""Running rules over text and messages: findings, and the text after redact / rewrite.

A finding never carries the matched text, only a keyed hash of it, so the audit of near-misses
can be kept and shared without becoming a store of the PII it describes.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cascadeflow.guardrails.detectors import Match
from cascadeflow.guardrails.placeholders import Placeholders
from cascadeflow.guardrails.policy import Rule

# Hashes are keyed so that a hash of a card number cannot be reversed by trying every card.
# Set CASCADEFLOW_AUDIT_KEY to compare hashes across processes; otherwise each process has its own.
_KEY = (os.environ.get("CASCADEFLOW_AUDIT_KEY") or secrets.token_hex(32)).encode()


def fingerprint(text: str) -> str:
    """HMAC-SHA256 of the text, first 16 hex digits (the one-shot form: no HMAC object)."""
    return hmac.digest(_KEY, text.encode("utf-8", "surrogatepass"), "sha256").hex()[:16]


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    detector: str
    kind: str
    action: str
    score: float
    stage: str  # input | output
    match_hash: str
    message: str  # the block message, for `block` rules

    @property
    def reason(self) -> str:
        """The stable reason code: `prompt_injection`, or `<detector>_<kind>` (`pii_credit_card`)."""
        return self.detector if self.detector == "prompt_injection" else f"{self.detector}_{self.kind}"


def scan_text(rules: Sequence[Rule], text: str, stage: str) -> list[tuple[Rule, Match, Finding]]:
    """Findings of every rule; a span two profiles' rules both find is reported once (first rule)."""
    out = []
    seen: set[tuple[str, int, int]] = set()
    for rule in rules:
        for match in rule.detector.scan(text):
            if match.score < rule.threshold or match.score <= 0:
                continue
            key = (match.kind, match.start, match.end)
            if key in seen:
                continue
            seen.add(key)
            out.append((rule, match, Finding(rule.name, rule.detector.name, match.kind, rule.action,
                                             round(match.score, 4), stage,
                                             fingerprint(text[match.start:match.end]), rule.message)))
    return out


class ScanCache:
    """Input scans of texts seen before: an agent sends its whole conversation on every call,
    so without this each turn would scan every earlier message again (quadratic in the
    conversation). Keyed by the rules and the text itself, so a text that changed is a new
    entry; holds at most `max_chars` characters of texts and forgets the oldest first."""

    def __init__(self, max_chars: int = 8_000_000, max_text: int = 256_000) -> None:
        self.max_chars = max_chars
        self.max_text = max_text
        self._entries: dict[tuple[tuple[int, ...], str], tuple[Sequence[Rule], Hits]] = {}
        self._chars = 0

    def scan(self, rules: Sequence[Rule], key: tuple[int, ...], text: str) -> Hits:
        """`scan_text(rules, text, "input")`, remembered under `key` (the rules' identities)."""
        if len(text) > self.max_text:
            return scan_text(rules, text, "input")
        found = self._entries.get((key, text))
        if found is not None and found[0] == rules:  # ids can be reused once rules are gone
            return found[1]
        hits = scan_text(rules, text, "input")
        self._entries[(key, text)] = (rules, hits)
        self._chars += len(text)
        while self._chars > self.max_chars and self._entries:
            (_key, old), _value = next(iter(self._entries.items()))
            del self._entries[(_key, old)]
            self._chars -= len(old)
        return hits


Hits = list[tuple[Rule, Match, Finding]]
INPUTS = ScanCache()


def transform(text: str, hits: Sequence[tuple[Rule, Match, Finding]],
              placeholders: Placeholders | None = None) -> str:
    """Apply redact and rewrite (the rule's replacement), right to left. Redact writes typed
    placeholders (`[EMAIL]`); a rule with `redaction` numbered or reversible writes the run's
    numbered ones from `placeholders` (`[EMAIL_1]`), which `Placeholders.restore` turns back into
    the originals for the application where the rule is reversible."""
    edits = sorted(((m.start, m.end, _replacement(r, m, text, placeholders)) for r, m, _f in hits
                    if r.action in ("redact", "rewrite")), reverse=True)
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


def _replacement(rule: Rule, match: Match, text: str, placeholders: Placeholders | None) -> str:
    if rule.action == "rewrite":
        return rule.replacement or ""
    if placeholders is not None and rule.redaction != "typed":
        return placeholders.label(match.kind, text[match.start:match.end], rule.redaction == "reversible")
    return f"[{match.kind.upper()}]"


def _texts(value: Any) -> list[tuple[Any, Any, str]]:
    """(container, key, text) for every text in messages / prompt / input, to read and replace."""
    out: list[tuple[Any, Any, str]] = []
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                out.append((value, index, item))
            elif isinstance(item, dict):
                content = item.get("content")
                if isinstance(content, str):
                    out.append((item, "content", content))
                elif isinstance(content, list):
                    for part in content:
                        if isinstance(part, dict) and isinstance(part.get("text"), str):
                            out.append((part, "text", part["text"]))
    return out


def _copy(value: Any) -> Any:
    """Copy the containers of messages (not the strings) so edits never touch the caller's objects."""
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def scan_prompt(rules: Sequence[Rule], prompt: Any, edit: bool, placeholders: Placeholders | None = None
                ) -> tuple[list[Finding], Any]:
    """Findings over every text of a prompt, and (when `edit` and a redact or rewrite rule
    matched) an edited copy; otherwise the prompt itself. The copy is made only when needed.
    Texts scanned before with the same rules are not scanned again (`INPUTS`). `placeholders`:
    the run's, for rules that redact to numbered placeholders (see `transform`)."""
    key = tuple(map(id, rules))
    if isinstance(prompt, str):
        hits = INPUTS.scan(rules, key, prompt)
        return [f for _r, _m, f in hits], (transform(prompt, hits, placeholders) if edit and hits else prompt)
    findings: list[Finding] = []
    edits: list[tuple[int, str]] = []
    places = _texts(prompt)
    for index, (_container, _key, text) in enumerate(places):
        hits = INPUTS.scan(rules, key, text)
        if hits:
            findings.extend(f for _r, _m, f in hits)
            if edit and any(r.action in ("redact", "rewrite") for r, _m, _f in hits):
                edits.append((index, transform(text, hits, placeholders)))
    if not edits:
        return findings, prompt
    edited = _copy(prompt)
    copied = _texts(edited)  # the same places, in the copy
    for index, text in edits:
        container, key, _old = copied[index]
        container[key] = text
    return findings, edited
