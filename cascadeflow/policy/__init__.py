"""The policy engine: pure decisions (allow, stop, switch_model, deny_tool) before each step."""

from cascadeflow.policy.engine import Decision, Engine

__all__ = ["Decision", "Engine"]
