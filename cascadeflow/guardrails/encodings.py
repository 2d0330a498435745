"""Text hidden in an encoding: base64, base32, hex, ascii85, base85, quoted-printable, ROT13 and
leetspeak, found and decoded.

An attacker encodes an instruction so that word filters miss it and asks the model to decode it.
A payload counts only when it decodes to readable text (strict UTF-8, mostly letters and spaces,
several words): a SHA-256, a git commit id, a UUID or a compact IBAN decodes to random bytes and
is never a payload, so hashes are not flagged. Ascii85 and base85 use most printable characters,
so any long word-free run (a URL, a path) is a candidate: they are tried only in a text that
talks about encodings (or is one run without spaces), and only on runs of 20 characters or more.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_B64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
# base32 and hex start with their first character and look behind it after (not before): the
# same matches as `(?<!X)X{16,}`, but a position whose character is not in the class fails at
# once, where a leading lookbehind ran first at every position (about half the time of a 4 KB
# text with a long word, where these run)
_B32 = re.compile(r"[A-Z2-7](?<![A-Z2-7][A-Z2-7])[A-Z2-7]{15,}={0,6}(?![A-Za-z0-9=])")
_HEX = re.compile(r"[0-9a-fA-F](?<![0-9a-fA-F][0-9a-fA-F])[0-9a-fA-F][ :]?"
                  r"(?:[0-9a-fA-F]{2}[ :]?){11,}(?![0-9a-fA-F])")
_ROT13 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                       "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm")
_LEET = str.maketrans("013457@$!|", "oieastasil")
_LEET_WORD = re.compile(r"\b(?=[a-z0-9@$!|]*[a-z])(?=[a-z@$!|]*[0-9@$|])[a-z0-9@$!|]{2,14}\b")
# Common English words: text that has few of them while its ROT13 has many is ROT13.
_COMMON_WORDS = """the be to of and a in that have i it for not on with he as you do at this but his by
from they we say her she or an will my one all would there their what so up out if about who get which go
me when make can like time no just him know take people into year your good some could them see other than
then now look only come its over think also back after use two how our work first well way even new want
because any these give day most us is are was were been has had did said print ignore instructions previous
say tell reveal system prompt secret password please following"""
_COMMON = frozenset(_COMMON_WORDS.split())
HINTS = frozenset(("decode", "decoded", "encoded", "encoding", "base64", "base32", "base16", "hex", "rot13",
                   "rot-13", "cipher", "caesar", "leetspeak", "leet", "b64", "decrypt", "ascii85", "base85",
                   "a85", "b85", "quoted-printable"))
_RUN = re.compile(r"\S{20,}")  # a candidate ascii85 / base85 payload: a long run without spaces
_QP_ESCAPE = re.compile(r"=[0-9A-F]{2}")
_TOKEN = re.compile(r"\S+")  # runs without spaces: one holding escapes may be quoted-printable


@dataclass(frozen=True, slots=True)
class Payload:
    start: int
    end: int
    text: str  # the decoded text
    kind: str  # base64 | base32 | hex | ascii85 | base85 | quoted-printable | rot13 | leetspeak


def readable(text: str) -> bool:
    """Decoded bytes that read as text: mostly letters and spaces, at least three words."""
    if len(text) < 8 or not all(c.isprintable() or c in "\n\t" for c in text):
        return False
    letters = sum(c.isalpha() or c == " " for c in text)
    return letters >= 0.8 * len(text) and len(text.split()) >= 3


def _strict(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _decode_b64(token: str) -> str | None:
    body = token.rstrip("=")
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_" if "-" in body or "_" in body
                               else None, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _strict(raw)


def _decode_b32(token: str) -> str | None:
    body = token.rstrip("=")
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        return None
    return _strict(raw)


def _decode_hex(token: str) -> str | None:
    try:
        raw = bytes.fromhex(token.replace(" ", "").replace(":", ""))
    except ValueError:
        return None
    return _strict(raw)


def _decode_a85(token: str) -> str | None:
    adobe = token.startswith("<~") and token.endswith("~>")
    try:
        raw = base64.a85decode(token, adobe=adobe)
    except ValueError:
        return None
    return _strict(raw)


def _decode_b85(token: str) -> str | None:
    try:
        raw = base64.b85decode(token)
    except ValueError:
        return None
    return _strict(raw)


def _decode_qp(token: str) -> str | None:
    try:
        raw = binascii.a2b_qp(token.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None
    return _strict(raw)


def _dense(text: str, hinted_text: bool) -> Iterator[Payload]:
    """Ascii85, base85 and quoted-printable payloads (see the module's docstring)."""
    if hinted_text or not (" " in text or "\n" in text):  # one word-free run: maybe all payload
        for m in _RUN.finditer(text):
            token = m.group()
            for decode, kind in ((_decode_a85, "ascii85"), (_decode_b85, "base85")):
                decoded = decode(token)
                if decoded is not None and readable(decoded):
                    yield Payload(m.start(), m.end(), decoded, kind)
                    break
    if "=" in text and len(_QP_ESCAPE.findall(text)) >= 3:
        for m in _TOKEN.finditer(text):  # linear: a pattern around the escape backtracked
            token = m.group()           # over every run without spaces (seconds on 40 KB)
            if token.count("=") >= 3 and _QP_ESCAPE.search(token):
                decoded = _decode_qp(token)
                if decoded is not None and readable(decoded):
                    yield Payload(m.start(), m.end(), decoded, "quoted-printable")


def common_ratio(words: list[str]) -> float:
    """Share of the words that are among the most common English words."""
    return sum(map(_COMMON.__contains__, words)) / len(words) if words else 0.0


def _has_language(head: list[str]) -> bool:
    """`common_ratio(head) >= 0.1`, most often settled by the first 64 or 100 words alone (a
    count that reaches a tenth of `head` there can only grow)."""
    size, common = len(head), _COMMON.__contains__
    count = sum(map(common, head[:64]))
    if count / size >= 0.1:
        return True
    count += sum(map(common, head[64:100]))
    return count / size >= 0.1 or common_ratio(head) >= 0.1


def payloads(text: str, words: list[str], distinct: set[str] | None = None) -> Iterator[Payload]:
    """Readable texts hidden in `text` (whose lower-cased words are `words`, and `distinct` the
    set of them when the caller has it: fewer to measure)."""
    if max(map(len, words if distinct is None else distinct), default=0) >= 16:
        for pattern, decode, kind in ((_B64, _decode_b64, "base64"), (_B32, _decode_b32, "base32"),
                                      (_HEX, _decode_hex, "hex")):
            for m in pattern.finditer(text):
                decoded = decode(m.group())
                if decoded is not None and readable(decoded):
                    yield Payload(m.start(), m.end(), decoded, kind)
    yield from _dense(text, hinted(words if distinct is None else distinct))
    # ROT13 and leetspeak read as no language at all: few common words (the first 200 words tell)
    head = words[:200]
    if len(head) < 4 or _has_language(head):
        return
    turned = text.translate(_ROT13)
    if common_ratio(turned[:4000].lower().split()[:200]) >= 0.25:
        yield Payload(0, len(text), turned, "rot13")
    elif text.isascii():
        low = text.lower()
        if len(_LEET_WORD.findall(low)) >= max(3, 0.2 * len(words)):
            yield Payload(0, len(text), low.translate(_LEET), "leetspeak")


def hinted(words: Iterable[str]) -> bool:
    """The text talks about encodings ("decode this base64")."""
    return not HINTS.isdisjoint(words)
