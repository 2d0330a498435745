"""Stream proxies: pass every chunk through and settle the step however the stream ends.

Chunks are handed over as they arrive, edited only where output rules act or reversible
placeholders are restored (`stream_edit`); then a chunk may wait for the next piece of its part
(what is released late is appended to it), and an error that ends the stream is raised after
what was read before it.

They forward every attribute they don't handle and report the wrapped class as their own, so
`isinstance(stream, openai.Stream)` still holds. A stream is settled at the last event billed
(`_last_word`, `finish_is_last`,
`_usage_after_finish`), when it is exhausted, when it raises, when it is closed (itself
or its HTTP response), or when it is garbage-collected half-read (status `abandoned`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from cascadeflow import tokens
from cascadeflow.closing import aclose, close
from cascadeflow.entry import Entry
from cascadeflow.errors import BudgetExceeded, GuardrailBlocked
from cascadeflow.guardrails.scan import Finding
from cascadeflow.interceptors.inside import inside
from cascadeflow.interceptors.stream_edit import StreamEditor
from cascadeflow.pipeline import Step, cut, cut_entry, fail, finish, output_cap, record_findings
from cascadeflow.pipeline.guard import output_later, usage_texts
from cascadeflow.request import Request
from cascadeflow.usage import StreamAccumulator, delta_calls, get, provider_finished


class StreamIncomplete(Exception):
    """Recorded as the error of a stream that was closed or dropped before its end."""


class ResponseFailed(Exception):
    """Recorded as the error of a Responses API stream that ended with `response.failed`: the
    provider's own error (its code and message), what it billed charged. Status `error`."""


class StreamTruncated(Exception):
    """Recorded as the error of a stream that ran out before the provider finished it (no finish
    reason, no terminal event): the answer the caller read is incomplete. Status `truncated`."""


_NONE_READY = object()  # `_ready` found no chunk the caller may have yet

Settle = Callable[[StreamAccumulator, "BaseException | None", str], None]


class _Proxy:
    __slots__ = ("_acc", "_cap", "_cut", "_done", "_editor", "_error", "_exhausted", "_finish_last",
                 "_guarded", "_held", "_iter", "_late", "_next_check", "_out_bytes", "_seen", "_settle",
                 "_step", "_wrapped")

    def __init__(self, wrapped: Any, operation: str, settle: Settle, late: Settle,
                 step: Step | None = None, finish_last: bool = False) -> None:
        """`settle` ends the step however the stream ends; `late` does it from a finaliser,
        which may run while this thread holds a session lock, so it must only queue work.
        `step` is given in enforce mode, where output rules may edit or block chunks.
        `finish_last`: the chunk with the finish reason is the last one billed (`finish_is_last`)."""
        self._wrapped = wrapped
        self._finish_last = finish_last
        self._step = step
        self._settle = settle
        self._late = late
        self._acc = StreamAccumulator(operation)
        self._done = False
        self._iter: Any = None
        # Output rules that may change the text run on each chunk as it passes (enforce); others
        # change nothing and are run once over the whole text by the worker at the end.
        acting = step is not None and step.rt.enforce and step.view.output_acts
        rules = step.view.output_rules if acting and step is not None else ()
        # what those rules let through, chunk by chunk: the text the trace keeps (never what a
        # rule removed), before any placeholder is restored
        self._guarded: list[str] | None = [] if rules else None
        # then the run's reversible placeholders are restored in what the caller receives (the
        # accumulator, hence the trace, keeps the text as the provider sent it)
        placeholders = step.placeholders if step is not None else None
        self._editor = StreamEditor(operation, rules, placeholders) \
            if rules or placeholders is not None else None
        # chunks read but not handed out yet: from the editor's first carrier on
        self._held: deque[Any] = deque()
        self._exhausted = False  # the wrapped stream ended (or failed): hand out what is held
        self._error: BaseException | None = None  # then raise this, if it failed
        # In enforce mode under a budget, output past what the reservation pays for cuts the
        # stream (a provider that ignores max_tokens); UTF-8 bytes bound the tokens for free,
        # and the text is counted only once the bytes could have passed the cap.
        self._cap = output_cap(step) if step is not None and step.rt.enforce and \
            step.primary.reservation else None
        self._out_bytes = 0
        self._cut: Entry | None = None  # the entry of the stop that cut it
        self._seen = (0, 0)  # the accumulator's text parts and tool-call arguments counted so far
        self._next_check = self._cap or 0

    def _overrun(self) -> BudgetExceeded | None:
        """Count the output the latest chunk brought (what the accumulator just collected: text
        and tool-call arguments) against the cap: the error to cut the stream with when the
        output has passed it (the caller closes the stream, settles and raises)."""
        step, cap = self._step, self._cap
        if step is None or cap is None:
            return None
        acc = self._acc
        parts, args = acc.parts, acc.tool_args
        seen_parts, seen_args = self._seen
        if len(parts) == seen_parts and len(args) == seen_args:
            return None
        self._out_bytes += sum(map(tokens.upper_bound, parts[seen_parts:])) + \
            sum(map(tokens.upper_bound, args[seen_args:]))
        self._seen = (len(parts), len(args))
        if self._out_bytes <= self._next_check:
            return None
        used = tokens.count("".join(acc.parts) + "".join(acc.tool_args), step.model)
        if used <= cap:  # each token is at least a byte: no need to count before `cap - used` more
            self._next_check = self._out_bytes + cap - used
            return None
        # the answer as far as it went, as the output rules let it through
        text = "".join(self._guarded if self._guarded is not None else acc.parts)
        message = (f"cascadeflow cut the stream of step {step.step_no}: its output passed the {cap} "
                   f"tokens its budget reservation pays for ({len(text)} characters received)")
        self._cut = entry = cut_entry(step, message)  # the stop's entry: the error's and the trace's
        entry.status = "cut"
        error = BudgetExceeded(message, reason="budget_exceeded", run_id=step.session.run_id,
                               step=step.step_no, entry=entry.as_dict(step.step_no))
        error.text = text
        return error

    def _check(self, chunk: Any) -> GuardrailBlocked | None:
        """Output rules on the text this chunk brings (with look-behind) and the run's
        placeholders restored (`StreamEditor`); may edit the chunk, or block the stream."""
        editor, step = self._editor, self._step
        if editor is None or step is None:
            return None
        return self._judged(*editor.edit(chunk))

    def _judged(self, findings: list[Finding], guarded: str | None) -> GuardrailBlocked | None:
        """Record what the editor's rules found; the error a block ends the stream with."""
        step = self._step
        if step is None:
            return None
        blocked = next((f for f in findings if f.action == "block"), None)
        if self._guarded is not None and blocked is None and guarded is not None:
            self._guarded.append(guarded)
        recorded = record_findings(step, findings) if findings else []
        if blocked is None:
            return None
        return GuardrailBlocked(blocked.message, reason=blocked.reason, run_id=step.session.run_id,
                                step=step.step_no,
                                entry=recorded[findings.index(blocked)].as_dict(step.step_no))

    def _arrived(self, chunk: Any) -> BaseException | None:
        """Account and edit a chunk just read. A budget cut or a block ends the stream here
        (settled; raised once what was read before it is handed out): returned, for the caller
        to close the provider's connection."""
        self._acc.add(chunk)
        ending: BaseException | None
        if self._cap is not None and (ending := self._overrun()) is not None:
            self._end(ending, status="cut")
            if self._step is not None:
                self._step.halt()
                self._step.post(cut, self._step, str(ending), self._cut)
        elif (ending := self._check(chunk)) is not None:
            self._end(ending, status="blocked")
            if self._step is not None:
                self._step.halt()
        else:
            if self._editor is not None:
                self._held.append(chunk)
            if self._acc.operation == "responses" and get(chunk, "type") == "response.failed":
                self._end(_failure(chunk), status="error")  # handed over: the caller reads it too
            elif _last_word(self._acc.operation, chunk) or (self._finish_last and _finishes(chunk)) \
                    or _usage_after_finish(self._acc, chunk):
                ending = self._release_all()
                if ending is None:
                    self._end(finished=True)
            if ending is None:
                return None
        self._stopped(ending)
        return ending

    def _release_all(self) -> GuardrailBlocked | None:
        """The provider finished the stream: what the editor still holds of any part is final,
        released to the part's carrier (a client may drop a part's own end: litellm hands over
        the finish reason of an `n` > 1 stream's first choice only, and the others' last
        characters stayed held until the stream was over, then were lost). A block it finds
        ends the stream, settled as blocked."""
        if self._editor is None or self._done:
            return None
        ending = self._judged(*self._editor.finish())
        if ending is not None:
            self._end(ending, status="blocked")
            if self._step is not None:
                self._step.halt()
        return ending

    def _failed(self, error: Exception) -> None:
        """The provider's stream raised: settled, raised once what was read is handed out."""
        self._end(error, status="error")
        self._stopped(error)

    def _ran_out(self) -> None:
        """The provider's stream ended: settled, what is held is handed out (with what the
        editor still held, when the provider finished it)."""
        self._exhausted = True
        if self._editor is not None and not self._done and \
                provider_finished(self._wrapped, self._acc.usage.finish_reason is not None):
            ending = self._release_all()
            if ending is not None:
                self._stopped(ending)
                return
        self._end()

    def _ready(self) -> Any:
        """The next chunk the caller may have (held chunks up to the editor's first carrier,
        all of them once the stream has ended), or `_NONE_READY`."""
        held = self._held
        if held and (self._exhausted or not self._editor.holds(held[0])):  # type: ignore[union-attr]
            return held.popleft()
        return _NONE_READY

    def _stopped(self, error: BaseException) -> None:
        """The stream ended with `error` (the provider's, a budget cut, a block): what was read
        before it is still handed out, then `error` is raised, then the stream is over."""
        self._exhausted, self._error = True, error

    def _over(self, end: BaseException) -> BaseException:
        """What ends iteration once nothing is held: the stream's error, once, then `end`."""
        error, self._error = self._error, None
        return error if error is not None else end

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() sees the wrapped type
        return type(self._wrapped)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_wrapped"), name)

    @property
    def response(self) -> Any:
        """The SDK's HTTP response, closing which settles the stream as `close()` does: the
        openai SDK's helpers (`chat.completions.stream`, `responses.stream`) close a stream
        left early through its response, never through the stream."""
        return _ClosingResponse(self._wrapped.response, self)

    def __repr__(self) -> str:
        return f"<cascadeflow stream proxy of {self._wrapped!r}>"

    def response_closed(self) -> None:
        """Its HTTP response was closed (by the SDK, not through the stream): settled as a
        closed stream (`ok` when the last chunk had arrived)."""
        self._end(StreamIncomplete("stream closed before its end"), status="closed")

    def _end(self, error: BaseException | None = None, status: str = "ok", finished: bool = False) -> None:
        """Settle the step once. `finished`: the provider's last word has arrived."""
        if self._done:
            return
        self._done = True
        acc = self._acc
        if error is None or isinstance(error, StreamIncomplete):
            finished = finished or provider_finished(self._wrapped, acc.usage.finish_reason is not None)
            if error is None and not finished:
                acc.usage.finish_reason = None  # the one litellm made up
                error, status = StreamTruncated("the stream ended before the provider finished it"), \
                    "truncated"
            elif error is not None and finished:
                error, status = None, "ok"  # the last chunk arrived; closing early lost nothing
        if self._guarded is not None:  # the trace keeps what the output rules let through
            acc.parts[:] = self._guarded
        self._settle(acc, error, status)

    def __del__(self) -> None:
        try:
            if not object.__getattribute__(self, "_done"):
                self._done = True
                self._late(self._acc, StreamIncomplete("stream abandoned before its end"), "abandoned")
        except Exception:  # never raise from a finaliser
            pass


class SyncStreamProxy(_Proxy):
    __slots__ = ()

    def __iter__(self) -> SyncStreamProxy:
        return self

    def __next__(self) -> Any:
        while True:
            chunk = self._ready()
            if chunk is not _NONE_READY:
                return chunk
            if self._exhausted:
                raise self._over(StopIteration())
            token = inside.set([])  # what the library calls while the stream is read is this step
            try:
                try:
                    if self._iter is None:
                        self._iter = iter(self._wrapped)
                    chunk = next(self._iter)
                finally:
                    inside.reset(token)
            except StopIteration:
                self._ran_out()
                continue
            except Exception as exc:
                self._failed(exc)
                continue
            except BaseException as exc:  # an interrupt: at once
                self._end(exc, status="error")
                raise
            if self._arrived(chunk) is not None:  # cut or blocked: nothing more is read
                close(self._wrapped)
            elif self._editor is None:
                return chunk

    def close(self) -> None:
        try:
            close(self._wrapped)
        finally:
            self._end(StreamIncomplete("stream closed before its end"), status="closed")

    def __enter__(self) -> SyncStreamProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStreamProxy(_Proxy):
    __slots__ = ()

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        while True:
            chunk = self._ready()
            if chunk is not _NONE_READY:
                return chunk
            if self._exhausted:
                raise self._over(StopAsyncIteration())
            token = inside.set([])
            try:
                try:
                    if self._iter is None:
                        self._iter = self._wrapped.__aiter__()
                    chunk = await self._iter.__anext__()
                finally:
                    inside.reset(token)
            except StopAsyncIteration:
                self._ran_out()
                continue
            except Exception as exc:
                self._failed(exc)
                continue
            except BaseException as exc:  # an interrupt or a cancellation: at once
                self._end(exc, status="error")
                raise
            if self._arrived(chunk) is not None:  # cut or blocked: nothing more is read
                await aclose(self._wrapped)
            elif self._editor is None:
                return chunk

    async def aclose(self) -> None:
        try:
            await aclose(self._wrapped)
        finally:
            self._end(StreamIncomplete("stream closed before its end"), status="closed")

    async def close(self) -> None:
        await self.aclose()

    async def __aenter__(self) -> AsyncStreamProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _ClosingResponse:
    """A stream's HTTP response (httpx's), forwarded whole; `close()` and `aclose()` also end
    the stream's step (status `closed`, or `ok` when its last chunk had arrived)."""

    __slots__ = ("_stream", "_wrapped")

    def __init__(self, wrapped: Any, stream: _Proxy) -> None:
        self._wrapped = wrapped
        self._stream = stream

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() sees httpx's class
        return type(self._wrapped)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_wrapped"), name)

    def __repr__(self) -> str:
        return repr(self._wrapped)

    def close(self) -> None:
        try:
            self._wrapped.close()
        finally:
            self._stream.response_closed()

    async def aclose(self) -> None:
        try:
            await self._wrapped.aclose()
        finally:
            self._stream.response_closed()


def _last_word(operation: str, chunk: Any) -> bool:
    """The event that ends what a provider bills for a stream, with its usage: the Responses
    API's `response.completed` or `response.incomplete`, or the chat usage chunk (no choices)
    that `stream_options.include_usage` adds last. Only the end of the connection follows, so
    the step settles here, exactly: a caller that stops reading at it (a `break`) and keeps
    the stream unclosed no longer holds its reservation until the stream is dropped."""
    if operation == "responses":
        return get(chunk, "type") in ("response.completed", "response.incomplete")
    return get(chunk, "choices") == [] and get(chunk, "usage") is not None


def _failure(event: Any) -> ResponseFailed:
    error = get(get(event, "response"), "error")
    code, message = get(error, "code"), get(error, "message")
    return ResponseFailed(f"the provider failed the response ({code or 'no code'}): "
                          f"{message or 'no message'}")


def _usage_after_finish(acc: StreamAccumulator, chunk: Any) -> bool:
    """litellm's usage chunk (`include_usage`), its last: it follows the finish reason, with
    the usage and one empty choice (not none, as the openai SDK's, which `_last_word` reads)."""
    if acc.operation not in ("chat", "text_completion") or acc.usage.finish_reason is None \
            or not acc.usage_reported or get(chunk, "usage") is None:
        return False
    for choice in get(chunk, "choices") or ():
        delta = get(choice, "delta")
        if get(choice, "finish_reason") or get(choice, "text") or get(delta, "content") \
                or delta_calls(delta):
            return False
    return True


def finish_is_last(operation: str, kwargs: Mapping[str, Any], stream: Any) -> bool:
    """Whether the chunk with the finish reason ends what is billed for an openai SDK stream:
    one answer (`n` 1) and no usage chunk asked to follow it (`include_usage`), named or in
    `extra_body`. (litellm's streams report their own end; it may add a usage chunk after the
    finish.)"""
    if operation not in ("chat", "text_completion") or \
            type(stream).__module__.partition(".")[0] != "openai":
        return False
    extra = kwargs.get("extra_body")
    if isinstance(extra, Mapping):  # the SDK sends its keys in the body, over the named ones
        kwargs = {**kwargs, **extra}
    options = kwargs.get("stream_options")
    if isinstance(options, Mapping) and options.get("include_usage"):
        return False
    return not any(isinstance(kwargs.get(k), int) and kwargs[k] > 1 for k in ("n", "best_of"))


def _finishes(chunk: Any) -> bool:
    choices = get(chunk, "choices")
    return bool(choices) and get(choices[0], "finish_reason") is not None


def sent_request(step: Step) -> Request:
    """The request as enforce sent it (tools denied, prompt redacted, model switched): what a
    stream's input is estimated from when its provider reports no usage."""
    request = step.request
    if step.kwargs is request.kwargs and step.model == request.model:
        return request
    sent = Request(request.operation, request.client, step.model, step.kwargs, request.provider,
                   step.args, request.stream, request.api_base, reachable=request.reachable,
                   pinned=request.pinned)
    sent.stored_tokens = request.stored_tokens
    return sent


def enforce_settle(step: Step, acc: StreamAccumulator, error: BaseException | None, status: str) -> None:
    """How an enforce-mode stream settles: on the caller's thread, when it ends."""
    usage = acc.finish(sent_request(step))
    if error is None:
        finish(step, usage)
    else:
        fail(step, error, usage, status=status)
    texts = usage_texts(usage) if step.view.output_rules and not step.view.output_acts else []
    if texts:
        step.post(output_later, step, *texts)
