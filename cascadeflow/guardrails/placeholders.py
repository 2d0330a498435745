"""Reversible redaction: stable numbered placeholders for one run, and their restoration.

The same value redacted twice in a run becomes the same placeholder (`[EMAIL_1]` in the first
message and in the fifth), so the model can still tell two people apart and refer back to them;
`restore` puts the originals back into text meant for the application (the answer it receives),
never into what reaches the provider or the trace. The originals live only in this object, in
memory, for as long as its owner (a run) keeps it.
"""

from __future__ import annotations

import re
import threading

_LABEL = re.compile(r"\[([A-Z][A-Z0-9_]*)_(\d+)\]")


class Placeholders:
    """Value -> placeholder for one run; thread-safe (calls of one run may run in threads)."""

    def __init__(self) -> None:
        self._labels: dict[tuple[str, str], str] = {}  # (kind, value) -> "[EMAIL_1]"
        self._values: dict[str, str] = {}  # "[EMAIL_1]" -> value
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def label(self, kind: str, value: str) -> str:
        """The placeholder of `value` (a match of `kind`), the same every time in this run."""
        key = (kind, value)
        found = self._labels.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._labels.get(key)
            if found is None:
                tag = kind.upper()
                number = self._counts.get(tag, 0) + 1
                self._counts[tag] = number
                found = f"[{tag}_{number}]"
                self._labels[key] = found
                self._values[found] = value
            return found

    def restore(self, text: str) -> str:
        """`text` with every placeholder of this run replaced by its original value (placeholders
        this run did not make are left as they are)."""
        if "[" not in text or not self._values:
            return text
        values = self._values
        return _LABEL.sub(lambda m: values.get(m.group(), m.group()), text)

    def __len__(self) -> int:
        return len(self._values)
