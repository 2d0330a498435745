"""PII detection on values cascadeflow's authors did not write: Faker in 7 locales, checked with
phonenumbers (phones) so that only valid values count, placed in sentences of several shapes,
plus look-alikes that must not be found (IMEIs, EANs, version strings, order ids, dates).

    pip install faker phonenumbers   # into a throw-away venv with cascadeflow importable
    python -m benchmarks.pii_independent [--misses N]

Prints precision and recall per type.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator

import phonenumbers
from cascadeflow.guardrails import PIIDetector
from faker import Faker

LOCALES = {"en_US": "US", "en_GB": "GB", "de_DE": "DE", "fr_FR": "FR", "it_IT": "IT", "es_ES": "ES",
           "nl_NL": "NL"}
SENTENCES = ["Please call me at {v}.", "My {k} is {v}, thanks.", "{v}", "Customer: Jane Roe, {v}, Berlin",
             "Kontakt: {v} (abends)", "Pour me joindre : {v}", "Contatto {v} entro venerdì.",
             "Details on file -> {v}; please verify.", "1042,Jane Roe,{v},10115 Berlin"]
Row = tuple[str, str, str | None]  # (text, value, kind or None for a look-alike)


def luhn_digit(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        v = int(c) * (2 if i % 2 == 0 else 1)
        total += v - 9 if v > 9 else v
    return str((10 - total % 10) % 10)


def positives(rng: random.Random) -> Iterator[Row]:
    for locale, region in LOCALES.items():
        fake = Faker(locale)
        fake.seed_instance(rng.randint(0, 1 << 30))
        for _ in range(60):
            number = fake.phone_number()
            try:
                valid = phonenumbers.is_valid_number(phonenumbers.parse(number, region))
            except phonenumbers.NumberParseException:
                valid = False
            if valid:
                yield rng.choice(SENTENCES).format(k="phone", v=number), number, "phone"
        for _ in range(20):
            yield rng.choice(SENTENCES).format(k="email", v=(v := fake.email())), v, "email"
            yield rng.choice(SENTENCES).format(k="IBAN", v=(v := fake.iban())), v, "iban"
            yield rng.choice(SENTENCES).format(k="IP", v=(v := fake.ipv4_public())), v, "ip_address"
    fake = Faker("en_US")
    fake.seed_instance(7)
    cards = ("visa16", "visa13", "visa19", "mastercard", "amex", "discover", "diners", "jcb15", "jcb16",
             "maestro")
    for card_type in cards:
        for _ in range(20):
            number = fake.credit_card_number(card_type)
            yield rng.choice(SENTENCES).format(k="card", v=number), number, "credit_card"
    for _ in range(60):
        ssn = fake.ssn()
        yield rng.choice(SENTENCES).format(k="SSN", v=ssn), ssn, "ssn"
        bare = ssn.replace("-", "")
        yield f"SSN: {bare}", bare, "ssn"
        yield f"Server at {(ip := fake.ipv4_public())}:{rng.randint(1, 65535)} is down", \
            ip, "ip_address"


def lookalikes(rng: random.Random) -> Iterator[Row]:
    for _ in range(60):
        body = "35" + "".join(rng.choice("0123456789") for _ in range(12))
        imei = body + luhn_digit(body)
        yield f"IMEI {imei} is blocked", imei, None
        ean = "40" + "".join(rng.choice("0123456789") for _ in range(10))
        ean += luhn_digit(ean)
        yield f"EAN {ean} out of stock", ean, None
        version = ".".join(str(rng.randint(0, 30)) for _ in range(4))
        yield f"Upgrade to version {version} fixes it", version, None
        order = str(rng.randint(10**8, 10**9 - 1))
        yield f"Order {order} shipped on 2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}", order, None
        invoice = str(rng.randint(2 * 10**9, 10**10 - 1))
        yield f"Invoice no. {invoice} is attached", invoice, None
        stamp = str(rng.randint(1_600_000_000, 1_900_000_000))
        yield f'{{"ts": {stamp}, "event": "login"}}', stamp, None
        amount = f"{rng.randint(1, 999)} {rng.randint(100, 999)} {rng.randint(100, 999)}"
        yield f"Le total est de {amount} EUR", amount, None
        when = f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.20{rng.randint(10, 30)}"
        yield f"Lieferung am {when} um 14:30", when, None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--misses", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(12)
    detector = PIIDetector()
    tp: dict[str, int] = {}
    fn: dict[str, list[str]] = {}
    fp: dict[str, list[str]] = {}
    for text, value, kind in [*positives(rng), *lookalikes(rng)]:
        found = {(m.kind, text[m.start:m.end]) for m in detector.scan(text)}
        for got_kind, got in found:
            if kind is None or got_kind != kind or (value not in got and got not in value):
                fp.setdefault(got_kind, []).append(text)
        if kind is not None:
            if any(k == kind and (value in got or got in value) for k, got in found):
                tp[kind] = tp.get(kind, 0) + 1
            else:
                fn.setdefault(kind, []).append(text)
    for kind in sorted(set(tp) | set(fn) | set(fp)):
        t, n, p = tp.get(kind, 0), len(fn.get(kind, [])), len(fp.get(kind, []))
        print(f"{kind:12s} precision {t / max(t + p, 1):.3f} recall {t / max(t + n, 1):.3f}"
              f"  (tp {t}, fn {n}, fp {p})")
        for text in fn.get(kind, [])[:args.misses]:
            print("   miss", repr(text))
        for text in fp.get(kind, [])[:args.misses]:
            print("   false", repr(text))


if __name__ == "__main__":
    main()
