"""Output rules on streamed text, as it arrives, with a bounded look-behind window.

Each new piece is scanned together with the last `window` characters before it, so a finding
split across chunks is still caught. When enforcement may edit the text or block it (redact,
rewrite, block), the last `window` characters are held back until the next piece (or the end)
shows they are clean: the caller receives the edited text, slightly delayed, never the original
(nor the first half of what a block rule then finds). A match that runs to
the end of what has arrived may go on in the next piece (an API key of 150 characters): it is
held back whole until it ends, up to `MAX_HELD` characters.
"""

from __future__ import annotations

from collections.abc import Sequence

from cascadeflow.guardrails.placeholders import json_start
from cascadeflow.guardrails.policy import Rule
from cascadeflow.guardrails.scan import (
    Finding,
    Hit,
    escape_start,
    findings,
    json_view,
    matches,
    outside_escapes,
    transform,
)

WINDOW = 64
MAX_HELD = 4096  # the most a match still growing at the end of the text can hold back


class StreamGuard:
    def __init__(self, rules: Sequence[Rule], edit: bool, window: int = WINDOW,
                 json: bool | None = False) -> None:
        self.rules = tuple(rules)
        # the text is JSON (a tool call's arguments), read through `json_view`; None: it is
        # when it starts as a JSON document (an answer in JSON mode), decided by its first piece
        self.json = json
        self.edit = edit and any(r.action in ("redact", "rewrite", "block") for r in rules)
        self.window = window
        self._held = ""  # edit mode: text not yet released, as it arrived
        self._tail = ""  # scan mode: the last `window` characters already scanned
        self._offset = 0  # position in the stream (as it arrived) of the start of _held / _tail
        self._seen: set[tuple[int, str, str]] = set()

    def feed(self, piece: str, final: bool = False) -> tuple[list[Finding], str]:
        """New findings in `piece` (with its look-behind), and the text to release now (`final`:
        the last piece, after which nothing is held)."""
        if self.edit:
            return self._edit(self._held + piece, final)
        text = self._tail + piece
        hits = self._new(matches(self.rules, text))
        found = findings(hits, text, "output") if hits else []
        keep = min(len(text), self.window)
        self._offset += len(text) - keep
        self._tail = text[len(text) - keep:]
        return found, piece

    def finish(self) -> tuple[list[Finding], str]:
        """The end of the stream: findings not reported yet, and the held-back text, edited."""
        if self.edit:
            return self._edit(self._held, True)
        return [], ""

    def _edit(self, pending: str, final: bool) -> tuple[list[Finding], str]:
        """Release what no match can still reach, edited. Held text stays as it arrived (so a
        match is found whole, at the same place, however the stream was cut) and is edited when
        released: everything but the last `window` characters, and the matches that run to the
        end of what has arrived (they may go on), up to `MAX_HELD`."""
        end = len(pending)
        if self.json is None:  # (a text that starts as a JSON document: an answer in JSON mode)
            self.json = json_start(pending)
            if self.json is None and final:
                self.json = False
        view = json_view(pending) if self.json else pending  # JSON: escapes read as what they stand for
        hits = matches(self.rules, view)
        if view is not pending:
            hits = outside_escapes(hits, pending)
        open_at = end if final or end > MAX_HELD else _open(hits, end)
        done = [(r, m) for r, m in hits if m.end <= open_at]  # matches no later text can change
        fresh = self._new(done)
        found = findings(fresh, view, "output") if fresh else []
        cut = end if final else _clear(done, max(open_at - self.window, 0))
        if view is not pending and cut < end:  # nor half of an escape (the next text starts at its end)
            cut = escape_start(pending, cut)
        release = transform(pending[:cut], [(r, m) for r, m in done if m.end <= cut], json=bool(self.json))
        self._held = pending[cut:]
        self._offset += cut
        return found, release

    def _new(self, hits: list[Hit]) -> list[Hit]:
        """The hits not reported before (a match in the look-behind or in the held text was
        found with the piece before it)."""
        fresh = []
        for rule, match in hits:
            key = (self._offset + match.start, rule.name, match.kind)
            if key in self._seen:
                continue
            self._seen.add(key)
            fresh.append((rule, match))
        return fresh


def _open(hits: list[Hit], end: int) -> int:
    """Where the earliest match that may still grow starts: one that runs to `end`, or one
    overlapping it (`end` when there is none)."""
    return _clear(hits, min((m.start for _r, m in hits if m.end == end), default=end))


def _clear(hits: list[Hit], cut: int) -> int:
    """`cut`, moved back to the start of any match it would split."""
    changed = True
    while changed:
        changed = False
        for _r, m in hits:
            if m.start < cut < m.end:
                cut, changed = m.start, True
    return cut
