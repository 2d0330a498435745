"""Running rules over text and messages: findings, and the text after redact / rewrite.

A finding never carries the matched text, only a keyed hash of it, so the audit of near-misses
can be kept and shared without becoming a store of the PII it describes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cascadeflow.guardrails.detectors import Match
from cascadeflow.guardrails.policy import Rule

# Hashes are keyed so that a hash of a card number cannot be reversed by trying every card.
# Set CASCADEFLOW_AUDIT_KEY to compare hashes across processes; otherwise each process has its own.
_KEY = (os.environ.get("CASCADEFLOW_AUDIT_KEY") or secrets.token_hex(32)).encode()


def fingerprint(text: str) -> str:
    return hmac.new(_KEY, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:16]


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


def transform(text: str, hits: Sequence[tuple[Rule, Match, Finding]]) -> str:
    """Apply redact (typed placeholders) and rewrite (the rule's replacement), right to left."""
    edits = sorted(((m.start, m.end, _replacement(r, m)) for r, m, _f in hits
                    if r.action in ("redact", "rewrite")), reverse=True)
    last_start = len(text) + 1
    for start, end, new in edits:
        if end > last_start:
            continue  # overlaps an edit already made
        text = text[:start] + new + text[end:]
        last_start = start
    return text


def _replacement(rule: Rule, match: Match) -> str:
    if rule.action == "rewrite":
        return rule.replacement or ""
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


def scan_prompt(rules: Sequence[Rule], prompt: Any, edit: bool) -> tuple[list[Finding], Any]:
    """Findings over every text of a prompt, and (when `edit`) the edited copy, else the prompt."""
    if isinstance(prompt, str):
        hits = scan_text(rules, prompt, "input")
        return [f for _r, _m, f in hits], (transform(prompt, hits) if edit and hits else prompt)
    findings: list[Finding] = []
    edited = _copy(prompt) if edit else prompt
    for container, key, text in _texts(edited):
        hits = scan_text(rules, text, "input")
        findings.extend(f for _r, _m, f in hits)
        if edit and hits:
            container[key] = transform(text, hits)
    return findings, edited
