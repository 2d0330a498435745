"""Where the report's runs come from: a source yields run records in the saved-session shape.

A run record is what `Session.save` writes: the session's `summary()` and its `trace()`
entries. Saved sessions are a source today; the ledger becomes one by yielding the same
records, so nothing downstream knows which it read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cascadeflow.errors import CascadeflowError, ConfigError
from cascadeflow.session import iter_saved


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One outermost run: its summary and trace entries as `Session.summary()` / `trace()` give
    them, and `origin`, where it was read (named in errors)."""

    summary: Mapping[str, Any]
    entries: Sequence[Mapping[str, Any]]
    origin: str


class Source(Protocol):
    """Anything that yields runs: saved-session files now, the ledger later."""

    @property
    def name(self) -> str:
        """What the report's header and errors call this source."""

    def runs(self) -> Iterator[RunRecord]: ...


@dataclass(frozen=True, slots=True)
class SavedSessions:
    """Files written by `session.save(path)`, concatenated files, or a folder of `*.jsonl`."""

    path: Path
    argument: str = "SOURCES"  # the command-line argument errors name

    @property
    def name(self) -> str:
        return str(self.path)

    def files(self) -> list[Path]:
        if self.path.is_dir():
            found = sorted(self.path.glob("*.jsonl"))
            if not found:
                raise ConfigError(self.argument, str(self.path), "the command line",
                                  "the folder holds no *.jsonl saved sessions")
            return found
        if not self.path.exists():
            raise ConfigError(self.argument, str(self.path), "the command line",
                              "no such file (expected a file written by session.save(path))")
        return [self.path]

    def runs(self) -> Iterator[RunRecord]:
        for file in self.files():
            try:
                for summary, entries, line in iter_saved(file):
                    yield RunRecord(summary, entries, f"{file} line {line}")
            except CascadeflowError as exc:
                raise ConfigError(self.argument, str(file), "the command line", str(exc)) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(self.argument, str(file), "the command line",
                                  f"cannot read it: {exc}") from None


def saved_sessions(paths: Iterable[str | Path], argument: str = "SOURCES") -> list[Source]:
    """One source per path given on the command line."""
    return [SavedSessions(Path(p), argument) for p in paths]
