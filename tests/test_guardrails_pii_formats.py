"""PII formats beyond the first detectors: national phone plans, every card network, bare SSNs
where the text says so, ip:port, and the look-alikes that must stay unflagged."""

from __future__ import annotations

import pytest
from cascadeflow.guardrails import PIIDetector, phones

detector = PIIDetector()


def found(text: str) -> set[tuple[str, str]]:
    return {(m.kind, text[m.start:m.end]) for m in detector.scan(text)}


@pytest.mark.parametrize("number", [
    "+39 06 6982 3456", "06 69823456", "333 123 4567", "+39 333 1234567",  # Italy
    "(415) 555-2671", "415-555-2671", "+1-415-555-2671", "001-415-555-2671x123",  # US
    "030 12345678", "+49 (0)30 12345678", "(04829) 80130", "0171 2345678",  # Germany
    "01 23 45 67 89", "+33 (0)1 23 45 67 89",  # France
    "020 7946 0958", "+44 20 7946 0958", "07700 900123",  # UK
    "912 345 678", "+34 912 345 678",  # Spain (912... only with a phone word, below)
])
def test_national_phone_formats(number: str) -> None:
    text = f"Please call me on {number} tomorrow."
    assert ("phone", number) in found(text)


def test_phones_in_comma_separated_fields() -> None:
    """A contact export: the comma before a number that follows no digit separates fields. The
    lookbehind refused every comma, so no phone of a CSV row was found."""
    row = "1042,Jane Roe,+1 415 555 2671,4242 4242 4242 4242,10115 Berlin"
    assert found(row) == {("phone", "+1 415 555 2671"), ("credit_card", "4242 4242 4242 4242")}
    assert ("phone", "(415) 555-2671") in found("7,Jane,(415) 555-2671,Berlin")
    # a comma after a digit, or before one to three digits, is part of an amount
    assert found("Revenue was 1,415,555,2671 dollars") == set()
    assert found("Paid 4155552671,50 EUR") == set()


@pytest.mark.parametrize("card", [
    "6759649826438446",  # Maestro
    "3530111333300000",  # JCB 16
    "180001234567899",   # JCB 15
    "6212345678901281",  # UnionPay
    "2200123456789076",  # Mir
    "30569309025904",    # Diners
    "378282246310005",   # Amex
])
def test_card_networks(card: str) -> None:
    assert ("credit_card", card) in found(f"Card number: {card}")


def test_short_maestro_numbers() -> None:
    """12 digits under one of Maestro's own ranges are a card with no word before them; other
    short Maestro-like numbers (13 digits: EAN-13; 6390 and 57: mobiles of +63 and +57 written
    without "+") only where the text says "card"."""
    assert found("Details on file -> 501827403194; please verify.") == {("credit_card", "501827403194")}
    assert found("1042,Jane Roe,676120485732,10115 Berlin") == {("credit_card", "676120485732")}
    for number in ("639055512342", "573215509874", "5018274031910"):
        assert ("credit_card", number) not in found(f"Details on file -> {number}; please verify.")
        assert ("credit_card", number) in found(f"Card number: {number}")
    assert found("Details on file -> 501827403195") == set()  # fails the Luhn check


def test_look_alikes_are_not_cards_ips_or_phones() -> None:
    assert found("IMEI 352099001761481 is blocked") == set()
    assert found("EAN 4006381333931 is out of stock") == set()
    assert found("Upgrade to version 6.2.1.21 to fix it") == set()
    assert found("Upgrade to v10.0.0.1 first") == set()
    assert found("Invoice no. 5466723133 is attached") == set()
    assert found("Order 502940485 shipped on 2026-03-01") == set()


def test_ssn_without_separators_needs_the_word() -> None:
    assert ("ssn", "502940485") in found("SSN: 502940485")
    assert ("ssn", "502.94.0485") in found("my social security number is 502.94.0485")
    assert not any(kind == "ssn" for kind, _ in found("Reference 502940485"))


def test_ip_with_port() -> None:
    assert ("ip_address", "203.0.113.9:8443") in found("The server at 203.0.113.9:8443 is down")


def test_every_match_has_a_score() -> None:
    matches = detector.scan("Call 020 7946 0958, card 4242 4242 4242 4242, SSN 123-45-6789")
    assert len(matches) == 3 and all(0 < m.score <= 1 for m in matches)


def test_unknown_country_codes_ask_libphonenumber_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    valid, unallocated = "+852 2123 4567", "+852 1234 5678"  # Hong Kong: not in the built-in table
    assert phones.libphonenumber() is not None  # the dev extra installs it
    assert ("phone", valid) in found(f"Call {valid} today") and not found(f"Call {unallocated} today")
    monkeypatch.setattr(phones, "libphonenumber", lambda: None)  # without the extra: lengths only
    assert ("phone", unallocated) in found(f"Call {unallocated} today")
