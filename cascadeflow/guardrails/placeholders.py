"""Reversible redaction: stable numbered placeholders for one run, and their restoration.

The same value redacted twice in a run becomes the same placeholder (`[EMAIL_1]` in the first
message and in the fifth), so the model can still tell two people apart and refer back to them.
`restore` puts the originals back into text meant for the application (the answer it receives),
never into what reaches the provider or the trace, and only for the placeholders of rules that
asked for it (`redaction = "reversible"`): a `numbered` rule's placeholders stay in the answer.
The originals live only in this object, in memory, for as long as its owner (a run, or one call
outside any run) keeps it; nothing writes them anywhere.
"""

from __future__ import annotations

import json
import re
import threading

_LABEL = re.compile(r"\[([A-Z][A-Z0-9_]*)_(\d+)\]")
# the longest placeholder a stream holds back while waiting for its end ("[" + kind + "_" + number + "]")
LONGEST = 48


class Placeholders:
    """Value -> placeholder for one run; thread-safe (calls of one run may run in threads)."""

    def __init__(self) -> None:
        self._labels: dict[tuple[str, str], str] = {}  # (kind, value) -> "[EMAIL_1]"
        self._values: dict[str, str] = {}  # "[EMAIL_1]" -> value, for the placeholders to restore
        self._counts: dict[str, int] = {}
        self._issued: set[str] = set()  # every placeholder this run made
        self._taken: set[str] = set()  # placeholder-shaped text the application wrote itself
        self._lock = threading.Lock()

    def label(self, kind: str, value: str, restorable: bool = True) -> str:
        """The placeholder of `value` (a match of `kind`), the same every time in this run;
        `restore` puts it back when any rule that made it was `restorable`."""
        key = (kind, value)
        found = self._labels.get(key)
        if found is not None and (not restorable or found in self._values):
            return found
        with self._lock:
            found = self._labels.get(key)
            if found is None:
                tag = _tag(kind)
                number = self._counts.get(tag, 0) + 1
                while f"[{tag}_{number}]" in self._taken:
                    number += 1
                self._counts[tag] = number
                found = f"[{tag}_{number}]"
                self._labels[key] = found
                self._issued.add(found)
            if restorable:
                self._values[found] = value
            return found

    def reserve(self, text: str) -> None:
        """Note placeholder-shaped text in a prompt that this run did not make (a template's
        literal `[EMAIL_1]`): the run never issues it, so the provider never sees one placeholder
        stand for two things, and `restore` leaves it as written. Call it with every text of a
        prompt before `label` is asked for any of them."""
        if "[" not in text:
            return
        for m in _LABEL.finditer(text):
            found = m.group()
            if found not in self._taken and found not in self._issued:
                with self._lock:
                    if found not in self._issued:
                        self._taken.add(found)

    def restore(self, text: str) -> str:
        """`text` with every restorable placeholder of this run replaced by its original value
        (placeholders this run did not make are left as they are)."""
        if "[" not in text or not self._values:
            return text
        values = self._values
        return _LABEL.sub(lambda m: values.get(m.group(), m.group()), text)

    def restore_json(self, text: str) -> str:
        """`restore` inside JSON text (a tool call's arguments): each value is written as a JSON
        string's content would be, so a quote or a backslash in it cannot break the document."""
        if "[" not in text or not self._values:
            return text
        values = self._values

        def put(m: re.Match[str]) -> str:
            value = values.get(m.group())
            return m.group() if value is None else json.dumps(value, ensure_ascii=False)[1:-1]
        return _LABEL.sub(put, text)

    @property
    def restoring(self) -> bool:
        """Some placeholder of this run is to be restored."""
        return bool(self._values)

    def __len__(self) -> int:
        return len(self._labels)


class Restorer:
    """`Placeholders.restore` over streamed text: a placeholder split across chunks (`[EMA` then
    `IL_1]`) is held back until its end arrives, so the caller never sees half of one. Only what
    can still become a placeholder is held (a `[` then capitals, digits and underscores, at most
    `LONGEST` characters); `json`: the text is a tool call's JSON arguments (`restore_json`);
    None: it is when it starts as a JSON document (an answer in JSON mode, `json_start`), which
    is decided before any of it is released."""

    def __init__(self, placeholders: Placeholders, json: bool | None = False) -> None:
        self.placeholders = placeholders
        self._json = json
        self._held = ""

    def _restore(self, text: str) -> str:
        return self.placeholders.restore_json(text) if self._json else self.placeholders.restore(text)

    def feed(self, piece: str) -> str:
        """The restored text that can be released now."""
        text = self._held + piece
        if self._json is None:
            self._json = json_start(text)
            if self._json is None:  # (only blanks and a "[" so far)
                self._held = text
                return ""
        cut = text.rfind("[")
        if cut == -1 or len(text) - cut > LONGEST or _PREFIX.fullmatch(text, cut) is None:
            cut = len(text)
        self._held = text[cut:]
        return self._restore(text[:cut])

    def finish(self) -> str:
        """What is held back, restored, at the end of the stream."""
        held, self._held = self._held, ""
        if self._json is None:
            self._json = False
        return self._restore(held)


def json_start(text: str) -> bool | None:
    """Whether a text that starts as `text` does is a JSON document (an answer in JSON mode):
    it opens with `{`, or with `[` and what starts a JSON value (`[EMAIL_1] wrote ...` and
    `[see below]` are prose); None while too little of it has arrived to tell."""
    start = text.lstrip()
    if not start:
        return None
    if start[0] != "[":
        return start[0] == "{"
    rest = start[1:].lstrip()
    return (rest[0] in _JSON_VALUE_STARTS) if rest else None


_JSON_VALUE_STARTS = frozenset('{["-0123456789tfn]')


def _tag(kind: str) -> str:
    """A kind's name as a placeholder's tag: capitals, digits and underscores, starting with a
    capital and at most `_TAG` long, so that `restore` and a stream's `Restorer` know it (a
    custom pattern named "emp-id" or "employee id" is `[EMP_ID_1]`)."""
    tag = _NOT_TAG.sub("_", kind.upper()).strip("_")[:_TAG].rstrip("_")
    return tag if tag[:1].isascii() and tag[:1].isalpha() else f"PII_{tag}"[:_TAG].rstrip("_")


_NOT_TAG = re.compile(r"[^A-Z0-9]+")
_TAG = 32  # with "[", "_", a number and "]", well within LONGEST


# what a placeholder's start looks like: "[", "[EMA", "[EMAIL_", "[CREDIT_CARD_1"
_PREFIX = re.compile(r"\[(?:[A-Z][A-Z0-9_]*)?")
