"""Output rules on streamed text, as it arrives, with a bounded look-behind window.

Each new piece is scanned together with the last `window` characters before it, so a finding
split across chunks is still caught. When enforcement may edit the text (redact / rewrite), the
last `window` characters are held back until the next piece (or the end) shows they are clean:
the caller receives the edited text, slightly delayed, never the original.
"""

from __future__ import annotations

from collections.abc import Sequence

from cascadeflow.guardrails.policy import Rule
from cascadeflow.guardrails.scan import Finding, Hit, findings, matches, transform

WINDOW = 64


class StreamGuard:
    def __init__(self, rules: Sequence[Rule], edit: bool, window: int = WINDOW) -> None:
        self.rules = tuple(rules)
        self.edit = edit and any(r.action in ("redact", "rewrite") for r in rules)
        self.window = window
        self._held = ""  # edit mode: text not yet released
        self._tail = ""  # scan mode: the last `window` characters already scanned
        self._offset = 0  # absolute position of the start of _held / _tail
        self._seen: set[tuple[int, str, str]] = set()

    def feed(self, piece: str) -> tuple[list[Finding], str]:
        """New findings in `piece` (with its look-behind), and the text to release now."""
        if self.edit:
            pending = self._held + piece
            hits = self._new(matches(self.rules, pending))
            found = findings(hits, pending, "output") if hits else []
            pending = transform(pending, hits)
            cut = max(len(pending) - self.window, 0)
            release, self._held = pending[:cut], pending[cut:]
            self._offset += cut
            return found, release
        text = self._tail + piece
        hits = self._new(matches(self.rules, text))
        found = findings(hits, text, "output") if hits else []
        keep = min(len(text), self.window)
        self._offset += len(text) - keep
        self._tail = text[len(text) - keep:]
        return found, piece

    def finish(self) -> str:
        """The held-back text, released at the end of the stream."""
        held, self._held = self._held, ""
        self._offset += len(held)  # what comes next is new text, not the same positions again
        return held

    def _new(self, hits: list[Hit]) -> list[Hit]:
        """The hits not reported before (a match in the look-behind was found with the piece
        before it)."""
        fresh = []
        for rule, match in hits:
            key = (self._offset + match.start, rule.name, match.kind)
            if key in self._seen:
                continue
            self._seen.add(key)
            fresh.append((rule, match))
        return fresh
