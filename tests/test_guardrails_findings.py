"""Findings are aggregated per rule and kind: a PII-dense text is one finding per kind with a
count, the keyed hashes of its first distinct values, and never the values themselves."""

from __future__ import annotations

import hmac
import json
from typing import Any

import cascadeflow
import litellm
from cascadeflow.guardrails import load, scan, scan_text, transform
from cascadeflow.guardrails.scan import MAX_HASHES, fingerprint

from tests.conftest import chat_kwargs

RULES = load(None).profiles["pii"].input


def test_one_finding_per_rule_and_kind_with_counts_and_hashes() -> None:
    text = "a@example.com, b@example.com, a@example.com; card 4242 4242 4242 4242"
    scan = scan_text(RULES, text, "input")
    assert len(scan.hits) == 4  # every match is still edited
    assert transform(text, scan) == "[EMAIL], [EMAIL], [EMAIL]; card [CREDIT_CARD]"
    email, card = scan.findings
    assert (email.kind, email.count, email.distinct) == ("email", 3, 2)
    assert email.hashes == (fingerprint("a@example.com"), fingerprint("b@example.com"))
    assert email.match_hash == email.hashes[0]
    assert (card.kind, card.count, card.distinct, card.hashes) == ("credit_card", 1, 1, ())
    assert card.match_hash == fingerprint("4242 4242 4242 4242")


def test_hashes_are_capped_and_counts_stay_exact() -> None:
    text = " ".join(f"user{i}@example.com" for i in range(MAX_HASHES + 36))
    [email] = scan_text(RULES, text, "input").findings
    assert (email.count, email.distinct, len(email.hashes)) == (MAX_HASHES + 36, MAX_HASHES + 36, MAX_HASHES)


def test_trace_entry_carries_the_count_not_the_values(provider: Any) -> None:
    cascadeflow.init(mode="enforce", capture_content=True)
    addresses = [f"person{i}@example.com" for i in range(5)]
    with cascadeflow.run(guardrails="pii") as session:
        litellm.completion(**chat_kwargs(provider, "Mail " + ", ".join(addresses + addresses[:1])))
    [finding] = [f for f in session.findings() if f["stage"] == "input"]
    assert (finding["kind"], finding["count"], finding["distinct"]) == ("email", 6, 5)
    assert len(finding["match_hashes"]) == 5 and finding["match_hashes"][0] == finding["match_hash"]
    assert session.summary()["findings_by_rule"]["pii_redaction"] == 6  # matches, not entries
    trail = json.dumps(session.trace())
    assert not any(a in trail for a in addresses)


def test_the_audit_hash_is_hmac_sha256_with_the_audit_key() -> None:
    for key in (b"k", b"x" * 64, b"a longer audit key than one block of sha-256 takes, on purpose" * 2):
        keyed = scan._Keyed(key)
        for value in (b"", b"dana@example.com", "4242 \u20ac".encode()):
            assert keyed.digest(value) == hmac.digest(key, value, "sha256")
    assert scan.fingerprint("a@example.com") == hmac.digest(scan._KEY, b"a@example.com", "sha256").hex()[:16]
