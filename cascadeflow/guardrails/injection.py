"""Prompt-injection detection: a scored combination of signals, not a single regex.

Signals (each with a weight): known attack phrasings, role-override and delimiter tricks, the
shipped word-pair classifier (`classifier.py`), readable text hidden in an encoding
(`encodings.py`, decoded and scored again), invisible characters, and words that mix scripts
(homoglyphs). Text is normalised first (confusable letters folded, invisible characters dropped)
so spelling tricks do not hide a phrase. The score is a noisy-OR of the signals found:
1 - prod(1 - weight), in 0..1, compared with each rule's threshold.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from re import _constants as _c  # type: ignore[attr-defined]  # (3.11 to 3.14 have both)
from re import _parser  # type: ignore[attr-defined]
from typing import Any

from cascadeflow.guardrails import classifier, encodings
from cascadeflow.guardrails.detectors import Match

_INSTR = r"(?:instructions?|prompts?|rules|directions|guidelines|context|messages?|commands?)"
_PRIOR = r"(?:previous|prior|above|earlier|preceding|original|initial|system|all|any|your|the|those|these)"

PHRASES: tuple[tuple[str, float], ...] = (
    (rf"\b(?:ignore|disregard|forget|skip|override|bypass|neglect)\b(?!\s+(?:my|our)\b)(?:\s+\w+){{0,3}}?\s+{_PRIOR}"
     rf"(?:\s+\w+){{0,2}}?\s+{_INSTR}", 0.9),
    (r"\b(?:forget|ignore|disregard)\s+(?:everything|all|anything)\s+(?:that\s+)?"
     r"(?:(?:you\s+(?:were|have been|'ve been)\s+)?(?:told|taught|instructed|given|said)"
     r"|(?:written\s+)?(?:above|before|earlier|previously)|(?:that\s+)?came before)", 0.85),
    (r"\b(?:previous|prior|above|earlier|original|old|existing)\s+(?:rules|instructions|guidelines|policies|"
     r"policy|prompt)\s+(?:no longer apply|are (?:now )?(?:void|cancelled|canceled|obsolete|revoked)|"
     r"(?:do not|don't) apply)", 0.85),
    (r"\byou are no longer\s+(?:a|an|the|my|our)\b", 0.55),
    (r"\b(?:have|with|without)\s+no\s+(?:restrictions|limits|rules|filters|guardrails)\b|"
     r"\bwithout (?:any )?(?:restrictions|limits|filters|guardrails)\b", 0.5),
    (r"\b(?:attention|note (?:to|for)|message (?:to|for)|dear|hey)\s+(?:the\s+)?"
     r"(?:ai|assistant|model|bot|llm|language model|agent)\b", 0.45),
    (r"\bapprove\s+(?:every|all|any)\s+(?:refunds?|chargebacks?|requests?)\b|\brefunds? (?:are|is) "
     r"(?:pre-?approved|automatically approved)\b", 0.5),
    (r"\byour only (?:task|job|goal|instruction) (?:now )?is\b", 0.55),
    (r"\b(?:you are|you're|act as|pretend (?:to be|you are)|roleplay as|behave as)\s+(?:now\s+)?(?:an?\s+)?"
     r"(?:DAN|unrestricted|jailbroken|evil|uncensored|unfiltered|"
     r"(?:\w+\s+){0,2}without (?:any )?restrictions)", 0.85),
    (r"\b(?:reveal|print|repeat|output|leak|dump|disclose|show|display)\b(?:\s+\w+){0,2}?\s+(?:your|the)\s+"
     r"(?:hidden|secret|system|initial|original|internal)\s+(?:prompt|instructions|rules|message)", 0.85),
    (r"\b(?:reveal|print|show|repeat|leak|tell me|output)\s+(?:me\s+)?your\s+(?:system\s+)?"
     r"(?:prompt|instructions)", 0.8),
    (r"\bnew\s+(?:instructions?|rules|task|system prompt)\s*[:\-]", 0.7),
    (r"\bdo anything now\b|\bjailbreak(?:ing)?\b|\bDAN mode\b", 0.75),
    (r"\b(?:enable|enter|activate|switch (?:in)?to|you are (?:now )?in|now in)\s+developer mode\b", 0.8),
    (r"\bfrom now on,?\s+(?:you|always|never|only|respond|answer|ignore)", 0.6),
    (r"\b(?:only|always)\s+(?:answer|respond|reply)\s+(?:in|with)\b", 0.5),
    (r"\b(?:do not|don't|never|must not|mustn't|should not|shouldn't)\s+(?:follow|obey|listen to)\s+"
     r"(?:your|the|its|any|their)\s+(?:\w+'s\s+)?(?:previous\s+)?(?:instructions|rules|guidelines|"
     r"developers?|system prompt|policies)", 0.85),
    (r"\binstead,?\s+(?:you\s+(?:must|should|will)|output|respond with|say|write|send)\b", 0.4),
    (r"\b(?:send|forward|email|post|exfiltrate|upload)\b(?:\s+\w+){0,5}?\s+(?:to|at)\s+"
     r"(?:https?://|\S+@\S+)", 0.45),
    (r"\b(?:your|the) (?:real|true|actual) (?:instructions|task|purpose) (?:is|are)\b", 0.7),
    (r"\bsystem override\b|\badmin override\b|\bmaintenance mode\b", 0.65),
    (r"\b(?:issue|grant|approve|process)\s+(?:a\s+|the\s+)?(?:full\s+)?refunds?\b(?:\s+\w+){0,6}?\s+"
     r"(?:without|no)\s+(?:verification|approval|checks?)", 0.6),
    (r"\b(?:reply|respond|answer)\s+only\s+with\s+the\s+word\b", 0.6),
)
DELIMITERS: tuple[tuple[str, float], ...] = (
    (r"<\|(?:im_start|im_end|system|endoftext|start_header_id)\|>", 0.8),
    (r"\[/?(?:INST|SYS)\]|<<\s*/?SYS\s*>>|</?s>", 0.6),
    (r"(?i)[\[<]\s*/?\s*(?:system|assistant|developer|admin)\s*[\]>]", 0.7),
    # a heading that opens a system turn (`### System:`), not one about a system (`## System requirements`)
    (r"(?im)#{2,}\s*(?:system|assistant|developer)(?:\s+(?:prompt|message|instructions?))?\s*(?::|$)", 0.75),
    (r"(?im)(?:^|[.!?]\s+)(?:={3,}|-{3,})?\s*(?:SYSTEM|system prompt|developer message)\s*[:>]", 0.6),
    (r"(?i)\b(?:BEGIN|END)\s+(?:SYSTEM|ADMIN|DEVELOPER)\s+(?:PROMPT|MESSAGE|INSTRUCTIONS)\b", 0.7),
    (r"(?i)```\s*(?:system|instructions)\b", 0.5),
)
# Each pattern runs only when its trigger words are in the text: every group must have one of its
# words present. Ordinary tickets rarely have them all, so most text is never run through most
# patterns. Words are looked up in the set of the text's words (one pass); phrases and symbols
# are searched as substrings, phrases only once their first word is known to be present.
TriggerGroups = tuple[tuple[str, ...], ...]
_INSTR_WORDS = ("instruction", "instructions", "prompt", "prompts", "rule", "rules", "directions",
                "guidelines", "context", "message", "messages", "command", "commands")
_IGNORE = ("ignore", "ignores", "ignored", "ignoring", "disregard", "forget", "skip", "override",
           "overriding", "bypass", "neglect")
_PHRASE_TRIGGERS: tuple[TriggerGroups, ...] = (
    (_IGNORE, _INSTR_WORDS),
    (("forget", "ignore", "disregard"), ("everything", "all", "anything")),
    (("previous", "prior", "above", "earlier", "original", "old", "existing"),
     ("rules", "instructions", "guidelines", "policies", "policy", "prompt"),
     ("longer", "void", "cancelled", "canceled", "obsolete", "revoked", "apply")),
    (("no longer",),),
    (("no", "without"), ("restrictions", "limits", "rules", "filters", "guardrails")),
    (("ai", "assistant", "model", "bot", "llm", "agent"), ("attention", "note", "message", "dear", "hey")),
    (("approve", "approved", "preapproved", "pre-approved"),
     ("refund", "refunds", "chargeback", "chargebacks", "requests", "request")),
    (("your only",),),
    (("you are", "you're", "act as", "pretend", "roleplay", "behave as"),),
    (("reveal", "print", "repeat", "output", "leak", "dump", "disclose", "show", "display"),
     ("hidden", "secret", "system", "initial", "original", "internal"), _INSTR_WORDS),
    (("your prompt", "your system", "your instructions", "your instruction"),),
    (("new instructions", "new instruction", "new rules", "new task", "new system"),),
    (("anything now", "jailbreak", "jailbreaking", "dan mode"),),
    (("developer mode",),),
    (("from now on",),),
    (("only", "always"), ("answer", "respond", "reply")),
    (("not", "don't", "never", "mustn't", "shouldn't"), ("follow", "obey", "listen")),
    (("instead",),),
    (("send", "forward", "email", "post", "exfiltrate", "upload"), ("http", "@")),
    (("real", "true", "actual"), ("instructions", "task", "purpose")),
    (("override", "maintenance mode"),),
    (("refund", "refunds"), ("without", "no"), ("verification", "approval", "checks", "check")),
    (("only with",),),
)
_DELIMITER_TRIGGERS: tuple[TriggerGroups, ...] = (
    (("<|",),),
    (("[inst]", "[/inst]", "[sys]", "[/sys]", "<<", "</s>", "<s>"),),
    (("[system", "<system", "</system", "[assistant", "<assistant", "[developer", "<developer", "[admin",
      "<admin", "[ system", "< system"),),
    (("##",),),
    (("system", "developer message"), (":", ">")),
    (("begin system", "end system", "begin admin", "end admin", "begin developer", "end developer"),),
    (("```",),),
)
# punctuation becomes spaces, except the base64 alphabet's + / = (so an encoded payload stays one
# token); the classifier splits text the same way, so one split serves both
_PUNCT = classifier.SEPARATORS


class Triggers:
    """Which patterns' trigger groups a text satisfies, as one bitmask.

    Every trigger group of every pattern gets a bit; a word or phrase sets the bits of the
    groups it belongs to. A text's words come from one pass (`split`), so plain words cost one
    set intersection; a phrase is searched for only when its first word is among the text's
    words; symbols (`<|`, `##`) are searched for always. A pattern runs when all its groups'
    bits are set: most text never runs most patterns.
    """

    def __init__(self, groups_per_pattern: Sequence[Sequence[Sequence[str]]]) -> None:
        self.word_bits: dict[str, int] = {}
        self.phrases: dict[str, dict[str, int]] = {}  # first word -> {phrase: bits}
        self.symbols: dict[str, int] = {}
        self.needs: list[int] = []
        bit = 0
        for groups in groups_per_pattern:
            need = 0
            for group in groups:
                flag = 1 << bit
                bit += 1
                need |= flag
                for trigger in group:
                    tokens = trigger.translate(_PUNCT).split()
                    if trigger.isalpha():
                        self.word_bits[trigger] = self.word_bits.get(trigger, 0) | flag
                    elif tokens:
                        by_phrase = self.phrases.setdefault(tokens[0], {})
                        by_phrase[trigger] = by_phrase.get(trigger, 0) | flag
                    else:
                        self.symbols[trigger] = self.symbols.get(trigger, 0) | flag
            self.needs.append(need)
        self.words = frozenset(self.word_bits)
        self.firsts = frozenset(self.phrases)
        # symbols by their first character: one search for a character most text lacks (`<`,
        # `[`, `#`) stands for all the symbols that start with it
        self.symbols_by_char: dict[str, dict[str, int]] = {}
        for symbol, flag in self.symbols.items():
            self.symbols_by_char.setdefault(symbol[0], {})[symbol] = flag
        # each pattern is listed under the bit of its first group: a pattern can only be armed
        # when that bit is set, so only the set bits' patterns are looked at
        self.by_bit: dict[int, list[int]] = {}
        for index, need in enumerate(self.needs):
            self.by_bit.setdefault(need & -need, []).append(index)

    def armed(self, mask: int) -> list[int]:
        """Indices of the patterns all of whose groups are in `mask`, in pattern order."""
        out: list[int] = []
        rest = mask
        while rest:
            bit = rest & -rest
            rest ^= bit
            for index in self.by_bit.get(bit, ()):
                need = self.needs[index]
                if mask & need == need:
                    out.append(index)
        out.sort()
        return out

    def mask(self, low: str, words: set[str]) -> int:
        """The bits of every trigger group `low` (lower-cased text, split into `words`) meets."""
        mask = 0
        word_bits = self.word_bits
        for word in self.words.intersection(words):
            mask |= word_bits[word]
        for first in self.firsts.intersection(words):
            for phrase, flag in self.phrases[first].items():
                if phrase in low:
                    mask |= flag
        for char, symbols in self.symbols_by_char.items():
            if char in low:
                for symbol, flag in symbols.items():
                    if symbol in low:
                        mask |= flag
        return mask


_TRIGGERS = Triggers([*_PHRASE_TRIGGERS, *_DELIMITER_TRIGGERS])
_COMPILED = [(re.compile(p, re.I), w) for p, w in PHRASES] + [(re.compile(p), w) for p, w in DELIMITERS]


def _prefixes(items: Any) -> tuple[str, ...] | None:
    """Literal strings one of which starts every match of the parsed pattern `items` (past its
    zero-width assertions), or None where that cannot be said (a class, an optional start)."""
    for index in range(len(items)):
        op, av = items[index]
        if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
            continue  # zero-width: the match starts at what follows
        if op is _c.LITERAL:
            text = []
            for next_op, next_av in items[index:]:
                if next_op is not _c.LITERAL:
                    break
                text.append(chr(next_av))
            return ("".join(text),)
        if op is _c.SUBPATTERN and not av[1] and not av[2]:  # a group without flags of its own
            return _prefixes(av[3])
        if op is _c.BRANCH:
            found: list[str] = []
            for branch in av[1]:
                starts = _prefixes(branch)
                if starts is None:
                    return None
                found.extend(starts)
            return tuple(found)
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT) and av[0] >= 1:
            return _prefixes(av[2])
        return None
    return None


def _starts(pattern: re.Pattern[str]) -> tuple[tuple[str, ...] | None, bool]:
    """`pattern`'s literal starts (lower-cased where it ignores case, which is then `True`),
    None where it has none to search for; ASCII starts only (ignoring case, `s` also matches a
    long s and `k` a Kelvin sign: such text is searched whole)."""
    folded = bool(pattern.flags & re.IGNORECASE)
    try:  # `re`'s own parser is private: a Python that changes it gets the plain search
        found = _prefixes(_parser.parse(pattern.pattern, pattern.flags))
    except (AttributeError, TypeError, ValueError, IndexError):
        return None, folded
    if found is None or not all(map(str.isascii, found)) or "" in found:
        return None, folded
    return tuple({start.lower() if folded else start: None for start in found}), folded


_STARTS = [_starts(pattern) for pattern, _weight in _COMPILED]
_MAX_SPOTS = 32  # starts tried one by one; past that many, the rest of the text is searched


def _search(index: int, clean: str, low: str, aligned: bool) -> re.Match[str] | None:
    """`pattern.search(clean)` of pattern `index`: the pattern is tried only where one of its
    literal starts occurs (found by `str.find`, in C; `low` when it ignores case, and then only
    in `aligned` text, ASCII, where `low` has `clean`'s positions), in order of position, the
    first match being the leftmost. The regex engine otherwise tries every position of the text
    (a 4 KB ticket that arms a pattern: 0.3 ms a pattern)."""
    pattern = _COMPILED[index][0]
    starts, folded = _STARTS[index]
    if starts is None or (folded and not aligned):
        return pattern.search(clean)
    find = (low if folded else clean).find
    firsts = [at for at in map(find, starts) if at != -1]
    if not firsts:
        return None
    spots: list[int] = []
    for start in starts:
        at = find(start)
        while at != -1:
            spots.append(at)
            if len(spots) > _MAX_SPOTS:  # many: the engine searches on from the first of all
                return pattern.search(clean, min(firsts))
            at = find(start, at + 1)
    for at in sorted(set(spots)):
        m = pattern.match(clean, at)
        if m is not None:
            return m
    return None
assert len(_TRIGGERS.needs) == len(PHRASES) + len(DELIMITERS)

INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]")
# Cyrillic and Greek letters that look Latin
_CONFUSABLES = str.maketrans({
    "\u0430": "a", "\u0435": "e", "\u043e": "o", "\u0440": "p", "\u0441": "c", "\u0443": "y",
    "\u0445": "x", "\u0456": "i", "\u0458": "j", "\u0501": "d", "\u04cf": "l", "\u0410": "A",
    "\u0412": "B", "\u0415": "E", "\u041a": "K", "\u041c": "M", "\u041d": "H", "\u041e": "O",
    "\u0420": "P", "\u0421": "C", "\u0422": "T", "\u0425": "X", "\u0391": "A", "\u0392": "B",
    "\u0395": "E", "\u0396": "Z", "\u0397": "H", "\u0399": "I", "\u039a": "K", "\u039c": "M",
    "\u039d": "N", "\u039f": "O", "\u03a1": "P", "\u03a4": "T", "\u03a5": "Y", "\u03a7": "X",
    "\u03b1": "a", "\u03bf": "o", "\u03b9": "i",
})
_MIXED = re.compile(r"\b(?=\w*[A-Za-z])(?=\w*[\u0370-\u03ff\u0400-\u04ff])\w+\b")


def normalise(text: str) -> str:
    """Fold compatibility forms and confusable letters, drop invisible characters."""
    folded = unicodedata.normalize("NFKC", text)
    return INVISIBLE.sub("", folded).translate(_CONFUSABLES)


Signal = tuple[float, int, int]  # (weight, start, end)


def _noisy_or(signals: Sequence[Signal]) -> float:
    remaining = 1.0
    for weight, _, _ in signals:
        remaining *= 1.0 - weight
    return 1.0 - remaining


class InjectionDetector:
    """One finding per text when the combined score is above zero; the rule's threshold decides.

    Signals: the phrase and delimiter patterns, the shipped classifier (`classifier.py`), text
    hidden in an encoding (decoded and scored again), invisible characters, mixed scripts."""

    name = "prompt_injection"

    def scan(self, text: str) -> list[Match]:
        score, start, end = self.score(text)
        return [Match("prompt_injection", start, end, score)] if score > 0 else []

    def score(self, text: str) -> tuple[float, int, int]:
        """(score, start, end of the strongest signal) for `text`."""
        plain = text.isascii()
        clean = text if plain else normalise(text)
        offset_ok = len(clean) == len(text)
        low = clean.lower()
        tokens = classifier.split(low)
        words = set(tokens)
        signals = self._read(clean, offset_ok, low, tokens, words)
        for payload in encodings.payloads(clean, tokens, words):
            found = self._encoded(payload, tokens, len(clean))
            if found[0] > 0:
                signals.append(found if offset_ok else (found[0], 0, len(text)))
        if not plain:
            hidden = INVISIBLE.search(text)
            if hidden:
                signals.append((0.35, hidden.start(), hidden.end()))
            mixed = _MIXED.search(text)
            if mixed:
                signals.append((0.35, mixed.start(), mixed.end()))
        if not signals:
            return 0.0, 0, 0
        strongest = max(signals)
        return _noisy_or(signals), strongest[1], strongest[2]

    def _read(self, clean: str, offset_ok: bool, low: str | None = None, tokens: list[str] | None = None,
              words: set[str] | None = None) -> list[Signal]:
        """The phrase and delimiter patterns, and the classifier, over normalised text (lower-cased
        as `low`, split into `tokens` by `_PUNCT`, and their set `words`, when the caller has them:
        a long text is lower-cased once)."""
        signals: list[Signal] = []
        if low is None:
            low = clean.lower()
        if tokens is None:
            tokens = classifier.split(low)
        if words is None:
            words = set(tokens)
        plain = clean.isascii()  # `low` has `clean`'s positions; its words are `tokens`, whose set is `words`
        mask = _TRIGGERS.mask(low, words)
        for index in _TRIGGERS.armed(mask) if mask else ():
            weight = _COMPILED[index][1]
            m = _search(index, clean, low, plain)
            if m:
                s, e = (m.start(), m.end()) if offset_ok else (0, len(clean))
                signals.append((weight, s, e))
        p = classifier.model().score_words(classifier.split_cjk(tokens, plain), words if plain else None)
        if p >= CLASSIFIER_FLOOR:
            signals.append((p, 0, len(clean)))
        return signals

    def _encoded(self, payload: encodings.Payload, words: list[str], size: int) -> Signal:
        """A readable payload is suspect in itself (more so when the text asks to decode it or is
        mostly the payload); one that reads as an attack once decoded is an attack."""
        inner = _noisy_or(self._read(payload.text, False))
        if payload.kind in ("leetspeak", "quoted-printable"):
            # respelt words hide nothing in themselves (quoted-printable text is text, as e-mail
            # bodies carry it): what they say counts
            return (max(inner, 0.85) if inner >= 0.5 else 0.0), payload.start, payload.end
        weight = 0.6
        if encodings.hinted(words):
            weight = 0.85
        elif payload.end - payload.start >= 0.5 * size:
            weight = 0.75
        if inner >= 0.5:
            weight = max(weight, 0.85, inner)
        return weight, payload.start, payload.end


# the classifier's weak opinions are left out: they would add up with other weak signals
CLASSIFIER_FLOOR = 0.5
