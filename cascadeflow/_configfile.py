"""Reading `cascadeflow.toml` / JSON / `[tool.cascadeflow]`, with errors that name file, key and line."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from cascadeflow.errors import MISSING, ConfigError
from cascadeflow.secrets import MASK, masked_url, secret_key
from pydantic import ValidationError


def has_tool_section(pyproject: Path) -> bool:
    """True when pyproject.toml has a `[tool.cascadeflow]` table (cheap text check first). A
    pyproject.toml that is not UTF-8 cannot hold one (TOML is UTF-8): it is not ours to judge."""
    try:
        text = pyproject.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return False
    return "tool.cascadeflow" in text and "cascadeflow" in parse_toml(text, pyproject).get("tool", {})


def load(path: Path, origin: str) -> dict[str, Any]:
    """Parse the file into a plain dict; `[tool.cascadeflow]` when it is a pyproject.toml."""
    text = read(path, "config", origin)
    data = parse_json(text, path, "config") if path.suffix == ".json" else parse_toml(text, path)
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("cascadeflow", {})
    if not isinstance(data, dict):
        raise ConfigError("config", str(path), f"file {path}", "top level must be a table/object")
    return data


def read(path: Path, setting: str, origin: str) -> str:
    """The file's text; a file that cannot be read or is not UTF-8 is the `setting`'s error. A
    byte order mark (editors on Windows may write one) is dropped: tomllib and json refuse it."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(setting, str(path), origin, f"cannot read: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(setting, str(path), f"file {path} byte {exc.start}",
                          "not UTF-8 text (TOML and JSON files must be UTF-8)") from None


def parse_json(text: str, path: Path, setting: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(setting, str(path), f"file {path} line {exc.lineno}",
                          f"invalid JSON: {exc.msg}") from None


def parse_toml(text: str, path: Path, setting: str = "config") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(setting, str(path), f"file {path}", f"invalid TOML: {exc}") from None


def error_at(exc: ValidationError, path: Path) -> ConfigError:
    """Turn a pydantic error on file data into a ConfigError naming the key and, if found, the line."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    where = place(path, loc)
    problem = err["msg"].removeprefix("Value error, ")
    value = MISSING if err["type"] == "missing" else _shown(err.get("input"), loc)
    return ConfigError(".".join(loc) or "?", value, where, problem)


def _shown(value: Any, loc: list[str]) -> Any:
    """The rejected value as the error shows it: a `url` (its password) masked, on its own or
    in the table it was rejected with; the value of a key named like a secret (`api_key =
    "..."` where `api_key_env` belongs) masked whole, whatever its format. A price per token
    (`input_cost_per_token`) is named like a secret (`..._token`) but is none: it is shown."""
    if loc and secret_key(loc[-1]) and not loc[-1].endswith("_per_token") and value is not None:
        return MASK
    if loc and loc[-1] == "url" and isinstance(value, str):
        return masked_url(value)
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        return {**value, "url": masked_url(value["url"])}
    return value


def place(path: Path, loc: list[str]) -> str:
    """`file PATH line N` of the key at `loc` (without the line when it is not found)."""
    line = find_line(path, loc)
    return f"file {path}" + (f" line {line}" if line else "")


def find_line(path: Path, loc: list[str]) -> int | None:
    """Best-effort line of the key at `loc`: each part is searched after the previous one."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    pos, found = 0, None
    for part in loc:
        if part.isdigit():  # the part-th inline table of the list: skip the ones before it
            for _ in range(int(part) + 1):
                brace = text.find("{", pos)
                if brace == -1:
                    break
                pos = brace + 1
            continue
        # the delimiter after the key is looked at, not taken: `[cascades.classify]` holds both
        pattern = re.compile(r'(^|[\[.\s{,"\'])' + re.escape(part) + r'(?=["\']?\s*(=|\]|\.|:))', re.M)
        match = pattern.search(text, pos)
        if match is None:
            break
        pos, found = match.end(), match.start()
    if found is None:
        return None
    return text.count("\n", 0, found + 1) + 1
