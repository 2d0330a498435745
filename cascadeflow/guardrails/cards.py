"""Payment card numbers: every issuer range of the networks, with each network's lengths.

A Luhn-valid number is a card only when its prefix belongs to a network and its length is one
that network issues: a 15-digit IMEI starting 35 is no JCB card (JCB issues 16 to 19 digits
there). A 13-digit EAN can look like an old 13-digit Visa number: the detector drops numbers of
15 digits or fewer that follow a word like "EAN", "IMEI" or "serial".
"""

from __future__ import annotations

# (first digits, lengths issued under them)
_NETWORKS: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...] = (
    (("4",), (13, 16, 19)),  # Visa (Electron too; 13 digits in old ranges)
    (tuple(str(p) for p in range(51, 56)) + tuple(str(p) for p in range(2221, 2721)), (16,)),  # Mastercard
    (("34", "37"), (15,)),  # American Express
    (("300", "301", "302", "303", "304", "305", "309", "36", "38", "39"), (14, 16, 17, 18, 19)),  # Diners
    (("6011", "644", "645", "646", "647", "648", "649", "65"), (16, 17, 18, 19)),  # Discover
    (("35",), (16, 17, 18, 19)),  # JCB (3528-3589 issued; test generators use all of 35)
    (("1800", "2131"), (15,)),  # JCB, the older 15-digit range
    (("62", "81"), (16, 17, 18, 19)),  # UnionPay
    (("2200", "2201", "2202", "2203", "2204"), (16, 17, 18, 19)),  # Mir
    (("5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763", "6390", "0604", "56", "57",
      "58", "50", "639", "67"), (16, 17, 18, 19)),  # Maestro
    (("60", "6521", "6522", "508"), (16,)),  # RuPay
    (("9792",), (16,)),  # Troy
    (("506", "650"), (16, 18, 19)),  # Verve
)
# Maestro also issues 12 and 13 digits: such a number counts only where the text says "card"...
SHORT_MAESTRO = ("5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763", "6390", "0604",
                 "56", "57", "58", "50", "639", "67")
# ...except 12 digits under one of Maestro's own four-digit ranges, which with the Luhn check only
# one random 12-digit number in 100,000 matches; 13 digits stay context-only (EAN-13 codes of the
# UK start 50), and so do 6390 (Philippine mobiles +63 905-909 written without "+" are 12 digits)
# and the two-digit test-generator ranges (+57 Colombia, +58 Venezuela, +63 Philippines).
MAESTRO_IIN = ("5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763")
_BY_PREFIX: dict[str, tuple[int, ...]] = {}
for _prefixes, _lengths in _NETWORKS:
    for _p in _prefixes:
        _BY_PREFIX[_p] = tuple(sorted(set(_BY_PREFIX.get(_p, ())) | set(_lengths)))
_LONGEST = max(map(len, _BY_PREFIX))


# an ASCII digit to its Luhn value doubled (the digits of the product added up)
_DOUBLED = bytes.maketrans(b"0123456789", bytes(2 * d - 9 if d > 4 else 2 * d for d in range(10)))


def luhn_ok(digits: str) -> bool:
    """The Luhn check, summed over bytes in C: every other digit from the right is doubled, by
    table (anything but ASCII digits fails)."""
    if not (digits.isascii() and digits.isdigit()):
        return False
    raw = digits.encode("ascii")
    single = raw[::-2]
    return (sum(single) - 48 * len(single) + sum(raw[-2::-2].translate(_DOUBLED))) % 10 == 0


def issued(digits: str, card_context: bool = False) -> bool:
    """A prefix some network issues, at a length it issues there (12 and 13 digits: a Maestro
    prefix, and only with `card_context` unless 12 digits under a range of `MAESTRO_IIN`)."""
    if len(digits) == 12 or (len(digits) == 13 and digits[0] != "4"):
        if card_context:
            return digits.startswith(SHORT_MAESTRO)
        return len(digits) == 12 and digits.startswith(MAESTRO_IIN)
    for size in range(min(_LONGEST, len(digits)), 0, -1):
        lengths = _BY_PREFIX.get(digits[:size])
        if lengths is not None and len(digits) in lengths:
            return True
    return False


def card_ok(digits: str, card_context: bool = False) -> bool:
    return 12 <= len(digits) <= 19 and issued(digits, card_context) and luhn_ok(digits)
