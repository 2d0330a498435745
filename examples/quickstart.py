"""Observe one litellm call and read its trace (built-in provider, no API keys).

Run: python examples/quickstart.py
"""

from __future__ import annotations

import cascadeflow
import litellm
from cascadeflow.testing import serve

report = cascadeflow.init(mode="observe")
print(f"mode={report.mode} instrumented={report.instrumented} sources={report.sources['mode']}")

with serve() as provider, cascadeflow.run(budget=0.50, max_tool_calls=10) as session:
    litellm.completion(model="openai/gpt-4o-mini", api_base=provider.url, api_key="example-key",
                       messages=[{"role": "user", "content": "Classify: I was charged twice"}])

summary = session.summary()
print(f"steps={summary['steps']} cost=${summary['cost_total']:.6f} tokens={summary['tokens_in']}"
      f"/{summary['tokens_out']}")
for entry in session.trace():
    print(entry["step"], entry["action"], entry["reason"], entry["applied"], entry["model"])
cascadeflow.shutdown()
