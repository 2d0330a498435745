"""Phone numbers by numbering plan: international (+CC / 00CC), national with a trunk 0 (most of
Europe and the UK), Italian mobiles (3xx) and North American (NANP) numbers.

A number without an international prefix must be grouped the way people write phone numbers
(or have a word such as "phone" or "Tel." just before it): a bare run of digits is an order id
until the text says otherwise. Dates, amounts and version strings never pass.
"""

from __future__ import annotations

import re
from functools import cache
from types import ModuleType

# a phone-shaped candidate: optional +CC / 00CC, an optional (0) or (area), digits with separators,
# an optional extension; the specific checks below decide
# A comma is a thousands separator after a digit ("1,234,567"), a field separator otherwise
# ("Jane Roe,+1 415 555 0100,10115 Berlin"): the number may follow one that follows no digit,
# and be followed by one unless 1 to 3 digits come next (a group or decimals, "0100,50").
PATTERN = re.compile(
    r"(?<![\w+./-])(?<!\d,)(?:(?:\+|00)\d{1,3}[\s.-]?)?(?:\(0\)\s?)?(?:\(\d{1,5}\)[\s.-]?)?\d(?:[\s./-]?\d){4,14}"
    r"(?:\s?(?:x|ext\.?|ext)\s?\d{1,5})?(?![\w-]|[./]\d|,\d{1,3}(?!\d))")
# national significant number lengths (without the trunk 0) by country calling code
_NSN: dict[str, tuple[int, int]] = {
    "1": (10, 10), "7": (10, 10), "20": (8, 10), "27": (9, 9), "30": (10, 10), "31": (9, 9), "32": (8, 9),
    "33": (9, 9), "34": (9, 9), "36": (8, 9), "39": (6, 11), "40": (9, 9), "41": (9, 9), "43": (4, 13),
    "44": (9, 10), "45": (8, 8), "46": (7, 10), "47": (8, 8), "48": (9, 9), "49": (6, 13), "51": (8, 9),
    "52": (10, 10), "53": (8, 8), "54": (10, 10), "55": (10, 11), "56": (9, 9), "57": (10, 10),
    "58": (10, 10), "60": (8, 10), "61": (9, 9), "62": (8, 12), "63": (8, 10), "64": (8, 10), "65": (8, 8),
    "66": (8, 9), "81": (9, 10), "82": (8, 10), "84": (9, 10), "86": (10, 11), "90": (10, 10), "91": (10, 10),
    "92": (9, 10), "351": (9, 9), "352": (6, 11), "353": (7, 9), "354": (7, 9), "356": (8, 8), "357": (8, 8),
    "358": (5, 12), "359": (8, 9), "370": (8, 8), "371": (8, 8), "372": (7, 8), "380": (9, 9), "385": (8, 9),
    "386": (8, 8), "420": (9, 9), "421": (9, 9), "971": (8, 9), "972": (8, 9), "966": (9, 9),
}
CONTEXT = ("phone", "tel", "tel.", "telephone", "call", "mobile", "cell", "fax", "sms", "whatsapp", "contact",
           "ring", "telefon", "telefono", "teléfono", "téléphone", "portable", "handy", "cellulare", "móvil",
           "numero", "número", "numéro", "nummer", "rufnummer", "reach", "joindre", "appeler", "chiamare",
           "anrufen", "erreichen", "llamar", "bellen", "bereikbaar", "kontakt", "contatto", "contacto",
           "contato", "recapito", "tél", "tél.", "mob", "mob.")
# words that make a bare run of digits an identifier, not a phone number
NOT_PHONE = re.compile(r"(?i)invoice|order|\bref|ticket|account|\bid\b|\bno\.|\bnr\.?|#|transaction|tracking"
                       r"|rechnung|commande|facture|pedido|ordine|fattura|bestel")
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")
_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}")  # never how a phone number is written
_IT_MOBILE = re.compile(r"3\d{2}[\s.-]?\d{3}[\s.-]?\d{4}|3\d{2}[\s.-]\d{7}")
_EXTENSION = re.compile(r"\s?(?:x|ext\.?|ext)\s?\d{1,5}$")
_GROUPS = re.compile(r"[\s./-]")


def _digits(text: str) -> str:
    return "".join(filter(str.isdigit, text))


def _international(body: str) -> bool:
    """`body`: the digits after + or 00, any (0) trunk mark removed. A country code the table
    has decides by its lengths; another one is asked of libphonenumber where the `phonenumbers`
    extra is installed (it costs tens of microseconds a number, too much for every number of a
    contact export), else any length E.164 allows passes."""
    for size in (3, 2, 1):
        plan = _NSN.get(body[:size])
        if plan is not None:
            return plan[0] <= len(body) - size <= plan[1]
    library = libphonenumber()
    if library is not None:
        try:
            return bool(library.is_valid_number(library.parse("+" + body, None)))
        except library.NumberParseException:
            return False
    return 8 <= len(body) <= 15  # another country: E.164 allows up to 15 digits


@cache
def libphonenumber() -> ModuleType | None:
    """The `phonenumbers` package when installed (the optional extra), else None."""
    try:
        import phonenumbers
    except ImportError:
        return None
    return phonenumbers


def _nanp(digits: str) -> bool:
    return len(digits) == 10 and digits[0] in "23456789" and digits[3] in "23456789"


def phone_ok(candidate: str, context: bool, id_context: bool = False) -> bool:
    """`candidate` (a PATTERN match) is a phone number; `context`: a phone word stands before it;
    `id_context`: a word such as "invoice" or "order" does (a bare number is then that id)."""
    number = _EXTENSION.sub("", candidate) if "x" in candidate else candidate  # (an extension has one)
    if number.startswith("+"):  # (a date or an SSN starts with a digit)
        return _international(_digits(number.replace("(0)", "")))
    if _DATE.fullmatch(number) or _DATE.match(number) or _SSN_SHAPE.fullmatch(number):
        return False
    if number.startswith("00"):
        return _international(_digits(number.replace("(0)", ""))[2:])
    grouped = bool(_GROUPS.search(number.strip())) or "(" in number
    digits = _digits(number)
    if "." in number and number.count(".") >= 3 and not context:
        return False  # 4-part dotted numbers are versions and addresses, not phones
    if digits.startswith("0"):  # a national number with its trunk 0 (order ids rarely start with 0)
        if grouped or context:
            return 7 <= len(digits) <= 12
        return 10 <= len(digits) <= 12 and not id_context
    if not (grouped or context):
        # bare: a valid North American number, or an Italian mobile (3xx), unless it is named an id
        return (_nanp(digits) or digits[0] == "3") and len(number) == 10 and not id_context
    if digits.startswith("1") and len(digits) == 11:
        return _nanp(digits[1:])
    if _nanp(digits) and (context or re.fullmatch(r"\(?\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}", number)):
        return True
    if context and grouped and 8 <= len(digits) <= 9:  # plans without a trunk 0 (ES, PT, PL, DK...)
        return True
    if digits.startswith("3") and len(digits) in (9, 10):  # Italian mobiles: 3xx xxx xxxx
        return context or (len(digits) == 10 and bool(_IT_MOBILE.fullmatch(number)))
    return False
