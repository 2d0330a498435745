"""Guardrails: a versioned policy file, PII and prompt-injection detectors, actions, audit."""

from cascadeflow.guardrails.detectors import Detector, Match, PIIDetector, RegexDetector, WordsDetector
from cascadeflow.guardrails.injection import InjectionDetector
from cascadeflow.guardrails.placeholders import Placeholders
from cascadeflow.guardrails.policy import Policy, PolicyStore, Profile, Rule, compile_policy, load
from cascadeflow.guardrails.scan import Finding, Scan, scan_prompt, scan_text, transform

__all__ = ["Detector", "Finding", "InjectionDetector", "Match", "PIIDetector", "Placeholders", "Policy",
           "PolicyStore", "Profile", "RegexDetector", "Rule", "Scan", "WordsDetector", "compile_policy",
           "load", "scan_prompt", "scan_text", "transform"]
