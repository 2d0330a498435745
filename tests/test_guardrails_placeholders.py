"""Reversible redaction at the guardrails layer: numbered placeholders stable within a run,
restored only by the run that made them."""

from __future__ import annotations

from cascadeflow.guardrails import Placeholders, load, scan_prompt, scan_text, transform

RULES = load(None).profiles["pii"].input


def test_the_same_value_gets_the_same_placeholder_across_messages() -> None:
    run = Placeholders()
    prompt = [{"role": "user", "content": "Mail ana@example.com and bo@example.com"},
              {"role": "user", "content": "Did ana@example.com answer?"}]
    _findings, edited = scan_prompt(RULES, prompt, True, run)
    assert edited[0]["content"] == "Mail [EMAIL_1] and [EMAIL_2]"
    assert edited[1]["content"] == "Did [EMAIL_1] answer?"
    assert prompt[0]["content"] == "Mail ana@example.com and bo@example.com"  # the caller's untouched


def test_restore_puts_back_only_this_runs_values() -> None:
    run, other = Placeholders(), Placeholders()
    text = "Card 4242 4242 4242 4242 for ana@example.com"
    redacted = transform(text, scan_text(RULES, text, "input"), run)
    assert "4242" not in redacted and "ana@" not in redacted
    answer = f"I have noted {redacted.split()[-1]} and [EMAIL_7]."
    assert run.restore(answer) == "I have noted ana@example.com and [EMAIL_7]."
    assert other.restore(answer) == answer


def test_without_placeholders_redaction_stays_typed() -> None:
    text = "Write to ana@example.com"
    assert transform(text, scan_text(RULES, text, "input")) == "Write to [EMAIL]"
