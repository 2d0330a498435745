"""Hot reload of the guardrail policy file: an edit is seen whenever the file changed, also
when its mtime did not (a second write within the clock's tick, a sync tool that keeps it), and
after the process changed its working directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cascadeflow.guardrails import PolicyStore

POLICY = 'version = "{version}"\n[profiles.triage]\n[[profiles.triage.input]]\nname = "cards"\n' \
         'detector = "pii"\ntypes = ["credit_card"]\naction = "{action}"\n'


def write(path: Path, version: str, action: str = "redact", mtime_ns: int | None = None) -> None:
    path.write_text(POLICY.format(version=version, action=action))
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_an_edit_that_keeps_the_mtime_is_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    write(path, "v1")
    mtime = path.stat().st_mtime_ns
    errors: list[tuple[str, str]] = []
    store = PolicyStore(path, interval=0, on_error=lambda kind, message: errors.append((kind, message)))
    write(path, "v2-longer", "block", mtime_ns=mtime)  # same mtime, new text
    policy = store.current()
    assert policy.version == "v2-longer" and policy.profiles["triage"].input[0].action == "block"
    write(path, "v3-broken", "nonsense", mtime_ns=mtime)  # rejected, v2 stays
    assert store.current().version == "v2-longer" and [k for k, _m in errors] == ["guardrail_policy_rejected"]
    write(path, "v4-fixed!", mtime_ns=mtime)  # the fix is seen, though the mtime never moved
    assert store.current().version == "v4-fixed!" and store.last_error is None


def test_a_relative_path_is_reloaded_after_the_working_directory_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "conf")
    write(tmp_path / "conf" / "policy.toml", "v1")
    store = PolicyStore(Path("policy.toml"), interval=0)
    monkeypatch.chdir(tmp_path / "elsewhere")
    write(tmp_path / "conf" / "policy.toml", "v2", mtime_ns=10**18)
    assert store.current().version == "v2" and store.last_error is None


def test_an_edit_that_keeps_the_version_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Findings carry the policy's version for the audit; an edit that changed the rules but
    not the version was taken in silently, so findings made under two different policies
    claimed the same one. It is still taken (a running service must get the fix), and said."""
    path = tmp_path / "policy.toml"
    write(path, "v1")
    store = PolicyStore(path, interval=0)
    write(path, "v1", "block")
    with caplog.at_level("WARNING", logger="cascadeflow.guardrails"):
        assert store.current().profiles["triage"].input[0].action == "block"
    assert [r.getMessage() for r in caplog.records
            if "its version" in r.getMessage()] == [
        f"guardrail policy {path} changed but its version 'v1' did not: findings made before and "
        f"after this edit name the same version; give each edit a version of its own"]
    caplog.clear()
    write(path, "v2", "block")  # a new version: nothing to say
    with caplog.at_level("WARNING", logger="cascadeflow.guardrails"):
        assert store.current().version == "v2"
    assert not caplog.records
