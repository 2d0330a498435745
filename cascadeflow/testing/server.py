"""The built-in provider: an OpenAI-compatible HTTP server on loopback with fault injection.

It speaks chat completions (with streaming and tool calls), text completions, the responses API
and embeddings, records every request it receives, and fails on demand: per model through
`inject()`, or per request through the `x-cascadeflow-fault` header (`status=429,retry_after=1`).
"""

from __future__ import annotations

import email.utils
import json
import random
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cascadeflow.testing import replies
from cascadeflow.testing.replies import Reply

FAULT_HEADER = "x-cascadeflow-fault"


@dataclass
class Fault:
    """A failure to inject. `rate` is a probability (seeded); `times` caps how often it fires."""

    status: int | None = None
    retry_after: float | None = None
    retry_after_as: str = "seconds"  # how it is sent: seconds | ms (`retry-after-ms`) | date (HTTP date)
    latency_ms: float = 0.0
    empty_body: bool = False
    malformed_json: bool = False
    cut_stream_after: int | None = None  # drop the connection after N events: a broken stream
    end_stream_after: int | None = None  # end cleanly after N events, with no finish and no [DONE]
    body: str | None = None  # answer 200 with this body, verbatim (as an event stream if one was asked)
    ignore_max_tokens: bool = False  # answer past max_tokens, as a misbehaving provider would
    hold: bool = False  # answer only once `release()` (or `reset()`) is called: a hung provider
    rate: float = 1.0
    times: int | None = None
    model: str | None = None
    message: str = "injected failure"
    code: str | None = None  # the error's `code` (e.g. context_length_exceeded); else from the status

    def __post_init__(self) -> None:
        if self.retry_after_as not in ("seconds", "ms", "date"):
            raise ValueError(f"retry_after_as must be seconds, ms or date, not {self.retry_after_as!r}")

    @classmethod
    def parse(cls, header: str) -> Fault:
        """`status=503,latency_ms=50` or flags such as `empty_body` -> Fault."""
        values: dict[str, Any] = {}
        kinds = {f.name: f.type for f in fields(cls)}
        for part in filter(None, (p.strip() for p in header.split(","))):
            key, sep, raw = part.partition("=")
            key = key.strip()
            if key not in kinds:
                raise ValueError(f"unknown fault field {key!r}")
            if not sep:
                values[key] = True
            elif key in ("status", "cut_stream_after", "end_stream_after", "times"):
                values[key] = int(raw)
            elif key in ("retry_after", "latency_ms", "rate"):
                values[key] = float(raw)
            elif key in ("empty_body", "malformed_json", "ignore_max_tokens", "hold"):
                values[key] = raw.strip().lower() in ("1", "true", "yes")
            else:
                values[key] = raw
        return cls(**values)


def _retry_header(seconds: float, form: str) -> dict[str, str]:
    """The wait as a provider writes it: `Retry-After` in seconds or as an HTTP date (rounded to
    the second), or OpenAI's `retry-after-ms`."""
    if form == "ms":
        return {"retry-after-ms": f"{seconds * 1000:g}"}
    if form == "date":
        return {"Retry-After": email.utils.formatdate(time.time() + seconds, usegmt=True)}
    return {"Retry-After": f"{seconds:g}"}


@dataclass
class RecordedRequest:
    """One request as the server received it (the Authorization header is masked)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    model: str | None
    fault: Fault | None
    ts: float = field(default_factory=time.time)
    peer: tuple[str, int] | None = None  # the client's address: one per TCP connection


class ProviderServer:
    """Start with `with ProviderServer() as server:`; point clients at `server.url`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int = 0,
                 embedding_dimensions: int = 8) -> None:
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._faults: list[Fault] = []
        self._replies: list[Reply] = []
        self._seen: set[tuple[str, str]] = set()
        self._release = threading.Event()  # what requests held now wait for
        self.requests: list[RecordedRequest] = []
        self.answers: list[tuple[str, replies.Answer]] = []  # (model, answer): what was billed
        self.embedding_dimensions = embedding_dimensions
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> ProviderServer:
        if self._httpd is not None:
            return self
        handler = type("Handler", (_Handler,), {"provider": self})
        self._httpd = _Server((self._host, self._port), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="cascadeflow-provider",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd = None

    def __enter__(self) -> ProviderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the provider is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for clients: `http://127.0.0.1:PORT/v1`."""
        return f"http://{self._host}:{self.port}/v1"

    # -- behaviour -------------------------------------------------------------------------
    def inject(self, fault: Fault | None = None, **kwargs: Any) -> Fault:
        """Add a fault, e.g. `inject(model="gpt-4o", status=503, rate=0.3)`."""
        item = fault or Fault(**kwargs)
        with self._lock:
            self._faults.append(item)
        return item

    def reply(self, content: str | None = None, *, when: str | None = None, model: str | None = None,
              tool_call: tuple[str, dict[str, Any]] | None = None, finish_reason: str | None = None,
              times: int | None = None, reasoning: str | None = None) -> Reply:
        """Answer prompts containing `when` with `content` (or a tool call); first match wins.
        `reasoning`: the unstreamed chat answer's `reasoning_content`, as reasoning models add."""
        rule = Reply(content, when, model, tool_call, finish_reason, times, reasoning)
        with self._lock:
            self._replies.append(rule)
        return rule

    def release(self) -> None:
        """Let the requests `hold` faults keep waiting be answered; later ones are held again.
        A test can then wait for a request as long as it takes, knowing it is not answered."""
        with self._lock:
            released, self._release = self._release, threading.Event()
        released.set()

    def reset(self) -> None:
        """Forget faults, canned replies, the prompt cache and recorded requests; release the
        requests held."""
        self.release()
        with self._lock:
            self._faults.clear()
            self._replies.clear()
            self._seen.clear()
            self.requests.clear()
            self.answers.clear()

    def bodies(self, path_suffix: str = "") -> list[Any]:
        """The parsed JSON bodies received, optionally only for paths ending with `path_suffix`."""
        with self._lock:
            return [r.json for r in self.requests if r.path.endswith(path_suffix)]

    # -- used by the handler ---------------------------------------------------------------
    def _choose_fault(self, model: str | None, header: str | None) -> Fault | None:
        if header:
            return Fault.parse(header)
        with self._lock:
            for fault in self._faults:
                if fault.model is not None and fault.model != model:
                    continue
                if fault.times is not None and fault.times <= 0:
                    continue
                if fault.rate < 1.0 and self._rng.random() >= fault.rate:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                return fault
        return None

    def _record(self, item: RecordedRequest) -> threading.Event:
        """Keep the request; what a `hold` fault on it waits for (taken with it: a test that saw
        the request and then calls `release()` lets it go)."""
        with self._lock:
            self.requests.append(item)
            return self._release

    def _answer(self, model: str, messages: Any, body: dict[str, Any]) -> replies.Answer:
        with self._lock:
            answer = replies.answer(model, messages, body, self._replies, self._seen)
            self.answers.append((model, answer))
            return answer

    def billed(self, prices: dict[str, tuple[float, float, float]]) -> float:
        """What the answers so far cost at `prices` (model -> USD per input, output and cached
        input token): the provider's bill, to compare with what cascadeflow recorded."""
        with self._lock:
            answered = list(self.answers)
        total = 0.0
        for model, a in answered:
            per_in, per_out, per_cached = prices[model]
            total += ((a.prompt_tokens - a.cached_tokens) * per_in + a.cached_tokens * per_cached
                      + a.completion_tokens * per_out)
        return total


_MASKED = {"authorization", "api-key", "x-api-key"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver listens with a backlog of 5: calls made at once (a pooled client opens a
    # connection for each) overflowed it and failed after seconds of SYN retries
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-stream are normal here (closed and abandoned streams)."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    provider: ProviderServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stalls

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "cascadeflow"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): ("***" if k.lower() in _MASKED else v) for k, v in self.headers.items()}
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = None
        model = body.get("model") if isinstance(body, dict) else None
        try:
            fault = self.provider._choose_fault(model, self.headers.get(FAULT_HEADER))
        except ValueError as exc:
            self._json(400, {"error": {"message": f"bad {FAULT_HEADER}: {exc}", "type": "bad_fault"}})
            return
        peer = (str(self.client_address[0]), int(self.client_address[1]))
        released = self.provider._record(RecordedRequest("POST", self.path, headers, raw, body, model, fault,
                                                         peer=peer))
        if fault is not None and fault.hold:
            released.wait()
        if fault is not None and fault.latency_ms:
            time.sleep(fault.latency_ms / 1000.0)
        if not isinstance(body, dict) or not isinstance(model, str):
            self._json(400, {"error": {"message": "body must be JSON with a model", "type":
                                       "invalid_request_error", "code": "invalid_request"}})
            return
        if fault is not None and fault.status is not None:
            self._error(fault)
            return
        if fault is not None and fault.empty_body:
            self._raw(200, b"")
            return
        if fault is not None and fault.malformed_json:
            self._raw(200, b'{"id": "broken", "object": "chat.completion", "choices": [{"message": ')
            return
        if fault is not None and fault.body is not None:  # a stream's events, when one was asked for
            kind = "text/event-stream" if body.get("stream") is True else "application/json"
            self._raw(200, fault.body.encode(), content_type=kind)
            return
        self._route(body, model, fault)

    def _route(self, body: dict[str, Any], model: str, fault: Fault | None) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        stream = body.get("stream") is True
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        cut = fault.cut_stream_after if fault is not None else None
        end = fault.end_stream_after if fault is not None else None
        if fault is not None and fault.ignore_max_tokens:
            body = {k: v for k, v in body.items()
                    if k not in ("max_tokens", "max_completion_tokens", "max_output_tokens")}
        rid = replies.new_id("chatcmpl")
        if path.endswith("/chat/completions"):
            a = self.provider._answer(model, body.get("messages"), body)
            if stream:
                self._sse(replies.chat_chunks(model, a, rid, include_usage), cut, end)
            else:
                self._json(200, replies.chat_body(model, a, rid))
        elif path.endswith("/completions"):
            prompt = body.get("prompt")
            # a list of prompts (strings, or token lists) is answered, and billed, prompt by prompt
            prompts = prompt if isinstance(prompt, list) and len(prompt) > 1 \
                and not isinstance(prompt[0], int) else [prompt]
            answers = [self.provider._answer(model, p, body) for p in prompts]
            if stream:
                self._sse(replies.text_chunks(model, answers, rid, include_usage), cut, end)
            else:
                self._json(200, replies.text_body(model, answers, rid))
        elif path.endswith("/responses"):
            messages = body.get("input")
            if body.get("instructions"):
                messages = [{"role": "system", "content": body["instructions"]},
                            *(messages if isinstance(messages, list) else
                              [{"role": "user", "content": messages}])]
            a = self.provider._answer(model, messages, body)
            rid = replies.new_id("resp")
            if stream:
                self._sse(replies.responses_events(model, a, rid), cut, end, named_events=True)
            else:
                self._json(200, replies.responses_body(model, a, rid))
        elif path.endswith("/responses/compact"):
            messages = body.get("input")
            a = self.provider._answer(model, messages, body)
            self._json(200, replies.compacted_body(model, a, replies.new_id("cmp"), messages))
        elif path.endswith("/embeddings"):
            dims = body.get("dimensions") or self.provider.embedding_dimensions
            self._json(200, replies.embedding_body(model, body.get("input"), int(dims),
                                                   body.get("encoding_format")))
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    # -- writing ---------------------------------------------------------------------------
    def _raw(self, status: int, payload: bytes, extra: dict[str, str] | None = None,
             content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _json(self, status: int, data: Any, extra: dict[str, str] | None = None) -> None:
        self._raw(status, json.dumps(data).encode(), extra)

    def _error(self, fault: Fault) -> None:
        status = int(fault.status or 500)
        kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error"}.get(status, "server_error")
        extra = {} if fault.retry_after is None else _retry_header(fault.retry_after, fault.retry_after_as)
        self._json(status, {"error": {"message": fault.message, "type": kind, "code": fault.code or kind}},
                   extra)

    def _sse(self, events: list[dict[str, Any]], cut_after: int | None, end_after: int | None = None,
             named_events: bool = False) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        for index, event in enumerate(events):
            if cut_after is not None and index >= cut_after:
                self.wfile.flush()
                self.close_connection = True  # drop mid-body: the client sees a broken stream
                return
            if end_after is not None and index >= end_after:
                break
            name = f"event: {event['type']}\n" if named_events else ""
            self._chunk(f"{name}data: {json.dumps(event)}\n\n".encode())
        if not named_events and end_after is None:
            self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
