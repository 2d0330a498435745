"""What the caller is handed of a stream whose text cascadeflow may change.

Two things change a streamed answer on its way to the application: output rules that act
(redact, rewrite, block) on its text, and the run's reversible placeholders (`[EMAIL_1]`), whose
originals go back into text and tool-call arguments. Both hold back a little (a match or a
placeholder split across chunks) and release it later, sometimes at a chunk that cannot carry
it (the Responses API's `response.output_text.done`, a final chat chunk with no delta). So each
part of the answer (a choice's text, a tool call's arguments, a responses content part) keeps
its own rules' state, and the editor remembers the last chunk that carried a piece of it (its
carrier): the stream proxy hands a carrier out only once the part's next piece or its end has
arrived, and what is released late is appended to it. Events that repeat a part whole
(`*.done`, `response.output_item.done`, `response.completed`) are rewritten to what the caller
was handed of it, so no copy of the provider's text gets past the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cascadeflow.guardrails.placeholders import Placeholders, Restorer
from cascadeflow.guardrails.policy import Rule
from cascadeflow.guardrails.scan import Finding
from cascadeflow.guardrails.stream import StreamGuard
from cascadeflow.usage import delta_calls, get

_RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")
_ARGUMENTS = ("response.function_call_arguments.delta", "response.function_call_arguments.done")
# a text part as it streams: the answer's, and the reasoning text some models return (gpt-oss)
_TEXT_DELTAS = ("response.output_text.delta", "response.reasoning_text.delta")
_TEXT_DONES = ("response.output_text.done", "response.reasoning_text.done")
# a custom tool's free-form input (plain text, not JSON), streamed as a call's arguments are
_CUSTOM = ("response.custom_tool_call_input.delta", "response.custom_tool_call_input.done")

Key = tuple[str, Any]  # ("text" | "reasoning", choice index or (output, content) index) | ("args", call)


def put(obj: Any, name: str, value: Any) -> None:
    """Set an attribute or a key, whichever the object has (SDK models and plain dicts)."""
    if isinstance(obj, dict):
        obj[name] = value
    else:
        setattr(obj, name, value)


class _Text:
    """One part's text on its way to the caller: the output rules, then the placeholders
    (`json`: a tool call's arguments, where edits and originals are written as JSON string
    content; otherwise a text is read as JSON when it starts as a document: an answer in JSON
    mode)."""

    __slots__ = ("guard", "restorer")

    def __init__(self, rules: Sequence[Rule], placeholders: Placeholders | None, json: bool = False) -> None:
        # (a text is read as JSON when it starts as a document: an answer in JSON mode)
        self.guard = StreamGuard(rules, edit=True, json=json or None) if rules else None
        self.restorer = Restorer(placeholders, json=json or None) if placeholders is not None else None

    def release(self, piece: str, finished: bool) -> tuple[list[Finding], str, str]:
        """(findings, the text the rules let through, the text the caller gets now)."""
        findings: list[Finding] = []
        release = piece
        guard = self.guard
        if guard is not None:
            findings, release = guard.feed(piece, final=finished)
        guarded = release
        restorer = self.restorer
        if restorer is not None:
            release = restorer.feed(release)
            if finished:
                release += restorer.finish()
        return findings, guarded, release


def _call_text(call: Any) -> tuple[Any, str]:
    """Where a chat tool-call delta carries its text: a function call's JSON `arguments`, or a
    custom tool call's plain-text `input` (`{"type": "custom", "custom": {"input": ...}}`)."""
    custom = get(call, "custom")
    return (get(call, "function"), "arguments") if custom is None else (custom, "input")


class StreamEditor:
    """Edits one stream's chunks in place, in order (`edit`); `holds(chunk)` says whether a
    chunk must wait, because a release may still be appended to it."""

    def __init__(self, operation: str, rules: Sequence[Rule], placeholders: Placeholders | None) -> None:
        self.operation = operation
        self._rules = tuple(rules)
        self._placeholders = placeholders
        self._texts: dict[Any, _Text] = {}
        self._args: dict[Any, _Text] = {}  # tool call -> its arguments' rules and restorer
        self._handed: dict[Key, list[str]] = {}  # responses part -> what the caller was handed
        self._carriers: dict[Key, Any] = {}  # open part -> the last chunk that carried a piece
        self._deferred: list[tuple[Key, str, Any]] | None = None  # late releases `finish` holds back
        self._thoughts: set[Any] = set()  # responses parts of reasoning text
        # something may be released late: a rule that redacts, rewrites or blocks (a block must
        # come before any of what it found is handed over) or placeholders to restore (rules
        # that only alert or log change nothing, and the stream is handed over as it comes)
        edits = bool(rules) and StreamGuard(rules, edit=True).edit
        self._late_releases = edits or placeholders is not None

    def holds(self, chunk: Any) -> bool:
        return any(carrier is chunk for carrier in self._carriers.values())

    # -- parts ----------------------------------------------------------------------------
    def _text(self, key: Any) -> _Text:
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = _Text(self._rules, self._placeholders)
        return text

    def _edit_args(self, key: Any, piece: str, finished: bool,
                   json: bool = True) -> tuple[list[Finding], str]:
        """A tool call's arguments (`json`; else a custom tool's input): the output rules'
        findings, and what the caller gets now."""
        args = self._args.get(key)
        if args is None:
            args = self._args[key] = _Text(self._rules, self._placeholders, json=json)
        findings, _guarded, release = args.release(piece, finished)
        return findings, release

    def _carry(self, key: Key, chunk: Any) -> None:
        if self._late_releases:
            self._carriers[key] = chunk

    def _late(self, key: Key, tail: str) -> None:
        """Text of a part released after the chunk that should have carried it: appended to
        the part's carrier (still held by the proxy)."""
        if self._deferred is not None:  # (`finish`: appended once no rule blocks)
            self._deferred.append((key, tail, self._carriers.get(key)))
            return
        self._append(key, tail, self._carriers.get(key))

    def _append(self, key: Key, tail: str, carrier: Any) -> None:
        if key in self._handed:
            self._handed[key].append(tail)
        if not tail or carrier is None:
            return
        kind, index = key
        if self.operation == "responses":
            put(carrier, "delta", (get(carrier, "delta") or "") + tail)
            return
        if kind == "args":
            index, call_index = index
        for choice in get(carrier, "choices") or ():
            if get(choice, "index", 0) != index:
                continue
            if self.operation == "text_completion":
                put(choice, "text", (get(choice, "text") or "") + tail)
                return
            delta = get(choice, "delta")
            if kind == "text":
                put(delta, "content", (get(delta, "content") or "") + tail)
                return
            if kind == "reasoning":
                put(delta, "reasoning_content", (get(delta, "reasoning_content") or "") + tail)
                return
            for call in delta_calls(delta):
                if get(call, "index", 0) == call_index:
                    holder, name = _call_text(call)
                    put(holder, name, (get(holder, name) or "") + tail)
                    return

    # -- chunks -------------------------------------------------------------------------
    def edit(self, chunk: Any) -> tuple[list[Finding], str | None]:
        """Edit `chunk` for the caller; (the output rules' findings, the text they let through,
        or None when the chunk brings no text)."""
        if self.operation == "responses":
            return self._event(chunk)
        findings: list[Finding] = []
        guarded: list[str] = []
        for choice in get(chunk, "choices") or ():
            found, text = self._choice(chunk, choice)
            findings += found
            if text is not None:
                guarded.append(text)
        return findings, "".join(guarded) if guarded else None

    def _choice(self, chunk: Any, choice: Any) -> tuple[list[Finding], str | None]:
        """One choice of a chat or text-completion chunk."""
        index = get(choice, "index", 0)
        finished = get(choice, "finish_reason") is not None
        chat = self.operation != "text_completion"
        delta = get(choice, "delta") if chat else None
        in_args: list[Finding] = []
        if chat and (self._placeholders is not None or self._rules):
            for call in delta_calls(delta):
                holder, name = _call_text(call)
                arguments = get(holder, name)
                if isinstance(arguments, str):
                    key = (index, get(call, "index", 0))
                    found_here, released = self._edit_args(key, arguments, False, json=name == "arguments")
                    in_args += found_here
                    put(holder, name, released)
                    self._carry(("args", key), chunk)
        piece = get(delta, "content") if chat else get(choice, "text")
        if chat and (self._placeholders is not None or self._rules):
            in_args += self._thought(chunk, index, delta, piece, finished)
        found: tuple[list[Finding], str | None] = (in_args, None)
        if isinstance(piece, str) or finished:
            findings, guarded, release = self._text(index).release(piece if isinstance(piece, str) else "",
                                                                    finished)
            found = (in_args + findings, guarded)
            holder = delta if chat else choice
            if holder is None:
                self._late(("text", index), release)  # a last chunk with no delta
            elif isinstance(piece, str) or release:
                put(holder, "content" if chat else "text", release)
            if isinstance(piece, str) and not finished:
                self._carry(("text", index), chunk)
        if finished:
            found = (found[0] + self._finish_choice(index), found[1])
        return found

    def finish(self) -> tuple[list[Finding], str | None]:
        """The provider finished the stream: every part still open is over too (the client
        may have dropped its end), so what its rules and placeholders hold is released to its
        carrier, unless a rule blocks it. (The output rules' findings, the text they let
        through.)"""
        self._deferred = []
        try:
            found = self._end_open(lambda key: True) if self.operation == "responses" else self._finish_all()
        finally:
            deferred, self._deferred = self._deferred, None
        if not any(f.action == "block" for f in found[0]):  # (a blocked stream hands none of it over)
            for key, tail, carrier in deferred:
                self._append(key, tail, carrier)
        return found

    def _finish_all(self) -> tuple[list[Finding], str | None]:
        findings: list[Finding] = []
        guarded: list[str] = []
        choices = [k for k in self._texts if not isinstance(k, tuple)]
        choices += [k[1] for k in self._texts if isinstance(k, tuple) and k[1] not in choices]
        choices += [k[0] for k in self._args if k[0] not in choices]
        for index in choices:
            thought = self._texts.pop(("reasoning", index), None)
            if thought is not None:
                found, _guarded, release = thought.release("", True)
                findings += found
                self._late(("reasoning", index), release)
            text = self._texts.get(index)
            if text is not None:
                found, let_through, release = text.release("", True)
                findings += found
                guarded.append(let_through)
                self._late(("text", index), release)
            findings += self._finish_choice(index)
        return findings, "".join(guarded) if guarded else None

    def _thought(self, chunk: Any, index: Any, delta: Any, piece: Any, finished: bool) -> list[Finding]:
        """A reasoning model's `reasoning_content` delta, judged as a text of its own (and the
        run's placeholders restored in it, as in the answer). The reasoning ends where the
        answer's text begins, or at the finish: what its rules held back is released then, to
        the last chunk that carried a piece of it."""
        thought = get(delta, "reasoning_content")
        key: Key = ("reasoning", index)
        if isinstance(thought, str) and thought:
            findings, _guarded, release = self._text(key).release(thought, finished)
            put(delta, "reasoning_content", release)
            if finished:
                del self._texts[key]
            else:
                self._carry(key, chunk)
            return findings
        if key in self._texts and (finished or (isinstance(piece, str) and piece)):
            findings, _guarded, release = self._texts.pop(key).release("", True)
            self._late(key, release)
            self._carriers.pop(key, None)
            return findings
        return []

    def _finish_choice(self, index: Any) -> list[Finding]:
        findings: list[Finding] = []
        for key in [k for k in self._args if k[0] == index]:
            found, release = self._edit_args(key, "", True)
            findings += found
            self._late(("args", key), release)
            del self._args[key]
        self._texts.pop(index, None)
        for key in [k for k in self._carriers if k[1] == index or (k[0] == "args" and k[1][0] == index)]:
            del self._carriers[key]
        return findings

    def _event(self, event: Any) -> tuple[list[Finding], str | None]:
        """One event of the Responses API."""
        kind = get(event, "type")
        kind = getattr(kind, "value", kind)  # litellm's event types are str enums
        if kind in _TEXT_DELTAS:
            key = (get(event, "output_index"), get(event, "content_index"))
            findings, guarded, release = self._text(key).release(get(event, "delta") or "", False)
            put(event, "delta", release)
            self._handed.setdefault(("text", key), []).append(release)
            self._carry(("text", key), event)
            if kind == "response.output_text.delta":
                return findings, guarded
            self._thoughts.add(key)  # reasoning text: judged and restored, not the answer's text
            return findings, None
        if kind in _TEXT_DONES:
            key = (get(event, "output_index"), get(event, "content_index"))
            found = self._end_text(key)
            put(event, "text", "".join(self._handed.get(("text", key), ())))
            return found
        if kind in _ARGUMENTS or kind in _CUSTOM:
            if self._placeholders is not None or self._rules:
                return self._arguments(event, kind), None
            return [], None
        if kind == "response.content_part.done":
            self._part(get(event, "output_index"), get(event, "content_index"), get(event, "part"))
            return [], None
        if kind == "response.output_item.done":
            index = get(event, "output_index")
            found = self._end_open(lambda key: key[0] == index)
            self._item(index, get(event, "item"))
            return found
        if kind in _RESPONSE_ENDS:
            found = self._end_open(lambda key: True)
            for index, item in enumerate(get(get(event, "response"), "output") or []):
                self._item(index, item)
            return found
        return [], None

    def _end_text(self, key: Any) -> tuple[list[Finding], str | None]:
        """A responses text part ended: release what its rules and placeholders held."""
        text = self._texts.pop(key, None)
        if text is None:
            return [], None
        findings, guarded, release = text.release("", True)
        self._handed.setdefault(("text", key), [])
        self._late(("text", key), release)
        self._carriers.pop(("text", key), None)
        return findings, None if key in self._thoughts else guarded

    def _end_open(self, which: Callable[[tuple[Any, ...]], bool]) -> tuple[list[Finding], str | None]:
        """Parts still open when their item or the response ends (no `done` event came);
        `which` picks them by their key, whose first element is the output index."""
        findings: list[Finding] = []
        guarded: list[str] = []
        for key in [k for k in self._texts if which(k)]:
            found, text = self._end_text(key)
            findings += found
            if text:
                guarded.append(text)
        for index in [i for i in self._args if which((i,))]:
            findings += self._end_args(index)
        return findings, "".join(guarded) if guarded else None

    def _arguments(self, event: Any, kind: str) -> list[Finding]:
        key = get(event, "output_index")
        custom = kind in _CUSTOM
        if kind.endswith(".delta"):
            findings, released = self._edit_args(key, get(event, "delta") or "", False, json=not custom)
            put(event, "delta", released)
            self._handed.setdefault(("args", key), []).append(released)
            self._carry(("args", key), event)
            return findings
        findings = self._end_args(key)
        put(event, "input" if custom else "arguments", "".join(self._handed.get(("args", key), ())))
        return findings

    def _end_args(self, key: Any) -> list[Finding]:
        """A responses function call's arguments ended: release what their rules and restorer
        held."""
        findings: list[Finding] = []
        if key in self._args:
            findings, release = self._edit_args(key, "", True)
            self._late(("args", key), release)
            del self._args[key]
        self._carriers.pop(("args", key), None)
        return findings

    def _part(self, index: Any, content_index: Any, part: Any) -> None:
        handed = self._handed.get(("text", (index, content_index)))
        if handed is not None and isinstance(get(part, "text"), str):
            put(part, "text", "".join(handed))

    def _item(self, index: Any, item: Any) -> None:
        for content_index, part in enumerate(get(item, "content") or []):
            self._part(index, content_index, part)
        handed = self._handed.get(("args", index))
        if handed is not None:
            for name in ("arguments", "input"):  # (a function call's, a custom tool call's)
                if isinstance(get(item, name), str):
                    put(item, name, "".join(handed))
