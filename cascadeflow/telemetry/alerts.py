"""Alerts: budget thresholds, fallbacks, guardrail `alert` actions, breaker openings.

An alert sink is any callable taking an `Alert`. Sinks run on one background thread, so a slow
webhook never slows the call that raised the alert; a full queue drops alerts and counts them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from cascadeflow.alert import Alert
from cascadeflow.errors import ConfigError
from cascadeflow.secrets import scrub

log = logging.getLogger("cascadeflow.alerts")


AlertSink = Callable[[Alert], None]


def masked(alert: Alert) -> Alert:
    """`alert` with secrets masked: alerts quote provider errors and file paths."""
    return Alert(alert.kind, scrub(alert.message), alert.severity, alert.run_id, alert.step,
                 scrub(dict(alert.attributes)), alert.ts)


class LogSink:
    """Writes each alert to the `cascadeflow.alerts` logger."""

    def __init__(self, level: int | str = logging.WARNING) -> None:
        # checked here: a level the logger refuses would fail every alert, on the alert thread
        names = logging.getLevelNamesMapping()
        if isinstance(level, str) and level.strip().upper() in names:
            level = names[level.strip().upper()]
        if isinstance(level, bool) or not isinstance(level, int):
            raise ConfigError("LogSink level", level, "LogSink()", "expected a logging level: an int "
                              "(logging.WARNING) or a level name such as 'WARNING'")
        self.level = level

    def __call__(self, alert: Alert) -> None:
        log.log(self.level, "cascadeflow alert %s: %s", alert.kind, alert.message,
                extra={"cascadeflow_alert": alert.as_dict()})


class WebhookSink:
    """POSTs each alert as JSON; `text` makes it readable as a Slack incoming-webhook message."""

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0,
                 payload: Callable[[Alert], Mapping[str, Any]] | None = None) -> None:
        # checked here: a bad URL would otherwise only fail on the alert thread, in a log line
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            shown = type(url).__name__ if parts is None else \
                f"{parts.scheme}://..." if parts.scheme else "(a URL with no scheme)"
            raise ConfigError("WebhookSink url", shown, "WebhookSink()", "expected an http:// or "
                              "https:// URL with a host (the URL is not shown: it is a credential)")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
                or not math.isfinite(timeout) or timeout <= 0:
            raise ConfigError("WebhookSink timeout", timeout, "WebhookSink()",
                              "expected a positive number of seconds")
        self.url = url
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.timeout = timeout
        self.payload = payload or (lambda a: {"text": f"[cascadeflow] {a.kind}: {a.message}",
                                              **a.as_dict()})

    def __call__(self, alert: Alert) -> None:
        # the alert's own text is masked; what the payload function adds (a receiver's
        # credential: Pushover's `token`, PagerDuty's `routing_key`) is the application's to send
        body = json.dumps(dict(self.payload(masked(alert))), default=str).encode()
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read()


class Dispatcher:
    """Delivers alerts to the sinks off the call path, in order, on one daemon thread."""

    def __init__(self, sinks: Iterable[AlertSink], capacity: int = 1000,
                 on_alert: Callable[[Alert], None] | None = None) -> None:
        self.sinks = list(sinks)
        self.dropped = 0
        self.failed = 0
        self.capacity = capacity
        # told of every alert emitted (its `cascadeflow.alerts` count), whoever raised it: the
        # runtime or the ledger, which emits to the dispatcher directly
        self.on_alert = on_alert
        self._closed = False
        self._reset()
        # a forked child has no thread: the parent's, kept as started, took none of its alerts
        # (never delivered, and each flush waited its whole timeout for them). The hook holds
        # the dispatcher weakly: Python never unregisters one
        mine = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_if_alive(mine))

    def _reset(self) -> None:
        """No thread and an empty queue (the parent delivers what it had queued)."""
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=self.capacity)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def emit(self, alert: Alert) -> None:
        """Queue `alert` for the sinks. After `close` (a call that was in flight through
        `init()` or `shutdown()`) it is delivered here, on the caller's thread: a thread started
        again for it was waited for by nobody, and an exit lost its alert."""
        alert = masked(alert)
        if self.on_alert is not None:
            self.on_alert(alert)
        if not self.sinks:
            return
        with self._lock:  # the lock `close` decides under: queued before its end marker, or not at all
            if not self._closed:
                self._start()
                try:
                    self._queue.put_nowait(alert)
                except queue.Full:
                    self.dropped += 1
                return
        self._deliver(alert)

    def _start(self) -> None:
        """Start the thread (the caller holds `_lock`)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cascadeflow-alerts", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            try:
                if alert is None:
                    return
                self._deliver(alert)
            finally:
                self._queue.task_done()

    def _deliver(self, alert: Alert) -> None:
        for sink in self.sinks:
            try:
                sink(alert)
            except Exception:  # a broken sink must not stop the others
                self.failed += 1
                log.exception("cascadeflow alert sink %r failed", sink)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued alerts are delivered; False when `timeout` passed first."""
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._queue.unfinished_tasks

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (at most `timeout` seconds), then stop. Alerts still queued
        then (a sink that hangs) are counted in `dropped` and logged, never silently lost. An
        alert emitted meanwhile is queued before the thread's end marker and delivered before
        this returns; one emitted later is delivered on its caller's thread."""
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
            marked = False
            if thread is not None:
                with contextlib.suppress(queue.Full):
                    self._queue.put_nowait(None)
                    marked = True
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(deadline - time.monotonic(), 0.0))
        left = max(self._queue.qsize() - marked, 0)  # (the end marker, if the thread never took it)
        if left:
            self.dropped += left
            log.error("cascadeflow: %d alert(s) not delivered within %.1fs at shutdown "
                      "(a sink is hanging)", left, timeout)


def _reset_if_alive(dispatcher: weakref.ref[Dispatcher]) -> None:
    """A forked child's dispatcher starts with an empty queue and no thread (if it still exists)."""
    alive = dispatcher()
    if alive is not None:
        alive._reset()
