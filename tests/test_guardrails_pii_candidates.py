"""The PII scan tries each pattern only where a match of it can start (e-mails at the start of a
local part, numbers at chosen digits of the numeric runs, phones where the characters allow a
start, nothing inside a match already kept where every match would be dropped). It must find
what the plain way finds: every pattern's `finditer` over the windows around each `@` and each
numeric run, every position tried. The plain way is kept here, as the reference."""

from __future__ import annotations

import re

import pytest
from cascadeflow import secrets
from cascadeflow.guardrails import detectors
from cascadeflow.guardrails.detectors import PII_TYPES, Match, PIIDetector
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# pieces that make PII and its look-alikes when put side by side in any order
PIECES = ["4242 4242 4242 4242", "4242424242424242", "4111-1111-1111-1111", "378282246310005",
          "5018 1234 5678", "DE89 3704 0044 0532 0130 00", "DE89370400440532013000",
          "GB29 NWBK 6016 1331 9268 19",
          "10.0.0.1", "192.168.1.254", ":8080", ":", "::1", "fe80::1", "256.1.1.1", "+1 415 555 0123",
          "+44 20 7946 0958", "0049 (0) 30 1234567", "(030) 1234567", "(0)", "00", "+", "415-555-0123",
          "415.555.0123", "555/1234567", "x12", " ext. 123", "123-45-6789", "123 45 6789", "078-05-1120",
          "a@b.com", "dana.example1@example.com", "x%y@z.org", "@", "%", "card", "SSN", "Tel.", "invoice",
          "IMEI", "version", "2026-03-01", "12/03/2026", "1.2.3.4.5", "3331234567", "(", ")", "-", ".", "/",
          ",", " ", "\n", "\t", "AB", "e", "t", "x", "1", "12", "123", "1234", "12345", "_", "#", "é", "٣",
          "\u00a0", "sk-abcdefghijklmnopqrstuvwxyz123456"]
TEXTS = st.one_of(st.lists(st.sampled_from(PIECES), max_size=40).map("".join),
                  st.text(alphabet="0123456789 -.:+()/xet@%,\nAEZab_é", max_size=120))


def _windows(text: str, marks: list[tuple[int, int]], before: int, after: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in marks:
        lo, hi = max(start - before, 0), min(end + after, len(text))
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _reference(text: str, types: tuple[str, ...]) -> list[Match]:
    """What the scan finds, each pattern tried at every position of its windows."""
    kept: list[Match] = []

    def keep(found: list[Match]) -> None:  # each match that overlaps no kept one nor the last taken
        taken: list[Match] = []
        for m in found:
            overlaps = any(k.start < m.end and m.start < k.end for k in kept)
            if not (overlaps or (taken and m.start < taken[-1].end)):
                taken.append(m)
        kept[:] = sorted(kept + taken, key=lambda m: m.start)

    if "api_key" in types:
        keep([Match("api_key", start, end) for start, end in secrets.spans(text)])
    if "email" in types:
        ats = [(m.start(), m.start()) for m in re.finditer("@", text)]
        keep([Match("email", m.start(), m.end()) for lo, hi in _windows(text, ats, 64, 255)
              for m in detectors._PATTERNS["email"].finditer(text, lo, hi)])
    windows = _windows(text, [m.span() for m in detectors._RUN.finditer(text)], 16, 8)
    for kind in (k for k in detectors._NUMERIC if k in types):
        valid = detectors._VALID[kind]
        matches = [m for lo, hi in windows for m in detectors._PATTERNS[kind].finditer(text, lo, hi)]
        keep([Match(kind, m.start(), m.end(), score) for m in matches if (score := valid(m)) > 0])
    if "ip_address" in types and text.count(":") >= 2:
        ips = detectors._PATTERNS["ip_address"].finditer(text)
        keep([Match("ip_address", m.start(), m.end()) for m in ips
              if ":" in m.group() and detectors._ip_ok(m.group())])
    return kept


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS, types=st.sampled_from([PII_TYPES, ("phone",), ("ip_address", "phone"),
                                          ("credit_card", "ssn"), ("email", "iban", "phone"),
                                          ("credit_card", "ssn", "iban", "api_key"), ("email",),
                                          ("ip_address",), ("api_key",)]))
def test_the_scan_finds_what_every_position_tried_finds(text: str, types: tuple[str, ...]) -> None:
    assert PIIDetector(types).scan(text) == _reference(text, types)


def test_a_contact_export_gives_the_same_matches() -> None:
    rows = [f"{i},Dana Example{i},dana.example{i}@example.com,+1 415 555 {i:04d},4242 4242 4242 4242,"
            f"DE89 3704 0044 0532 0130 00,10.0.{i % 256}.{i * 7 % 256}:{i}\n" for i in range(300)]
    text = "".join(rows)
    assert PIIDetector().scan(text) == _reference(text, PII_TYPES)


@pytest.mark.parametrize("text", [
    "DE89 3704 0044 0532 0130 00::1,x12@(123+",  # an IPv6 match over a kept IBAN
    "::1415-555-0123\tdana.example1@example.com123-45-6789SSN4242 4242 4242 4242"
    "sk-abcdefghijklmnopqrstuvwxyz123456",
    "1234a@b.comABdana.example1@example.com123-45-6789::112/03/2026415-555-0123"])
def test_matches_over_kept_ones_are_dropped(text: str) -> None:
    assert PIIDetector().scan(text) == _reference(text, PII_TYPES)


# every anchor of every secret format, in its own case and others, and look-alikes without one
ANCHORS = sorted({a for fmt in secrets.FORMATS for a in fmt.anchors})
SECRET_PIECES = [*ANCHORS, *(a.upper() for a in ANCHORS), *(a.title() for a in ANCHORS), "Bearer ",
                 "BASIC ", "bearer", "basi", "beare", "token", "key", "secret", "password", " ", "a", "Z",
                 "é", "\u212a", "\u017f"]  # (the Kelvin sign and the long s fold to k and s)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.lists(st.sampled_from(SECRET_PIECES), max_size=12).map("".join),
                      st.text(alphabet="abcdefghijklmnopqrstuvwxyzBGIJKS sk-_:=@/.é", max_size=60)))
def test_a_text_the_secrets_precheck_rules_out_holds_no_anchor(text: str) -> None:
    """`find` tries a format only where one of its anchors occurs (in the ASCII-lowered text
    for formats that lower it) in a text holding one of its gate's characters; the one search
    that spares it a text must find every such text."""
    low = text.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"))
    armed = any((not fmt.gate or any(c in text for c in fmt.gate)) and a in (low if fmt.lower else text)
                for fmt in secrets.FORMATS for a in fmt.anchors)
    if armed:
        assert secrets.POSSIBLE.search(text) is not None


@pytest.mark.parametrize("text", ["billing", "Thanks, your refund is on its way.", "", "é" * 50])
def test_a_short_answer_without_digits_or_key_marks_has_nothing(text: str) -> None:
    assert PIIDetector().scan(text) == [] == _reference(text, PII_TYPES)
