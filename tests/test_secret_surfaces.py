"""No key format reaches any output surface: one table of keys, every surface.

Each key rides into a run through the prompt (captured content, spans with content), the run's
metadata (summary, saved file), and a provider error text (fallback alerts, webhook bodies,
`on_fallback` events, the `AllProvidersFailed` exception, logs).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import pytest
from cascadeflow.cascade import BreakerSettings, Cascade, RetryPolicy, Tier, stop_after_attempt
from cascadeflow.secrets import FORMATS, MASK, mask, scrub
from cascadeflow.telemetry import Alert, WebhookSink
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import chat_kwargs

# (format, text as it appears, the part that must never be seen)
KEYS = [
    ("private_key",
     "-----BEGIN RSA PRIVATE KEY-----\nMIIEpQIBAAKCAQEAzq9Xb7Qk\n-----END RSA PRIVATE KEY-----",
     "MIIEpQIBAAKCAQEAzq9Xb7Qk"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    ("authorization_header", "Authorization: Token zq8Xk2Lp9Wm4Rt7Yv", "zq8Xk2Lp9Wm4Rt7Yv"),
    ("bearer", "Bearer zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1", "zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1"),
    ("basic_auth", "Basic dXNlcjpodW50ZXIyaHVudGVyMg==", "dXNlcjpodW50ZXIyaHVudGVyMg"),
    ("openai", "sk-proj-zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0", "zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0"),
    ("openai_short", "sk-zq8Xk2Lp9Wm4", "zq8Xk2Lp9Wm4"),
    ("stripe_live", "sk_live_zq8Xk2Lp9Wm4Rt7Yv3Nb", "zq8Xk2Lp9Wm4Rt7Yv3Nb"),
    ("stripe_restricted", "rk_live_zq8Xk2Lp9Wm4Rt7Yv3Nb", "zq8Xk2Lp9Wm4Rt7Yv3Nb"),
    ("groq", "gsk_zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5", "zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5"),
    ("xai", "xai-zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs2Ae8", "zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs2Ae8"),
    ("perplexity", "pplx-zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs2Ae8", "zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs2Ae8"),
    ("huggingface", "hf_zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5", "zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5"),
    ("github_pat", "github_pat_11ABCDEFG0zq8Xk2Lp9Wm4Rt7Yv3Nb6", "11ABCDEFG0zq8Xk2Lp9Wm4Rt7Yv3Nb6"),
    ("github", "ghp_zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs2Ae", "zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs2Ae"),
    ("gitlab", "glpat-zq8Xk2Lp9Wm4Rt7Yv3Nb", "zq8Xk2Lp9Wm4Rt7Yv3Nb"),
    ("slack", "xoxb-1234567890-zq8Xk2Lp9Wm4", "1234567890-zq8Xk2Lp9Wm4"),
    ("google", "AIzaSyzq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs2", "Syzq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs2"),
    ("aws_access_key_id", "AKIAZQ8XK2LP9WM4RT7Y", "AKIAZQ8XK2LP9WM4RT7Y"),
    ("aws_secret_access_key", "aws_secret_access_key = wJalrXUtnFEMIzK7MDENGzbPxRfiCYzq8Xk2Lp9W",
     "wJalrXUtnFEMIzK7MDENGzbPxRfiCYzq8Xk2Lp9W"),
    ("sendgrid", "SG.zq8Xk2Lp9Wm4Rt7Yv3Nb6H.c1Jd5Fg0Qs2Ae8Zx4Cv7Bn1Mk", "c1Jd5Fg0Qs2Ae8Zx4Cv7Bn1Mk"),
    ("npm", "npm_zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs2Ae8", "zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs2Ae8"),
    ("replicate", "r8_zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs", "zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs"),
    ("digitalocean", "dop_v1_" + "a3f9" * 16, "a3f9" * 16),
    ("azure_connection", "AccountKey=zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs2Ae8Zx4Cv7B==",
     "zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs2Ae8Zx4Cv7B"),
    ("url_credentials", "postgres://admin:hunter2zq8X@db.example.com/app", "hunter2zq8X"),
    ("slack_webhook", "https://hooks.slack.com/services/T0ZQ8XK2/B0LP9WM4/zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1",
     "zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1"),
    ("discord_webhook", "https://discord.com/api/webhooks/1234567890/zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs2Ae8",
     "zq8Xk2Lp9Wm4Rt7Yv3Nb6Hc1Jd5Fg0Qs2Ae8"),
    ("url_parameter", "GET https://api.example.com/v1/models?key=zq8Xk2Lp9Wm4Rt7Y&alt=json",
     "zq8Xk2Lp9Wm4Rt7Y"),
    ("password", "password=hunter2zq8Xk2", "hunter2zq8Xk2"),
    ("api_key", "api_key=zq8Xk2Lp9Wm4Rt7Y", "zq8Xk2Lp9Wm4Rt7Y"),
    ("token", "access_token: zq8Xk2Lp9Wm4Rt7Y", "zq8Xk2Lp9Wm4Rt7Y"),
    ("client_secret", "client_secret=zq8Xk2Lp9Wm4Rt7Y", "zq8Xk2Lp9Wm4Rt7Y"),
]


def test_keys_named_like_secrets_and_other_spellings_are_masked() -> None:
    record = scrub({"anthropic_api_key": "zq8Xk2Lp", "bearer_token": "zq8Xk2Lp", "db_password": "zq8Xk2Lp",
                    "max_tokens": 500, "prompt_tokens": 12, "text": "bearer: zq8Xk2Lp9Wm4Rt7Yv3"})
    assert record == {"anthropic_api_key": MASK, "bearer_token": MASK, "db_password": MASK, "max_tokens": 500,
                      "prompt_tokens": 12, "text": f"bearer: {MASK}"}
    # prose with `=`, `?` and `&` is not a URL's query
    for prose in ("What is the key=value syntax? Use a=b & c=d.", "https://example.com/search?q=hi&page=3"):
        assert mask(prose) == prose


def test_the_table_covers_every_format_and_at_least_twenty() -> None:
    names = {name.split("_live")[0].split("_restricted")[0].removesuffix("_short") for name, _, _ in KEYS}
    assert {f.name for f in FORMATS} <= names | {"stripe"}
    assert len(KEYS) >= 20


@pytest.mark.parametrize(("kind", "text", "secret"), KEYS, ids=[k[0] for k in KEYS])
def test_no_surface_shows_the_key(provider: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                  kind: str, text: str, secret: str) -> None:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    alerts: list[Alert] = []
    events: list[dict[str, Any]] = []
    caplog.set_level(logging.DEBUG, logger="cascadeflow")
    cascadeflow.init(mode="enforce", capture_content=True, budget_alert=0.01,
                     tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader]),
                     alerts=[alerts.append, WebhookSink(provider.url + "/hooks")])
    provider.inject(model="gpt-4o", status=503, message=f"upstream rejected the request: {text}")
    params = {"api_base": provider.url, "api_key": "sk-test-0000000000000000"}
    failing = Cascade([Tier("openai/gpt-4o", params=params)], name="only",
                      retry=RetryPolicy(stop=stop_after_attempt(1)), on_fallback=events.append)
    with cascadeflow.run(budget=0.001, metadata={"note": f"ticket about {text}"}) as session:
        litellm.completion(**chat_kwargs(provider, f"please rotate this key: {text} today"))
        with pytest.raises(cascadeflow.AllProvidersFailed) as failed:
            failing.complete(messages=[{"role": "user", "content": "hi"}])
    cascadeflow.shutdown()  # delivers alerts and webhooks, flushes spans
    assert session.trace()[0]["content"], "content capture must be on for this test to mean anything"
    surfaces = {
        "trace": json.dumps(session.trace()),
        "summary": json.dumps(session.summary()),
        "saved file": session.save(tmp_path / "trace.jsonl").read_text(),
        "findings file": session.export_findings(tmp_path / "findings.jsonl").read_text(),
        "logs": caplog.text,
        "spans": json.dumps([dict(s.attributes or {}) for s in exporter.get_finished_spans()]),
        "span events": json.dumps([str(e.attributes) for s in exporter.get_finished_spans()
                                   for e in s.events]),
        "metrics": reader.get_metrics_data().to_json() if reader.get_metrics_data() else "",
        "alerts": json.dumps([a.as_dict() for a in alerts], default=str),
        "webhooks": json.dumps([r.body.decode() for r in provider.requests if r.path.endswith("/hooks")]),
        "on_fallback": json.dumps(events),
        "exception": str(failed.value) + json.dumps(failed.value.attempts, default=str),
    }
    assert any(r.path.endswith("/hooks") for r in provider.requests)  # the webhook did go out
    leaks = [name for name, value in surfaces.items() if secret in value]
    assert not leaks, f"{kind} key visible in: {leaks}"


def test_an_endpoint_with_credentials_never_shows_them(provider: Any, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A tier's api_base may carry a user and password: the breaker guarding it is keyed by
    the endpoint, and its transitions reach alerts, metrics, the trace and logs."""
    secret = "hunter2zq8X"
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    alerts: list[Alert] = []
    caplog.set_level(logging.DEBUG, logger="cascadeflow")
    cascadeflow.init(mode="enforce", tracer_provider=tracer_provider,
                     meter_provider=MeterProvider(metric_readers=[reader]), alerts=[alerts.append])
    provider.inject(model="gpt-4o", status=503)
    base = provider.url.replace("http://", f"http://admin:{secret}@")
    params = {"api_base": base, "api_key": "sk-test-0000000000000000"}
    cascade = Cascade([Tier("openai/gpt-4o", params=params),
                       Tier("openai/gpt-4o-mini", params=params)], name="creds",
                      retry=RetryPolicy(stop=stop_after_attempt(1)),
                      breaker=BreakerSettings(failure_threshold=1))
    with cascadeflow.run() as session:
        cascade.complete(messages=[{"role": "user", "content": "hi"}])
    cascadeflow.shutdown()
    assert any(a.kind == "breaker_open" for a in alerts)  # the transition was reported
    surfaces = {
        "trace": json.dumps(session.trace()),
        "logs": caplog.text,
        "spans": json.dumps([dict(s.attributes or {}) for s in exporter.get_finished_spans()]),
        "metrics": reader.get_metrics_data().to_json() if reader.get_metrics_data() else "",
        "alerts": json.dumps([a.as_dict() for a in alerts], default=str),
        "summary": json.dumps(session.summary()),
    }
    assert "breaker" in surfaces["metrics"]
    leaks = [name for name, value in surfaces.items() if secret in value]
    assert not leaks, f"the endpoint's password is visible in: {leaks}"


def test_metadata_added_after_the_run_opened_is_masked_in_summary_and_saved_file(tmp_path: Path) -> None:
    """`session.metadata` is the application's dict: keys it gains after `run()` opened (a token
    read later, an auth header) were shown as they are by `summary()` and written by `save()`."""
    key = "sk-proj-" + "a1B2c3D4" * 5
    with cascadeflow.run(metadata={"ticket": 7}) as session:
        session.metadata["upstream"] = f"called with {key}"
        session.metadata["authorization"] = "Bearer 0123456789abcdef0123456789abcdef"
    summary = session.summary()["metadata"]
    assert summary == {"ticket": 7, "upstream": f"called with {mask(key)}", "authorization": MASK}
    saved = session.save(tmp_path / "trace.jsonl").read_text()
    assert key not in saved and "0123456789abcdef0123456789abcdef" not in saved
