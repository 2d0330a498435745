"""What the caller is handed of a stream whose text cascadeflow may change.

Two things change a streamed answer on its way to the application: output rules that act
(redact, rewrite, block) on its text, and the run's reversible placeholders (`[EMAIL_1]`), whose
originals go back into text and tool-call arguments. Both hold back a little (a match or a
placeholder split across chunks) and release it later, sometimes at an event that carries no
delta (the Responses API's `response.output_text.done`). So the editor names the last chunk
that carried a piece (`carrier`): the stream proxy hands it out only once the next piece or the
end of its part has arrived, and what is released late is appended to it. Events that repeat a
part whole (`*.done`, `response.output_item.done`, `response.completed`) are rewritten to what
the caller was handed of it, so no copy of the provider's text gets past the rules.
"""

from __future__ import annotations

from typing import Any

from cascadeflow.guardrails.placeholders import Placeholders, Restorer
from cascadeflow.guardrails.scan import Finding
from cascadeflow.guardrails.stream import StreamGuard
from cascadeflow.usage import get

_RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")


def put(obj: Any, name: str, value: Any) -> None:
    """Set an attribute or a key, whichever the object has (SDK models and plain dicts)."""
    if isinstance(obj, dict):
        obj[name] = value
    else:
        setattr(obj, name, value)


class StreamEditor:
    """Edits one stream's chunks in place, in order (`edit`); `carrier` is the chunk that
    later releases are appended to."""

    def __init__(self, operation: str, guard: StreamGuard | None, placeholders: Placeholders | None) -> None:
        self.operation = operation
        self.guard = guard
        self._placeholders = placeholders
        self._text = Restorer(placeholders) if placeholders is not None else None
        self._args: dict[Any, Restorer] = {}  # tool call -> its arguments' restorer
        self._handed: dict[Any, list[str]] = {}  # text part -> what the caller was handed
        self._handed_args: dict[Any, list[str]] = {}
        self.carrier: Any = None  # the last chunk that carried a piece, not yet handed out
        self._carried: tuple[str, Any] | None = None  # what it carried: ("text" | "args", key)
        # something may be released late: a redacting rule or placeholders to restore (rules
        # that only block or alert change nothing, and the stream is handed over as it comes)
        self._late_releases = (guard is not None and guard.edit) or placeholders is not None

    # -- text ---------------------------------------------------------------------------
    def _release(self, piece: str, finished: bool) -> tuple[list[Finding], str, str]:
        """(findings, the text the rules let through, the text the caller gets)."""
        findings: list[Finding] = []
        release = piece
        guard = self.guard
        if guard is not None:
            findings, release = guard.feed(piece)
            if guard.edit and finished:
                release += guard.finish()
        guarded = release
        text = self._text
        if text is not None:
            release = text.feed(release)
            if finished:
                release += text.finish()
        return findings, guarded, release

    def _restore_args(self, key: Any, piece: str, finished: bool) -> str:
        restorer = self._args.get(key)
        if restorer is None:
            if self._placeholders is None:
                return piece
            restorer = self._args[key] = Restorer(self._placeholders, json=True)
        release = restorer.feed(piece)
        if finished:
            release += restorer.finish()
        return release

    def _late(self, kind: str, key: Any, tail: str) -> None:
        """Text released after the chunk that should carry it: appended to the carrier."""
        if not tail:
            return
        handed = self._handed if kind == "text" else self._handed_args
        handed.setdefault(key, []).append(tail)
        if self._carried != (kind, key):
            return  # nothing of that part was handed yet: the `done` event brings it whole
        chunk = self.carrier
        if self.operation == "responses":
            put(chunk, "delta", get(chunk, "delta", "") + tail)
        elif kind == "args":
            for call in get(get(get(chunk, "choices")[0], "delta"), "tool_calls") or []:
                if get(call, "index") == key:
                    function = get(call, "function")
                    put(function, "arguments", (get(function, "arguments") or "") + tail)
        else:
            delta = get(get(chunk, "choices")[0], "delta")
            put(delta, "content", (get(delta, "content") or "") + tail)

    def _carry(self, chunk: Any, kind: str, key: Any) -> None:
        if self._late_releases:
            self.carrier, self._carried = chunk, (kind, key)

    def _end_part(self) -> None:
        self.carrier, self._carried = None, None

    # -- chunks -------------------------------------------------------------------------
    def edit(self, chunk: Any) -> tuple[list[Finding], str | None]:
        """Edit `chunk` for the caller; (the output rules' findings, the text they let through,
        or None when the chunk brings no text)."""
        if self.operation == "responses":
            return self._event(chunk)
        choices = get(chunk, "choices") or []
        if not choices:
            return [], None
        choice = choices[0]
        finished = get(choice, "finish_reason") is not None
        if self.operation == "text_completion":
            piece = get(choice, "text")
            if not isinstance(piece, str) and not finished:
                return [], None
            findings, guarded, release = self._release(piece if isinstance(piece, str) else "", finished)
            put(choice, "text", release)
            return findings, guarded
        delta = get(choice, "delta")
        found: tuple[list[Finding], str | None] = ([], None)
        for call in get(delta, "tool_calls") or [] if self._placeholders is not None else ():
            function = get(call, "function")
            arguments = get(function, "arguments")
            if isinstance(arguments, str):
                key = get(call, "index")
                released = self._restore_args(key, arguments, False)
                put(function, "arguments", released)
                self._handed_args.setdefault(key, []).append(released)
                self._carry(chunk, "args", key)
        piece = get(delta, "content")
        if isinstance(piece, str) or finished:
            findings, guarded, release = self._release(piece if isinstance(piece, str) else "", finished)
            if delta is not None and (isinstance(piece, str) or release):
                put(delta, "content", release)
            found = (findings, guarded)
        if finished:
            for key in list(self._args):
                self._late("args", key, self._restore_args(key, "", True))
            self._end_part()
        return found

    def _event(self, event: Any) -> tuple[list[Finding], str | None]:
        """One event of the Responses API."""
        kind = get(event, "type")
        if kind == "response.output_text.delta":
            key = (get(event, "output_index"), get(event, "content_index"))
            findings, guarded, release = self._release(get(event, "delta") or "", False)
            put(event, "delta", release)
            self._handed.setdefault(key, []).append(release)
            self._carry(event, "text", key)
            return findings, guarded
        if kind == "response.output_text.done":
            key = (get(event, "output_index"), get(event, "content_index"))
            findings, guarded, release = self._release("", True)
            self._late("text", key, release)
            self._end_part()
            put(event, "text", "".join(self._handed.get(key, ())))
            return findings, guarded
        if self._placeholders is None and str(kind).startswith("response.function_call_arguments."):
            return [], None  # nothing to restore in arguments: handed over as they come
        if kind == "response.function_call_arguments.delta":
            key = get(event, "output_index")
            released = self._restore_args(key, get(event, "delta") or "", False)
            put(event, "delta", released)
            self._handed_args.setdefault(key, []).append(released)
            self._carry(event, "args", key)
        elif kind == "response.function_call_arguments.done":
            key = get(event, "output_index")
            self._late("args", key, self._restore_args(key, "", True))
            self._end_part()
            put(event, "arguments", "".join(self._handed_args.get(key, ())))
        elif kind == "response.content_part.done":
            self._part(get(event, "output_index"), get(event, "content_index"), get(event, "part"))
        elif kind == "response.output_item.done":
            self._item(get(event, "output_index"), get(event, "item"))
        elif kind in _RESPONSE_ENDS:
            for index, item in enumerate(get(get(event, "response"), "output") or []):
                self._item(index, item)
        return [], None

    def _part(self, index: Any, content_index: Any, part: Any) -> None:
        handed = self._handed.get((index, content_index))
        if handed is not None and isinstance(get(part, "text"), str):
            put(part, "text", "".join(handed))

    def _item(self, index: Any, item: Any) -> None:
        for content_index, part in enumerate(get(item, "content") or []):
            self._part(index, content_index, part)
        handed = self._handed_args.get(index)
        if handed is not None and isinstance(get(item, "arguments"), str):
            put(item, "arguments", "".join(handed))

    def finished(self) -> bool:
        """No chunk waits for a late release (the proxy may hand out everything it holds)."""
        return self.carrier is None
