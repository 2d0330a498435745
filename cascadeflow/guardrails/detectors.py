"""Detectors: small, fast, deterministic. Each one finds spans of text and scores them 0..1.

A detector is anything with `name` and `scan(text) -> list[Match]`, so a heavier classifier
(an NER model for PII, a prompt-injection model) can be plugged in later as an optional extra.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import compress, islice, repeat, takewhile
from operator import ge, itemgetter, le, sub
from typing import NamedTuple, Protocol

from cascadeflow import secrets
from cascadeflow.guardrails import phones
from cascadeflow.guardrails.cards import MAESTRO_IIN, SHORT_MAESTRO, issued, luhn_ok


class Match(NamedTuple):
    """A span a detector found (a tuple: made in C, a PII-dense text has tens of thousands)."""

    kind: str  # e.g. credit_card, email, prompt_injection, word
    start: int
    end: int
    score: float = 1.0


class Detector(Protocol):
    name: str

    def scan(self, text: str) -> list[Match]: ...


# -- checksums and validity ------------------------------------------------------------------

def ssn_ok(area: str, group: str, serial: str) -> bool:
    """US SSN validity: area 000, 666 and 900-999, group 00 and serial 0000 are never issued."""
    a = int(area)
    return a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"


_IBAN_LENGTHS = {"AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
                 "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22,
                 "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18,
                 "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26}


def iban_ok(compact: str) -> bool:
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    if not 15 <= len(compact) <= 34:
        return False
    rest = compact[4:]  # most are all digits: translated (a lookup a character) only if not
    if not rest.isdigit():
        rest = rest.translate(_LETTER_VALUES)
    return int(rest + compact[:4].translate(_LETTER_VALUES)) % 97 == 1


_LETTER_VALUES = str.maketrans({chr(c): str(c - 55) for c in range(65, 91)})  # A=10 ... Z=35


# -- PII ---------------------------------------------------------------------------------------

_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                        r"\.[A-Za-z]{2,24}\b"),
    "credit_card": re.compile(r"(?<![\d-])(?:\d[ -]?){11,18}\d(?![\d-])"),
    "ssn": re.compile(r"(?<![\d.-])(\d{3})([- .]?)(\d{2})\2(\d{4})(?![\d-]|\.\d)"),
    # `\b[A-Z]` written as an upper-case letter with no word character before it: a pattern that
    # starts with a letter class lets the engine skip to upper-case letters, rare in most text
    "iban": re.compile(r"([A-Z](?<!\w[A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?)\b"),
    # IPv4 (group 1) with an optional :port, or IPv6
    "ip_address": re.compile(r"(?<![\w.:])(?:((?:\d{1,3}\.){3}\d{1,3})(?::\d{1,5}(?![\w:]))?"
                             r"|(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4})(?![\w:]|\.\w)"),
    "phone": phones.PATTERN,
}
PII_TYPES = (*_PATTERNS, "api_key")


# words that, just before a number, say what it is (or what it is not)
_CONTEXT = {
    "phone": re.compile(r"(?i)(?<!\w)(?:" + "|".join(re.escape(w) for w in phones.CONTEXT) + r")(?!\w)"),
    "card": re.compile(r"(?i)card|karte|carte|tarjeta|carta|cart\u00e3o|kaart|visa|mastercard|maestro|amex"
                       r"|jcb|unionpay|diners|discover|\bmir\b|credit|debit|\bcc\b|\bpan\b"),
    "not_phone": phones.NOT_PHONE,
    "not_card": re.compile(r"(?i)imei|\bean\b|gtin|isbn|barcode|serial|\bupc\b|iccid|tracking|sku"),
    "ssn": re.compile(r"(?i)\bssn|social security|\bss ?#|\bss no|soc\.? ?sec|\btin\b|taxpayer"),
}


def _before(text: str, start: int, kind: str, span: int = 40) -> bool:
    return bool(_CONTEXT[kind].search(text, max(start - span, 0), start))


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _v4_ok(text: str) -> bool:
    """`ipaddress.ip_address` of an IPv4 candidate, without its exceptions: ASCII digits, no
    leading zero, each octet at most 255."""
    return _V4.fullmatch(text) is not None


def _ip_ok(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return not (isinstance(address, ipaddress.IPv6Address) and text.count(":") < 2)


class PIIDetector:
    """Emails, phones (international formats), cards (Luhn), SSNs (issued ranges), IBANs (mod 97),
    IP addresses, provider API keys and tokens, plus custom regexes and word lists."""

    name = "pii"

    def __init__(self, types: Sequence[str] = PII_TYPES, patterns: dict[str, str] | None = None,
                 words: Sequence[str] = ()) -> None:
        unknown = sorted(set(types) - set(PII_TYPES))
        if unknown:
            raise ValueError(f"unknown PII type(s) {unknown}; known: {list(PII_TYPES)}")
        self.types = tuple(types)
        self.custom = _custom_patterns(patterns or {})
        self.words = _word_pattern(words)
        self.possible = None if self.custom or self.words is not None else _possible(self.types)

    def scan(self, text: str) -> list[Match]:
        """Matches of every type, earlier types winning where two overlap; linear in the text
        and in the number of matches (each type's matches are merged into the kept ones)."""
        possible = self.possible
        if possible is not None and possible.search(text) is None:
            return []
        kept: list[Match] = []
        for found in self._candidates(text, kept):
            if found:
                kept[:] = _merge(kept, found)
        return kept

    def _candidates(self, text: str, kept: list[Match]) -> Iterator[list[Match]]:
        """Each type's matches, sorted by start, in the order that decides overlaps. A numeric
        candidate inside a match already kept (`kept`, updated between types) is not checked:
        the digits of a card number are not tried as a phone number."""
        types = self.types
        if "api_key" in types:
            yield [Match("api_key", start, end) for start, end in secrets.spans(text)]
        for kind, pattern in self.custom.items():
            yield [Match(kind, m.start(), m.end()) for m in pattern.finditer(text) if m.end() > m.start()]
        if self.words is not None:
            yield [Match("word", m.start(), m.end()) for m in self.words.finditer(text)]
        if "email" in types and "@" in text:
            yield _emails(text)
        # Numbers: one pass finds the numeric runs; the specific patterns then look only at a
        # small window around each run (wide enough on the left for an IBAN's letters).
        numeric = [k for k in _NUMERIC if k in types]
        digits = text.encode("ascii").translate(_DIGIT_BYTES) if numeric and text.isascii() else None
        if digits is not None and digits.count(b"0") * 64 > len(text):
            # digits everywhere (an export): the windows cover most of the text, read in C instead
            yield from _Numbers(text).scan(numeric, kept)
        elif numeric:  # few digits (prose): the windows are small, each pattern runs over them
            windows = _windows(text, digits)
            for kind in numeric if windows else ():
                yield _numeric(text, windows, kind, kept)
        if "ip_address" in types and text.count(":") >= 2:
            yield [Match("ip_address", m.start(), m.end()) for m in _PATTERNS["ip_address"].finditer(text)
                   if ":" in m.group() and _ip_ok(m.group())]


def _possible(types: Sequence[str]) -> re.Pattern[str] | None:
    """What every text with a match of `types` contains (None: nothing to rule out by): a digit
    (every numeric match lies in a run of digits, `_RUN`), two colons for an IPv6 address, an
    `@`, a secret's gate or anchor. One search in C then spares a short answer ("billing") the
    whole scan: in an enforced call with the default output rules, that scan cost more on the
    caller's thread than the rest of the guardrails together."""
    parts = []
    if any(kind in types for kind in _NUMERIC):
        parts.append(r"\d")
    if "ip_address" in types:
        parts.append(":")
    if "email" in types:
        parts.append("@")
    if "api_key" in types:
        parts.append(secrets.POSSIBLE.pattern)
    return re.compile("|".join(parts)) if parts else None


def _numeric(text: str, windows: list[tuple[int, int]], kind: str, kept: list[Match]) -> list[Match]:
    """The valid matches of a numeric `kind` inside `windows` that overlap none of `kept`."""
    pattern = _PATTERNS[kind]
    if kind == "ip_address":
        # only IPv4 addresses score here (`_ip`; IPv6 is searched apart), and one has three dots:
        # a window with fewer is not searched (the IPv6 branch backtracks at every hex letter,
        # most of this type's time in prose: a 4 KB ticket's scan, 3% fewer instructions)
        windows = [w for w in windows if text.count(".", *w) >= 3]
    return _fresh(kind, (m for lo, hi in windows for m in pattern.finditer(text, lo, hi)), kept)


def _fresh(kind: str, found: Iterable[re.Match[str]], kept: list[Match]) -> list[Match]:
    """The matches of `found` (in order of start) that overlap none of `kept` (sorted,
    non-overlapping; walked once alongside) and that `kind`'s check scores above 0."""
    valid = _VALID[kind]
    out: list[Match] = []
    i, size, ends = 0, len(kept), list(map(_END, kept))
    for m in found:
        start, end = m.span()
        i = bisect_right(ends, start, i)  # the first kept that ends after `start`
        if i < size and kept[i][1] < end:
            continue
        score = valid(m)
        if score > 0:
            out.append(Match(kind, start, end, score))
    return out


def _merge(kept: list[Match], found: list[Match]) -> list[Match]:
    """`kept` (sorted, non-overlapping) with the matches of `found` (sorted) that overlap none of
    them. Mostly none does (numeric types skip what is kept already): the two lists sorted
    together are then the answer, which a check in C confirms; else each match of `found` is
    looked up by bisection (`_merge_overlapping`)."""
    merged = sorted(kept + found, key=_START) if kept else found
    if all(map(le, map(_END, merged), map(_START, islice(merged, 1, None)))):
        return merged  # each match ends where or before the next one starts
    return _merge_overlapping(kept, found)


def _merge_overlapping(kept: list[Match], found: list[Match]) -> list[Match]:
    """`_merge`, a match of `found` at a time."""
    fresh: list[Match] = []
    i, size = 0, len(kept)
    last_end = -1  # end of the last match taken from `found`
    for match in found:
        _kind, start, end, _score = match
        if start < last_end:
            continue  # overlaps the previous one of its own type (matches of a type can touch)
        if size:
            i = bisect_right(kept, start, i, size, key=_END)  # the first kept that ends after `start`
            if i < size and kept[i].start < end:
                continue  # overlaps a kept match
        fresh.append(match)
        last_end = end
    if not fresh:
        return kept
    return sorted(kept + fresh, key=_START) if kept else fresh


_START, _END = itemgetter(1), itemgetter(2)


_NUMERIC = ("iban", "credit_card", "ssn", "ip_address", "phone")


# Validity of the matched strings seen lately, by string (a check reads only the string; what
# the words before a match change is decided apart): an export repeats its values.
_SEEN = 4096  # entries a memo holds before it starts again from empty
_CARDS: dict[str, str] = {}  # match -> its digits, "" where it is no card whatever the context
_IBANS: dict[str, float] = {}


def _card_digits(number: str) -> str:
    """The digits of a card number as issued (a network's prefix and length, Luhn), else ""."""
    digits = number.replace(" ", "").replace("-", "")
    short = len(digits) == 12 or (len(digits) == 13 and digits[0] != "4")  # Maestro's, if any
    if not (12 <= len(digits) <= 19 and (digits.startswith(SHORT_MAESTRO) if short else issued(digits))
            and luhn_ok(digits)):
        return ""
    return digits


def _card(m: re.Match[str]) -> float:
    """Context is read only where it decides: a short Maestro number needs "card" before it
    (12 digits under one of Maestro's own ranges score lower without it), and a number of 15
    digits or fewer must not follow "IMEI", "EAN", "serial"..."""
    number = m.group()
    digits = _CARDS.get(number)
    if digits is None:
        if len(_CARDS) >= _SEEN:
            _CARDS.clear()
        digits = _CARDS[number] = _card_digits(number)
    if len(digits) > 15:
        return 0.9
    if not digits:
        return 0.0
    short = len(digits) == 12 or (len(digits) == 13 and digits[0] != "4")
    text, start = m.string, m.start()
    if len(digits) <= 15 and _before(text, start, "not_card"):
        return 0.0  # an IMEI, an EAN, a serial number that happens to pass Luhn
    if not short:
        return 0.9
    if _before(text, start, "card"):
        return 1.0
    return 0.8 if len(digits) == 12 and digits.startswith(MAESTRO_IIN) else 0.0


def _ssn(m: re.Match[str]) -> float:
    area, sep, group, serial = m.groups()
    if not ssn_ok(area, group, serial):
        return 0.0
    if sep == "-":
        return 0.9
    return 0.9 if _before(m.string, m.start(), "ssn") else 0.0  # bare, spaced, dotted: where it says SSN


_VERSION_WORDS = ("version", "release", "build", "firmware", "ver", "ver.")


def _ip(m: re.Match[str]) -> float:
    address = m.group(1)
    if address is None or not _v4_ok(address):
        return 0.0
    text, start = m.string, m.start()
    if not text[start - 1:start].isspace():
        return 0.9  # the character before (no word character, "." or ":") ends no word below
    before = text[max(start - 12, 0):start].rstrip().lower()
    if before.endswith(_VERSION_WORDS) or (before.endswith("v") and not before[-2:-1].isalpha()):
        return 0.0  # "version 6.2.1.21", "v10.0.0.1"
    return 0.9


_FRAGMENT = re.compile(r"(?:\d|[A-Z]{2}\d{2}) $")


def _phone(m: re.Match[str]) -> float:
    """Tried first as if a word such as "invoice" stood before it (the strictest reading), so the
    words before it are read only for numbers whose shape does not decide."""
    number, text, start = m.group(), m.string, m.start()
    # (`$` also matches before a last newline)
    if text[start - 1:start] in (" ", "\n") and _FRAGMENT.search(text, max(start - 5, 0), start):
        return 0.0  # the tail of a longer number ("FR96 0917 4297 0012 ...", a failed IBAN)
    if phones.phone_ok(number, False, True):
        return 0.85
    if number.startswith(("+", "00")):
        return 0.0
    context = _before(m.string, m.start(), "phone")
    named_id = not context and _before(m.string, m.start(), "not_phone", 24)
    return (0.95 if context else 0.85) if phones.phone_ok(number, context, named_id) else 0.0


def _iban(m: re.Match[str]) -> float:
    number = m.group(1)
    score = _IBANS.get(number)
    if score is None:
        if len(_IBANS) >= _SEEN:
            _IBANS.clear()
        score = _IBANS[number] = 1.0 if iban_ok(number.replace(" ", "")) else 0.0
    return score


# each numeric type's check: a score (0: not this type), raised by context words before the match
_VALID: dict[str, Callable[[re.Match[str]], float]] = {
    "iban": _iban,
    "credit_card": _card,
    "ssn": _ssn,
    "ip_address": _ip,
    "phone": _phone,
}


_RUN = re.compile(r"\d[\d \-().]{4,}\d")


def _around(text: str, mark: str, before: int, after: int) -> list[tuple[int, int, list[int]]]:
    """Merged windows around each occurrence of `mark` (found at C speed, not by a regex pass),
    each with the positions of the marks it holds."""
    out: list[tuple[int, int, list[int]]] = []
    at = text.find(mark)
    while at != -1:
        lo, hi = max(at - before, 0), min(at + after, len(text))
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], hi, out[-1][2])
            out[-1][2].append(at)
        else:
            out.append((lo, hi, [at]))
        at = text.find(mark, at + 1)
    return out


def _classes(groups: dict[bytes, bytes], rest: bytes = b"_") -> bytes:
    """A `bytes.translate` table: the bytes of each key to its one-byte class, all others to `rest`."""
    table = bytearray(rest * 256)
    for members, name in groups.items():
        for byte in members:
            table[byte] = name[0]
    return bytes(table)


_UPPER, _LOWER, _DIGITS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz", b"0123456789"
# an e-mail's local-part characters (`%` apart: the one the pattern lets a match start after)
_LOCAL = _classes({_UPPER + _LOWER + _DIGITS + b"._+-": b"l", b"%": b"%"})


def _emails(text: str) -> list[Match]:
    """`finditer` of the e-mail pattern over the windows around each `@`, the pattern tried only
    where a match can start: where the local-part characters before an `@` begin (at most 64
    before it), or just after a `%` among them (the lookbehind refuses every other local-part
    character before a start). The same matches: every other position fails. A window with an
    `@` every few characters is left to `finditer`. Only the windows are classified (one byte
    per character, `local[i - lo]` for `text[i]`): a ticket with one address translates 320
    characters, not the whole text (a 4 KB text: 35,000 instructions less)."""
    match = _PATTERNS["email"].match
    out: list[Match] = []
    for lo, hi, marks in _around(text, "@", 64, 255):
        if len(marks) * 16 > hi - lo:  # an "@" every few characters: tried at each, in C
            out.extend(Match("email", m.start(), m.end()) for m in _PATTERNS["email"].finditer(text, lo, hi))
            continue
        local = text[lo:hi].encode("ascii", "replace").translate(_LOCAL)
        rfind, find = local.rfind, local.find
        resume = lo
        for at in marks:
            first = max(resume, at - 64)
            if first >= at:
                continue
            start = rfind(b"_", first - lo, at - lo) + 1
            start = start + lo if start else first
            m = match(text, start, hi)
            if m is None and find(b"%", start - lo, at - lo) != -1:
                m = _after_percent(text, local, lo, start, at, hi)
            if m is not None:
                resume = m.end()
                out.append(Match("email", m.start(), resume))
    return out


def _after_percent(text: str, local: bytes, lo: int, start: int, at: int, hi: int) -> re.Match[str] | None:
    """The first e-mail that starts just after a `%` between `start` and `at` (`local`: the
    classes of the window from `lo`)."""
    match, find = _PATTERNS["email"].match, local.find
    percent = find(b"%", start - lo, at - lo)
    while percent != -1:
        m = match(text, percent + lo + 1, hi)
        if m is not None:
            return m
        percent = find(b"%", percent + 1, at - lo)
    return None


# an ASCII text's digits, the other characters of a numeric run (`_RUN`), and the rest
_RUN_CLASSES = _classes({_DIGITS: b"0", b" ().-": b"."})
_RUN_BYTES = re.compile(rb"0[0.]{4,}0")  # `_RUN` over those classes
# a phone number's characters, those its lookbehind refuses (`w`), a comma (refused after a
# digit), and the rest (`_`)
_PHONE_CLASSES = _classes({_DIGITS: b"0", b"+": b"+", b"(": b"(", b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f": b" ",
                           b"./-": b".", _UPPER + _LOWER + b"_": b"w", b",": b","})
# the characters a phone number is made of (`p`): any other ends it
_PHONE_STOPS = _classes({_DIGITS + b"+() \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f./-xet": b"p"})
# the character before a phone number's start, with what every match has from there on
# (`+` or `(` and a digit; five digits; `00`, more digits and a `(`)
# (a set of characters first, so that the engine skips in C to where one is)
_PHONE_START = re.compile(rb"[ (_,](?<!0,)(?=[+(]0|0(?:[ .]?0){4}|000{0,2}[ .]?\()")
_IBAN_CLASSES = _classes({_UPPER: b"A", _DIGITS: b"0"})
_DOT_CLASSES = _classes({_DIGITS: b"0", b".": b"."})
# necessary parts of a match, over the classes above: a run without one is not tried
_CORES = {"ssn": (_RUN_CLASSES, re.compile(rb"000\.?00\.?0000")),
          "ip_address": (_DOT_CLASSES, re.compile(rb"0\.0{1,3}\.0{1,3}\.0"))}
_LONG_RUN = 64  # characters: a run longer is searched by the regex engine (see `_Numbers.in_long_run`)
# digits a match of each type holds, all in the run it starts in, and within how many
# characters from its start (counted there only: a run can be as long as the text)
_MIN_DIGITS = {"credit_card": (12, 23), "ssn": (9, 11), "ip_address": (4, 15)}


class _Numbers:
    """The numeric runs of an ASCII text and the windows around them (as `_windows` makes them),
    read from a copy of the text with one byte per class (digit, other run character, the rest),
    so that `bytes.find` and `bytes.count` work in C where a regex would try every position.

    A card, SSN or IPv4 address is all digits and run characters, starts with a digit after a
    non-digit and holds at least 4 digits: it starts at such a digit of a run. Its pattern is
    tried only there (with the end of the run's window as `endpos`, as `finditer` over the
    window ran it, and after the end of the last match, as `finditer` goes on), and only in runs
    that hold the type's necessary parts: the same matches as `finditer` over each window."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.classes = text.encode("ascii").translate(_RUN_CLASSES)
        found = list(_RUN_BYTES.finditer(self.classes))
        self.starts: list[int] = list(map(re.Match.start, found))
        self.ends: list[int] = list(map(re.Match.end, found))
        self.windows = _merged(self.starts, self.ends, len(text))

    def scan(self, kinds: Sequence[str], kept: list[Match]) -> Iterator[list[Match]]:
        """Each numeric type's matches, in the order of `kinds` (`kept` updated between them)."""
        if not self.starts:
            return
        for kind in kinds:
            if kind == "iban":
                yield _fresh("iban", self.ibans(), kept)
            elif kind == "phone":
                yield _fresh("phone", self.phones(kept), kept)
            elif kind == "ip_address" and self.text.count(":") >= 2:  # IPv6 is not digits
                yield _numeric(self.text, self.windows, kind, kept)
            else:
                yield _fresh(kind, self.in_runs(kind, self.candidate_runs(kind), kept), kept)

    def candidate_runs(self, kind: str) -> list[int]:
        """The indexes of the runs that hold the type's necessary parts (its digits; an SSN's
        groups, an IPv4 address's dots). Indexes, not tuples: an export has tens of thousands of
        runs, and tuples that live through a type would make the garbage collector walk every
        object of the process (a full collection: 0.2 s with litellm loaded)."""
        starts, ends = self.starts, self.ends
        if kind not in _CORES:
            counts = map(self.classes.count, repeat(b"0"), starts, ends)  # all in C
            return list(compress(range(len(starts)), map(ge, counts, repeat(_MIN_DIGITS[kind][0]))))
        table, core = _CORES[kind]
        classes = self.classes if table is _RUN_CLASSES else self.text.encode("ascii").translate(table)
        out: list[int] = []
        for at in map(re.Match.start, core.finditer(classes)):
            run = bisect_right(starts, at) - 1  # cores lie in runs
            if not out or out[-1] != run:
                out.append(run)
        return out

    def in_runs(self, kind: str, runs: list[int], kept: list[Match]) -> Iterator[re.Match[str]]:
        """The matches of `kind` that start in `runs`, in order (see `_numeric`); `kept`: a run
        inside a kept match is not tried where every match in it would be dropped."""
        text, (need, span) = self.text, _MIN_DIGITS[kind]
        count, find = self.classes.count, self.classes.find
        match = _PATTERNS[kind].match
        windows = iter(self.windows)
        hi = -1
        i, size, resume, kept_ends = 0, len(kept), 0, list(map(_END, kept))
        confined = kind != "ip_address"  # an address's port can end after its run
        starts, ends = self.starts, self.ends
        for run in runs:
            start, end = starts[run], ends[run]
            while hi < end:  # the window of the run
                hi = next(windows)[1]
            i = bisect_right(kept_ends, start, i)  # the first kept that ends after `start`
            if confined and i < size and kept[i][1] <= start and end <= kept_ends[i]:
                continue  # every match in the run would be dropped, and ends in it
            at = start if start >= resume else find(b".0", resume - 1, end) + 1 or -1
            if end - start > _LONG_RUN:
                found = self.in_long_run(kind, at, end, hi) if at > -1 else []
            else:
                found = []
                while at > -1:
                    m = match(text, at, hi) if count(b"0", at, min(at + span, end)) >= need else None
                    if m is not None:
                        found.append(m)
                        at = m.end() - 1
                    at = find(b".0", at, end) + 1 or -1  # the next digit after a non-digit
            if found:
                resume = found[-1].end()
                yield from found

    def in_long_run(self, kind: str, at: int, end: int, hi: int) -> list[re.Match[str]]:
        """The matches that start in a long run from `at` on (where nearly every digit can be a
        candidate, the regex engine tries them in C): the run's end, plus the characters a match
        or its lookahead can read past it, bounds the search."""
        reach = 9 if kind == "ip_address" else 2  # ":65535" and a lookahead of two; a lookahead of two
        found = _PATTERNS[kind].finditer(self.text, at, min(end + reach, hi))
        return list(takewhile(lambda m: m.start() < end, found))

    def phones(self, kept: list[Match]) -> Iterator[re.Match[str]]:
        """A phone number starts after a character its lookbehind allows, with `+`, `(`, `00`
        or five digits apart at most by single separators: the pattern is tried only where the
        classes say so, in a window, from the end of the last match on (as `finditer` goes on).
        A phone number never crosses a character it is not made of (`_PHONE_STOPS`): where a
        candidate lies in a kept match with the whole stretch of such characters around it, every
        match that starts in the stretch would be dropped, and the search goes on after it."""
        text, windows = self.text, self.windows
        marks = b" " + text.encode("ascii").translate(_PHONE_CLASSES)  # text[i] is at i + 1
        stops = text.encode("ascii").translate(_PHONE_STOPS)
        find, rfind, length = stops.find, stops.rfind, len(text)
        search, match = _PHONE_START.search, _PATTERNS["phone"].match
        i, size, window, last = 0, len(kept), 0, len(windows) - 1
        kept_ends, window_ends = list(map(_END, kept)), [hi for _lo, hi in windows]
        found = search(marks)
        while found is not None:
            at = found.start()  # the start, in `text`
            i = bisect_right(kept_ends, at, i)  # the first kept that ends after `at`
            if i < size and kept[i][1] <= at:  # in a kept match: is the stretch around `at` in it too?
                _kind, start, end, _score = kept[i]
                after = find(b"_", at, end + 1)  # the stretch's end, if in the match
                if after == -1:
                    after = end if end == length else 0
                if after and (not start or rfind(b"_", start - 1, at) != -1):  # and its start
                    found = search(marks, after)
                    continue
            window = bisect_right(window_ends, at, window, last)  # the first ending after `at`, or the last
            lo, hi = windows[window]
            m = match(text, at, hi) if lo <= at < hi else None
            if m is None:
                found = search(marks, at + 1)
                continue
            found = search(marks, m.end())
            yield m

    def ibans(self) -> Iterator[re.Match[str]]:
        """IBANs start with two capital letters and two digits: the pattern is tried where
        those are, in a window, from the end of the last match on."""
        text, windows = self.text, self.windows
        find = text.encode("ascii").translate(_IBAN_CLASSES).find
        match = _PATTERNS["iban"].match
        resume, window, last = 0, 0, len(windows) - 1
        at = find(b"AA00")
        while at != -1:
            while window < last and windows[window][1] <= at:
                window += 1
            lo, hi = windows[window]
            m = match(text, at, hi) if lo <= at < hi and at >= resume else None
            if m is None:
                at = find(b"AA00", at + 1)
                continue
            resume = m.end()
            at = find(b"AA00", resume)
            yield m


# ASCII digits -> "0", every other byte -> " ": `find(b"0")` then jumps from digit to digit in C
_DIGIT_BYTES = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))


def _runs(text: str, digits: bytes | None) -> Iterator[re.Match[str]]:
    """`_RUN.finditer(text)`, resumed only where a digit is. The regex engine tries every
    position of the text; prose has few digits, so in ASCII text (`digits`: its digits as "0",
    the rest as " ") the stretch up to the next digit is skipped in C (the same matches: a run
    starts with a digit, and ASCII has no other digits)."""
    if digits is None:
        yield from _RUN.finditer(text)
        return
    search = _RUN.search
    at = digits.find(b"0")
    while at != -1:
        m = search(text, at)
        if m is None:
            return
        yield m
        at = digits.find(b"0", m.end())


def _merged(starts: list[int], ends: list[int], size: int) -> list[tuple[int, int]]:
    """`_windows` of the runs (`starts`, `ends`): two runs share a window where at most 24
    characters lie between them (16 of margin on the left, 8 on the right)."""
    if not starts:
        return []
    firsts = [0, *(k for k, gap in enumerate(map(sub, starts[1:], ends), 1) if gap > 24)]
    lasts = [k - 1 for k in firsts[1:]] + [len(starts) - 1]
    return [(max(starts[first] - 16, 0), min(ends[last] + 8, size))
            for first, last in zip(firsts, lasts, strict=True)]


def _windows(text: str, digits: bytes | None) -> list[tuple[int, int]]:
    """Merged windows around numeric runs: 16 characters of margin left (IBAN letters, a `+`),
    8 right (a port, a phone extension)."""
    out: list[tuple[int, int]] = []
    for m in _runs(text, digits):
        lo, hi = max(m.start() - 16, 0), min(m.end() + 8, len(text))
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _custom_patterns(patterns: dict[str, str]) -> dict[str, re.Pattern[str]]:
    """A policy's own patterns, compiled. One that matches the empty string (`\\d*`) would
    redact a zero-width match between every two characters: refused. (Zero-width matches of
    the others, such as `\\b`, are skipped by the scans.)"""
    compiled = {kind: re.compile(p) for kind, p in patterns.items()}
    for kind, pattern in compiled.items():
        if pattern.fullmatch("") is not None:
            raise ValueError(f"pattern {kind!r} ({pattern.pattern!r}) matches the empty string")
    return compiled


def _word_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    items = sorted({w for w in words if w}, key=len, reverse=True)
    if not items:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in items) + r")(?!\w)", re.I)


class WordsDetector:
    """Whole-word (case-insensitive) matches from a list: topics, competitors, internal names."""

    name = "words"

    def __init__(self, words: Sequence[str], kind: str = "word") -> None:
        pattern = _word_pattern(words)
        if pattern is None:
            raise ValueError("a words detector needs a non-empty `words` list")
        self.pattern = pattern
        self.kind = kind

    def scan(self, text: str) -> list[Match]:
        return [Match(self.kind, m.start(), m.end()) for m in self.pattern.finditer(text)]


class RegexDetector:
    """Custom regular expressions, each reported under its own kind."""

    name = "regex"

    def __init__(self, patterns: dict[str, str]) -> None:
        if not patterns:
            raise ValueError("a regex detector needs `patterns`")
        self.patterns = _custom_patterns(patterns)

    def scan(self, text: str) -> list[Match]:
        return [Match(kind, m.start(), m.end())
                for kind, p in self.patterns.items() for m in p.finditer(text) if m.end() > m.start()]
