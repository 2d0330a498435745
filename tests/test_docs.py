"""The Python blocks in docs/ and README.md run as written (each page in one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_doc_page_runs(page: Path) -> None:
    blocks = BLOCK.findall(page.read_text(encoding="utf-8"))
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"{page.name} block {number}", "exec")
        exec(code, namespace)


def test_readme_configuration_keys_are_documented() -> None:
    """Every setting init() accepts appears in the configuration reference."""
    import inspect

    import cascadeflow

    reference = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name in inspect.signature(cascadeflow.init).parameters:
        assert f"`{name}`" in reference, name


TOML = re.compile(r"```toml\n(.*?)```", re.S)


@pytest.mark.parametrize("page", ["configuration.md", "cascades.md", "ledger.md"])
def test_config_examples_are_valid_config(page: str) -> None:
    """Every TOML example of the configuration is a valid cascadeflow.toml (a snippet that shows
    one part of a cascade gets a minimal chain to stand in)."""
    import tomllib

    from cascadeflow.config import FileConfig

    blocks = TOML.findall((ROOT / "docs" / page).read_text(encoding="utf-8"))
    assert blocks
    for block in blocks:
        if "[cascades." in block and "tiers" not in block:
            block = '[cascades.classify]\ntiers = [{ model = "openai/gpt-4o" }]\n' + block
        FileConfig.model_validate(tomllib.loads(block))
