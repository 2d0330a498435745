"""Token counts that work offline: tiktoken with the encodings litellm ships.

Counting is exact tiktoken where needed; `upper_bound` gives a free bound (UTF-8 bytes) that
byte-level BPE can never exceed, so most budget checks never tokenize at all.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

MESSAGE_OVERHEAD = 3  # role and separators per chat message (OpenAI's counting recipe)
REPLY_PRIMING = 3
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")
_lock = threading.Lock()
_SEQUENCES = (list, tuple)  # a constant: `list | tuple` would build a union object on every call


def litellm_tokenizer_dir() -> Path | None:
    """The folder of tiktoken files bundled with litellm, found without importing litellm."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    return folder if folder.is_dir() else None


def ensure_offline_tokenizers() -> None:
    """Point TIKTOKEN_CACHE_DIR at litellm's bundled encodings unless the user chose a folder."""
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return
    folder = litellm_tokenizer_dir()
    if folder is not None:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)


def encoding_name(model: str) -> str:
    """The tiktoken encoding for a model name (provider prefix ignored)."""
    bare = model.rsplit("/", 1)[-1].lower()
    return "o200k_base" if bare.startswith(_O200K_PREFIXES) else "cl100k_base"


@lru_cache(maxsize=4)
def _encoding(name: str) -> Any:
    with _lock:
        ensure_offline_tokenizers()
        import tiktoken

        return tiktoken.get_encoding(name)


def count(text: str, model: str = "") -> int:
    """Exact token count of `text` for `model`'s encoding."""
    if not text:
        return 0
    return len(_encoding(encoding_name(model)).encode(text, disallowed_special=()))


def upper_bound(text: str) -> int:
    """An upper bound on the token count of `text` for any byte-level BPE: its UTF-8 length."""
    return len(text.encode("utf-8", "surrogatepass"))


def message_text(messages: Any) -> str:
    """The text of chat messages or a prompt, joined; non-text parts are skipped."""
    if messages is None:
        return ""
    if isinstance(messages, str):
        return messages
    parts: list[str] = []
    for message in messages if isinstance(messages, _SEQUENCES) else [messages]:
        if isinstance(message, str):
            parts.append(message)
            continue
        content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    parts.append(text)
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if calls:
            for call in calls:
                fn = (call.get("function") if isinstance(call, dict) else None) or {}
                parts.append(str(fn.get("arguments", "")))
    return "\n".join(parts)


def text_bytes(messages: Any) -> int:
    """`upper_bound(message_text(messages))`, without building the joined text: ASCII strings
    (most prompts) know their length, and only the others are encoded."""
    if messages is None:
        return 0
    if isinstance(messages, str):
        return _bytes(messages)
    total = count = 0
    for message in messages if isinstance(messages, _SEQUENCES) else [messages]:
        if type(message) is dict and "tool_calls" not in message:  # the usual chat message
            content = message.get("content")
            if type(content) is str:
                total += len(content) if content.isascii() else _bytes(content)
                count += 1
                continue
        if isinstance(message, str):
            total += _bytes(message)
            count += 1
            continue
        content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
        if isinstance(content, str):
            total += _bytes(content)
            count += 1
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    total += _bytes(text)
                    count += 1
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if calls:
            for call in calls:
                fn = (call.get("function") if isinstance(call, dict) else None) or {}
                total += _bytes(str(fn.get("arguments", "")))
                count += 1
    return total + max(count - 1, 0)  # the newlines `message_text` joins with


def _bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def message_overhead(messages: Any) -> int:
    """Tokens the chat format adds around the message contents."""
    if isinstance(messages, _SEQUENCES):
        return MESSAGE_OVERHEAD * len(messages) + REPLY_PRIMING
    return REPLY_PRIMING
