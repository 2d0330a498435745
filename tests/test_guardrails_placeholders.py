"""Reversible redaction at the guardrails layer: numbered placeholders stable within a run,
restored only by the run that made them, and only for rules that ask for it."""

from __future__ import annotations

import json

import pytest
from cascadeflow.errors import ConfigError
from cascadeflow.guardrails import Placeholders, compile_policy, scan_prompt, scan_text, transform
from cascadeflow.guardrails.placeholders import LONGEST, Restorer
from cascadeflow.guardrails.policy import Rule


def rules(redaction: str, types: tuple[str, ...] = ("email", "credit_card")) -> tuple[Rule, ...]:
    rule = {"name": "pii", "detector": "pii", "types": list(types), "action": "redact",
            "redaction": redaction}
    spec = {"version": "t", "profiles": {"p": {"input": [rule]}}}
    return compile_policy(spec, "test").profiles["p"].input


REVERSIBLE = rules("reversible")


def test_the_same_value_gets_the_same_placeholder_across_messages() -> None:
    run = Placeholders()
    prompt = [{"role": "user", "content": "Mail ana@example.com and bo@example.com"},
              {"role": "user", "content": "Did ana@example.com answer?"}]
    _findings, edited = scan_prompt(REVERSIBLE, prompt, True, run)
    assert edited[0]["content"] == "Mail [EMAIL_1] and [EMAIL_2]"
    assert edited[1]["content"] == "Did [EMAIL_1] answer?"
    assert prompt[0]["content"] == "Mail ana@example.com and bo@example.com"  # the caller's untouched


def test_restore_puts_back_only_this_runs_values() -> None:
    run, other = Placeholders(), Placeholders()
    text = "Card 4242 4242 4242 4242 for ana@example.com"
    redacted = transform(text, scan_text(REVERSIBLE, text, "input"), run)
    assert "4242" not in redacted and "ana@" not in redacted
    answer = f"I have noted {redacted.split()[-1]} and [EMAIL_7]."
    assert run.restore(answer) == "I have noted ana@example.com and [EMAIL_7]."
    assert other.restore(answer) == answer


def test_numbered_placeholders_are_not_restored() -> None:
    run = Placeholders()
    text = "Write to ana@example.com"
    redacted = transform(text, scan_text(rules("numbered"), text, "input"), run)
    assert redacted == "Write to [EMAIL_1]" and not run.restoring
    assert run.restore(redacted) == redacted


def test_without_placeholders_or_with_typed_rules_redaction_stays_typed() -> None:
    text = "Write to ana@example.com"
    assert transform(text, scan_text(REVERSIBLE, text, "input")) == "Write to [EMAIL]"
    assert transform(text, scan_text(rules("typed"), text, "input"), Placeholders()) == "Write to [EMAIL]"


def test_restore_in_json_keeps_the_document_valid() -> None:
    run = Placeholders()
    label = run.label("secret_note", 'say "hi" \\ bye')
    arguments = json.dumps({"note": f"{label}!"})
    assert json.loads(run.restore_json(arguments)) == {"note": 'say "hi" \\ bye!'}


@pytest.mark.parametrize("cuts", [(3,), (1, 5, 9), tuple(range(1, 30))])
def test_a_placeholder_split_across_chunks_is_restored_whole(cuts: tuple[int, ...]) -> None:
    run = Placeholders()
    label = run.label("email", "ana@example.com")
    text = f"Sent to {label} [not one] and [{'x' * (LONGEST + 5)} done."
    pieces = [text[a:b] for a, b in zip((0, *cuts), (*cuts, len(text)), strict=True)]
    restorer = Restorer(run)
    out = [restorer.feed(p) for p in pieces]
    assert "".join(out) + restorer.finish() == run.restore(text)
    assert all("[EMAIL" not in piece for piece in out)


def test_numbered_redaction_is_for_input_redact_rules() -> None:
    for stage, action in (("output", "redact"), ("input", "block")):
        spec = {"version": "t", "profiles": {"p": {stage: [
            {"name": "r", "detector": "pii", "action": action, "redaction": "reversible"}]}}}
        with pytest.raises(ConfigError, match=r"profiles\.p"):
            compile_policy(spec, "test")


def test_placeholder_text_the_application_wrote_is_never_issued_nor_restored() -> None:
    run = Placeholders()
    prompt = [{"role": "system", "content": "Greet [EMAIL_1] and [CREDIT_CARD_2] by name."},
              {"role": "user", "content": "Mail ana@example.com and bo@example.com, "
                                          "card 4242 4242 4242 4242"}]
    _findings, edited = scan_prompt(REVERSIBLE, prompt, True, run)
    assert edited[1]["content"] == "Mail [EMAIL_2] and [EMAIL_3], card [CREDIT_CARD_1]"
    answer = "Greet [EMAIL_1]: mail sent to [EMAIL_2], card [CREDIT_CARD_1], [CREDIT_CARD_2]."
    assert run.restore(answer) == ("Greet [EMAIL_1]: mail sent to ana@example.com, card 4242 4242 4242 4242, "
                                   "[CREDIT_CARD_2].")
    # the run's own placeholders sent back in the history are its own, not the application's
    _findings, again = scan_prompt(REVERSIBLE, [*edited, {"role": "user", "content": "And cy@example.com"}],
                                   True, run)
    assert again[2]["content"] == "And [EMAIL_4]"
    assert run.restore("[EMAIL_2]") == "ana@example.com"


@pytest.mark.parametrize(("kind", "label"), [("emp-id", "[EMP_ID_1]"), ("employee id", "[EMPLOYEE_ID_1]"),
                                             ("9lives", "[PII_9LIVES_1]"), ("x" * 60, f"[{'X' * 32}_1]")])
def test_a_custom_kinds_placeholder_is_restored_whatever_its_name(kind: str, label: str) -> None:
    rule = {"name": "ids", "detector": "regex", "patterns": {kind: r"\bEMP-\d{5}\b"}, "action": "redact",
            "redaction": "reversible"}
    ids = compile_policy({"version": "t", "profiles": {"p": {"input": [rule]}}}, "test").profiles["p"].input
    run = Placeholders()
    _findings, edited = scan_prompt(ids, "Employee EMP-12345 asked", True, run)
    assert edited == f"Employee {label} asked"
    assert run.restore(f"Done for {label}.") == "Done for EMP-12345."
    restorer = Restorer(run)
    streamed = "".join(restorer.feed(c) for c in f"Done for {label}.") + restorer.finish()
    assert streamed == "Done for EMP-12345."
