"""Guardrails in the pipeline: scan the prompt before sending and the answer after, record every
finding in the trace, and (in enforce mode) edit or block.

Rules that can change what is sent or returned (redact, rewrite, block) run on the caller's
thread in enforce mode. Everything else (observe mode, alert and log_only rules) runs on the
background worker: it changes nothing, so the caller need not wait for it.
"""

from __future__ import annotations

import json
from typing import Any

from cascadeflow.alert import Alert
from cascadeflow.entry import Entry
from cascadeflow.errors import GuardrailBlocked
from cascadeflow.guardrails.scan import (
    Finding,
    json_answer,
    json_text,
    json_view,
    scan_json,
    scan_prompt,
    scan_text,
    transform,
)
from cascadeflow.pipeline import record
from cascadeflow.pipeline.step import Step
from cascadeflow.request import PROMPT_KEYS, TOOL_KEYS, Request
from cascadeflow.usage import Usage, get, message_calls


def scan_input(step: Step) -> dict[str, Any] | None:
    """Input rules over the prompt, on the caller's thread (enforce with acting rules).

    Sets `step.findings`; returns the edited arguments (the prompt, a Responses call's
    `instructions`, the tools whose descriptions changed) when a redact/rewrite rule matched,
    else None.
    """
    view = step.view
    rules = view.input_rules
    edit = any(r.action in ("redact", "rewrite") for r in rules)
    placeholders = step.session.placeholders() if view.input_numbered else None
    read, instructions, described = _inputs(step.request)
    findings, edited = scan_prompt(rules, read, edit, placeholders)
    step.findings = findings
    if placeholders is not None and placeholders.restoring:  # the answer may name any of the run's
        step.placeholders = placeholders
    if not (edit and any(f.action in ("redact", "rewrite") for f in findings)):
        return None
    key = PROMPT_KEYS[step.request.operation]
    if not (instructions or described):
        return {key: edited}
    prompt = step.request.prompt
    out: dict[str, Any] = {}
    if described:  # the tool descriptions, read after the prompt
        texts, edited = edited[len(edited) - len(described):], edited[:len(edited) - len(described)]
        out.update(_described(step.request, described, texts))
        if not instructions and not isinstance(prompt, list):
            edited = edited[0]
    if instructions:
        out["instructions"] = edited[0]
        edited = edited[1:] if isinstance(prompt, list) else edited[1]
    if prompt is not None or key in step.request.kwargs:
        out[key] = edited
    return out


Place = tuple[str, tuple[Any, ...], str]  # (kwargs key, path inside it, text)


def _inputs(request: Request) -> tuple[Any, bool, list[Place]]:
    """What the input rules read, whether a Responses call's `instructions` lead it (they
    reach the model like a system message), and the tool descriptions that end it (the model
    reads them too: a tool a third party describes, an MCP server's, can carry instructions)."""
    instructions = request.kwargs.get("instructions") if request.operation == "responses" else None
    lead = isinstance(instructions, str)
    described: list[Place] = []
    for key in TOOL_KEYS if request.operation in ("chat", "responses") else ():
        tools = request.kwargs.get(key)
        if tools:
            _descriptions(tools, (), key, described)
    prompt = request.prompt
    if not (lead or described):
        return prompt, False, []
    read = [*([instructions] if lead else []), *(prompt if isinstance(prompt, list) else [prompt]),
            *(text for _key, _path, text in described)]
    return read, lead, described


def _descriptions(value: Any, path: tuple[Any, ...], key: str, out: list[Place]) -> None:
    """Every `description` text in a tool definition (the tool's, its parameters')."""
    if isinstance(value, dict):
        for name, item in value.items():
            if name == "description" and isinstance(item, str):
                out.append((key, (*path, name), item))
            elif isinstance(item, dict | list):
                _descriptions(item, (*path, name), key, out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _descriptions(item, (*path, index), key, out)


def _described(request: Request, described: list[Place], texts: list[Any]) -> dict[str, Any]:
    """Copies of the tool lists whose descriptions an input rule edited (the caller's are left
    as they are)."""
    out: dict[str, Any] = {}
    for (key, path, old), new in zip(described, texts, strict=True):
        if new == old:
            continue
        if key not in out:
            out[key] = _plain_copy(request.kwargs[key])
        holder = out[key]
        for step in path[:-1]:
            holder = holder[step]
        holder[path[-1]] = new
    return out


def _plain_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_copy(v) for v in value]
    return value


def input_later(step: Step) -> None:
    """Worker task: the input scan of a step whose rules change nothing, recorded with its
    decision entries (same step number, findings after the decisions)."""
    findings, _ = scan_prompt(step.view.input_rules, _inputs(step.request)[0], False)
    record.admitted(step, findings)
    alert_findings(step, findings)


def alert_findings(step: Step, findings: list[Finding]) -> None:
    """`alert` rules notify the sinks in enforce mode; observe only records."""
    if not step.rt.enforce:
        return
    for f in findings:
        if f.action == "alert":
            step.rt.emit(Alert("guardrail", f"rule {f.rule} found {f.kind} ({f.stage})",
                               run_id=step.session.run_id, step=step.step_no,
                               attributes={"rule": f.rule, "detector": f.detector, "kind": f.kind,
                                           "score": f.score, "match_hash": f.match_hash,
                                           "count": f.count}))


def record_findings(step: Step, findings: list[Finding], on_worker: bool = False) -> list[Entry]:
    """Add output findings to the trace of every enclosing session, under the step's numbers:
    their entries, in order (a block raised on the caller's thread carries its own)."""
    entries = [record.finding_entry(step, f) for f in findings]
    if on_worker:
        record.append(step, entries)
    else:
        step.post(record.append, step, entries)
    alert_findings(step, findings)
    return entries


def entry_dict(step: Step) -> dict[str, Any]:
    """The step's primary entry as a dict, for an error raised on the caller's thread (the
    worker writes the trace's own copy)."""
    entry = record.decision_entry(step, step.primary)
    if step.settled:
        record.fill(entry, step)
    return entry.as_dict(step.step_no)


def check_output(step: Step, response: Any) -> None:
    """Output rules on an unstreamed answer: every text the application receives (each
    choice's, each responses text part, each tool call's arguments), each judged as its own
    text. In enforce with acting rules: on the caller's thread, editing the answer or raising
    `GuardrailBlocked`; otherwise recorded by the worker."""
    view = step.view
    operation = step.request.operation
    places = _places(operation, response) if view.output_rules else []
    calls = _arguments(operation, response) if view.output_rules else []
    if not (places or calls):
        return
    if not (step.rt.enforce and view.output_acts):
        step.post(output_later, step, *output_texts(operation, response))
        return
    scans = [(holder, name, text, scan_json(view.output_rules, text, "output"), True) if json_answer(text)
             else (holder, name, text, scan_text(view.output_rules, text, "output"), False)
             for holder, name, text in places]  # (an answer in JSON mode: read through its escapes,
    # its edits written as JSON string content)
    scans += [(holder, name, text, scan_json(view.output_rules, text, "output"), True)
              for holder, name, text in calls]
    findings = [f for *_place, scan, _json in scans for f in scan.findings]
    if not findings:
        return
    recorded = record_findings(step, findings)
    blocked = next((f for f in findings if f.action == "block"), None)
    if blocked is not None:
        step.halt()
        raise GuardrailBlocked(blocked.message, reason=blocked.reason, run_id=step.session.run_id,
                               step=step.step_no,
                               entry=recorded[findings.index(blocked)].as_dict(step.step_no))
    for holder, name, text, scan, in_json in scans:
        if any(f.action in ("redact", "rewrite") for f in scan.findings):
            _put(holder, name, transform(text, scan, json=in_json))


def restore_output(step: Step, response: Any) -> None:
    """Put the originals of the run's reversible placeholders back into the answer the
    application receives: every choice's text and tool-call arguments (the trace and the spans
    keep the answer read before this, placeholders and all)."""
    placeholders = step.placeholders
    if placeholders is None:
        return
    for holder, name, text in _places(step.request.operation, response):
        restore = placeholders.restore_json if json_answer(text) else placeholders.restore  # (JSON mode)
        _put(holder, name, restore(text))
    for holder in _calls(step.request.operation, response):
        arguments = get(holder, "arguments")
        if isinstance(arguments, str):
            _put(holder, "arguments", placeholders.restore_json(arguments))


def _calls(operation: str, response: Any) -> list[Any]:
    """What holds the `arguments` of each tool call of an answer (SDK objects or dicts)."""
    if operation == "responses":
        return list(get(response, "output") or ())
    return [get(call, "function") for choice in get(response, "choices") or ()
            for call in message_calls(get(choice, "message")) or ()]  # (a legacy function_call too)


def output_later(step: Step, *texts: str) -> None:
    """Worker task: output rules that change nothing here, recorded (each text on its own)."""
    for text in texts:
        scan = scan_text(step.view.output_rules, text, "output")
        if scan.findings:
            record_findings(step, scan.findings, on_worker=True)


def output_texts(operation: str, response: Any) -> list[str]:
    """Every text of an unstreamed answer that output rules judge: its texts (see `_places`)
    and its tool calls' arguments (read through `json_view`, as enforce reads them)."""
    return [_readable(text) for _holder, _name, text in _places(operation, response)] + \
        [json_view(text) for _holder, _name, text in _arguments(operation, response)]


def _readable(text: str) -> str:
    """A text as output rules read it: through its escapes where it is written as JSON."""
    return json_view(text) if json_text(text) else text


def usage_texts(usage: Usage) -> list[str]:
    """What output rules judge of a streamed answer, as its accumulator read it, each text on its
    own: each choice's text and the reasoning text a reasoning model streamed, each responses
    text part, and each tool call's arguments (an `n` > 1 stream interleaves its choices' deltas:
    read as one text, a number split across two of one choice's deltas would not be found)."""
    if usage.texts or usage.arguments:
        return [*map(_readable, usage.texts), *map(json_view, usage.arguments)]
    return [_readable(text) for text in (usage.text, usage.reasoning_text) if text] + \
        [json_view(call[2]) for call in usage.calls if call[2]]


def _arguments(operation: str, response: Any) -> list[tuple[Any, str, str]]:
    """(holder, "arguments", arguments) of each tool call of an answer with arguments."""
    out = []
    for holder in _calls(operation, response):
        arguments = get(holder, "arguments")
        if isinstance(arguments, str) and arguments:
            out.append((holder, "arguments", arguments))
    return out


def _places(operation: str, response: Any) -> list[tuple[Any, str, str]]:
    """(holder, field, text) of each non-empty text of an answer that the application receives:
    every choice's message content (and `reasoning_content`, which reasoning models add) or
    text, every text part of a responses answer (its `output_text`, and the reasoning text some
    models return), and the input of each custom tool call, in SDK objects or dicts alike."""
    out: list[tuple[Any, str, str]] = []
    if operation == "responses":
        for item in get(response, "output") or ():
            for part in get(item, "content") or ():
                text = get(part, "text")
                if isinstance(text, str) and text:
                    out.append((part, "text", text))
            _custom_input(item, out)
        return out
    for choice in get(response, "choices") or ():
        message = get(choice, "message")
        holder, name = (choice, "text") if message is None else (message, "content")
        text = get(holder, name)
        if isinstance(text, str) and text:
            out.append((holder, name, text))
        reasoning = None if message is None else get(message, "reasoning_content")
        if isinstance(reasoning, str) and reasoning:  # what reasoning models add (DeepSeek, vLLM)
            out.append((message, "reasoning_content", reasoning))
        for call in (None if message is None else get(message, "tool_calls")) or ():
            _custom_input(get(call, "custom"), out)
    return out


def _custom_input(holder: Any, out: list[tuple[Any, str, str]]) -> None:
    """The free-form input of a custom tool call (`type: "custom"` tools: the Responses API's
    `custom_tool_call` item, chat's `custom` call): plain text an agent executes, not JSON."""
    if holder is None or (get(holder, "type") not in (None, "custom_tool_call")):
        return
    text = get(holder, "input")
    if isinstance(text, str) and text:
        out.append((holder, "input", text))


def _put(holder: Any, name: str, value: str) -> None:
    if isinstance(holder, dict):
        holder[name] = value
        return
    changed = getattr(holder, name, None) != value
    setattr(holder, name, value)
    # the openai SDK's `parse()` hands over the answer parsed too (`message.parsed`, a tool call's
    # `parsed_arguments`, a Responses text part's `parsed`): parsed again from the edited text, so
    # it carries neither what a rule redacted nor a placeholder whose original went back
    parsed_name = _PARSED.get(name)
    if changed and parsed_name is not None and getattr(holder, parsed_name, None) is not None:
        setattr(holder, parsed_name, _reparsed(getattr(holder, parsed_name), value))


_PARSED = {"content": "parsed", "text": "parsed", "arguments": "parsed_arguments"}


def _reparsed(old: Any, text: str) -> Any:
    """`text` parsed as `old` was (its pydantic model's, or plain JSON); None where the edited
    text no longer parses as that (a redaction in a field a schema constrains)."""
    validate = getattr(type(old), "model_validate_json", None)
    try:
        if callable(validate):
            return validate(text)
        return json.loads(text) if isinstance(old, dict | list) else None
    except ValueError:  # (pydantic's ValidationError is one)
        return None
