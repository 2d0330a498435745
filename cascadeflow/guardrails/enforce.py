"""Guardrails in the step pipeline: scan the prompt before sending, the answer after, record
every finding in the trace, and (in enforce mode) edit or block."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cascadeflow.errors import GuardrailBlocked
from cascadeflow.guardrails.scan import Finding, scan_prompt, scan_text, transform
from cascadeflow.policy.view import ChainView
from cascadeflow.request import Request
from cascadeflow.session import Entry, Session
from cascadeflow.telemetry.alerts import Alert

if TYPE_CHECKING:
    from cascadeflow.pipeline import Step
    from cascadeflow.runtime import Runtime


PROMPT_KEYS = {"chat": "messages", "text_completion": "prompt", "responses": "input", "embeddings": "input"}


def scan_input(request: Request, view: ChainView, enforce: bool) -> tuple[list[Finding], Any]:
    """Input rules over the prompt: findings, and the edited prompt when enforce redacts/rewrites."""
    if not view.input_rules:
        return [], None
    edit = enforce and any(r.action in ("redact", "rewrite") for r in view.input_rules)
    findings, edited = scan_prompt(view.input_rules, request.prompt, edit)
    changed = edit and any(f.action in ("redact", "rewrite") for f in findings)
    return findings, (edited if changed else None)


def finding_entry(rt: Runtime, finding: Finding, request: Request, enforce: bool,
                   agent: str | None, run_id: str, version: str | None) -> Entry:
    """A guardrail finding as a trace entry: never the matched text, only its keyed hash."""
    entry = Entry(action=finding.action, reason=finding.reason,
                  applied=enforce and finding.action != "log_only", mode=rt.mode,
                  requested_model=request.model, model=request.model, agent=agent,
                  operation="guardrail", run_id=run_id, status="ok")
    entry.extra = {"rule": finding.rule, "detector": finding.detector, "kind": finding.kind,
                   "score": finding.score, "stage": finding.stage, "policy_version": version,
                   "match_hash": finding.match_hash}
    return entry


def alert_findings(rt: Runtime, findings: list[Finding], enforce: bool, session: Session,
                    step: int) -> None:
    """`alert` rules notify the sinks (asynchronously) in enforce mode; observe only records."""
    if not enforce:
        return
    for f in findings:
        if f.action == "alert":
            rt.alerts.emit(Alert("guardrail", f"rule {f.rule} found {f.kind} ({f.stage})",
                                 run_id=session.run_id, step=step,
                                 attributes={"rule": f.rule, "detector": f.detector, "kind": f.kind,
                                             "score": f.score, "match_hash": f.match_hash}))


def record_findings(step: Step, findings: list[Finding]) -> None:
    """Add output findings to the trace of every enclosing session, under the step's number."""
    rt = step.rt
    enforce = rt.mode == "enforce"
    version = step.view.policy_version if step.view is not None else None
    entries = [finding_entry(rt, f, step.request, enforce, step.entry.agent, step.entry.run_id, version)
               for f in findings]
    with step.session.lock:
        for s in step.chain:
            number = s.steps if s is not step.session else step.step_no
            for entry in entries:
                s.add_entry(number, entry)
    alert_findings(rt, findings, enforce, step.session, step.step_no)
    if rt.telemetry is not None:
        rt.telemetry.decisions_made(entries)


def check_output(step: Step, response: Any, text: str) -> None:
    """Output rules on an unstreamed answer: record; in enforce, edit the answer or block it."""
    view = step.view
    if view is None or not view.output_rules or not text:
        return
    hits = scan_text(view.output_rules, text, "output")
    if not hits:
        return
    findings = [f for _r, _m, f in hits]
    record_findings(step, findings)
    if step.rt.mode != "enforce":
        return
    blocked = next((f for f in findings if f.action == "block"), None)
    if blocked is not None:
        raise GuardrailBlocked(blocked.message, reason=blocked.reason, run_id=step.session.run_id,
                               step=step.step_no, entry=step.entry.as_dict(step.step_no))
    if any(f.action in ("redact", "rewrite") for f in findings):
        _set_text(response, step.request.operation, transform(text, hits))


def _set_text(response: Any, operation: str, text: str) -> None:
    """Replace the answer's text in the library's own response object."""
    if operation == "responses":
        for item in getattr(response, "output", None) or []:
            for part in getattr(item, "content", None) or []:
                if getattr(part, "type", None) == "output_text":
                    part.text = text
                    return
        return
    choices = getattr(response, "choices", None) or []
    if not choices:
        return
    message = getattr(choices[0], "message", None)
    if message is not None:
        message.content = text
    else:
        choices[0].text = text
