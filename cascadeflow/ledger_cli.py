"""`cascadeflow ledger spend|steps|purge|forget`: the ledger's spend, its request log, retention
and deletion by data subject, from the command line.

The ledger is `--ledger PATH`, else `[ledger] path` of the config file (`--config`, else
CASCADEFLOW_CONFIG, else ./cascadeflow.toml or pyproject.toml). Bad input is one line on stderr
naming the argument, its value and where it came from, and exit status 2. A read never creates a
ledger, and no command prints prompt text (`content`) or metadata.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, TextIO

from cascadeflow.config import LedgerSpec, resolve
from cascadeflow.errors import ConfigError
from cascadeflow.ledger import SQLiteStore, StoreUnavailable, jsonl, query
from cascadeflow.report import parse_since
from cascadeflow.windows import parse, time_zone

PERCENTILES = (50, 95, 99)
MAX_LIMIT = 2**63 - 1  # SQLite's largest integer


def add_parser(sub: Any) -> None:
    """Add `ledger` and its subcommands to the `cascadeflow` command's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--ledger", metavar="PATH", help="the ledger file (default: the config's)")
    common.add_argument("--config", metavar="PATH", help="the config file (default: "
                        "CASCADEFLOW_CONFIG, ./cascadeflow.toml, pyproject.toml)")
    common.add_argument("--json", action="store_true", help="JSON for machines, not a table")
    ledger = sub.add_parser("ledger", help="spend, the request log, retention and deletion")
    commands = ledger.add_subparsers(dest="ledger_command", required=True)
    spend = commands.add_parser("spend", parents=[common], help="spend per group per window")
    spend.add_argument("--by", choices=query.GROUPS, default="user")
    spend.add_argument("--window", choices=("day", "month"), default="day")
    spend.add_argument("--since", help="only events since: 7d, 12h, 2026-11-01, an epoch")
    steps = commands.add_parser("steps", parents=[common], help="the filterable request log")
    for name in ("model", "agent", "user", "project", "status"):
        steps.add_argument(f"--{name}")
    steps.add_argument("--error", metavar="TYPE", help="the exception type, e.g. RateLimitError")
    steps.add_argument("--min-latency-ms", type=float, metavar="N")
    steps.add_argument("--since", help="only steps since: 1h, 30m, 2026-11-01, an epoch")
    steps.add_argument("--limit", type=int, default=50, help="steps listed, newest first (50)")
    commands.add_parser("purge", parents=[common], help="apply [ledger.retention]").add_argument(
        "--dry-run", action="store_true", help="count, change nothing")
    forget = commands.add_parser("forget", parents=[common], help="delete a user's records")
    forget.add_argument("--user", required=True)
    forget.add_argument("--dry-run", action="store_true", help="count, change nothing")


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run one `cascadeflow ledger` subcommand: 0 done, 2 bad input, 1 the ledger failed."""
    out = out or sys.stdout
    now = time.time()
    command = args.ledger_command
    try:
        _check_steps(args)
        target = locate(args.ledger, args.config)
        after = _since(args, now)
        reader = _open(target)
    except ConfigError as exc:
        return _fail(exc, 2)
    try:
        if command in READS:
            return READS[command](args, target, reader, after, out)
    except StoreUnavailable as exc:  # locked past the busy timeout, a disk error
        return _fail(exc, 1)
    finally:
        reader.close()
    try:
        store = SQLiteStore(target.spec.path)
    except StoreUnavailable as exc:  # e.g. a ledger on a read-only disk
        return _fail(exc, 1)
    try:
        return WRITES[command](args, target, store, now, out)
    except (StoreUnavailable, OSError) as exc:  # OSError: the metering file (forget)
        return _fail(exc, 1)
    finally:
        store.close()


def _fail(exc: Exception, status: int) -> int:
    print(f"cascadeflow ledger: error: {exc}", file=sys.stderr)
    return status


@dataclass(frozen=True)
class Target:
    """The ledger to open, where its path came from, and the settings that go with it."""

    spec: LedgerSpec
    setting: str  # --ledger | ledger.path
    where: str  # the command line | file PATH
    budgets: tuple[str, ...]  # user-scoped [budgets.NAME]
    limits: tuple[str, ...]  # user-scoped [limits.NAME]


def locate(path: str | None, config: str | None) -> Target:
    """The ledger at `path` (--ledger), else the one the config file names (--config, else
    CASCADEFLOW_CONFIG, ./cascadeflow.toml, pyproject.toml); a ConfigError when there is none."""
    if config is not None and not Path(config).is_file():
        raise ConfigError("--config", config, "the command line", "no such file")
    cfg = resolve({"config": config})
    spec = cfg.ledger
    if path is not None:
        setting, where = "--ledger", "the command line"
        spec = (spec or LedgerSpec()).model_copy(update={"path": path})
    elif spec is not None:
        setting, where = "ledger.path", f"file {cfg.config_file}"
    else:
        where = f"file {cfg.config_file}" if cfg.config_file else "no config file found"
        raise ConfigError("ledger.path", None, where, "no ledger configured: pass --ledger PATH, "
                          "or a config file with a [ledger] section (--config, CASCADEFLOW_CONFIG, "
                          "./cascadeflow.toml)")
    return Target(spec, setting, where,
                  tuple(n for n, b in cfg.budgets.items() if b.scope == "user"),
                  tuple(n for n, lim in cfg.limits.items() if lim.scope == "user"))


def _open(target: Target) -> query.ReadOnly:
    """The ledger, read-only: never created, never a write lock (purge and forget then open it
    for writing)."""
    try:
        return query.ReadOnly(Path(target.spec.path))
    except ValueError as exc:
        raise ConfigError(target.setting, target.spec.path, target.where, str(exc)) from None


def _check_steps(args: argparse.Namespace) -> None:
    """`steps`' numbers: argparse takes `nan`, `inf` and negatives, which would filter out every
    step or none without a word."""
    latency = getattr(args, "min_latency_ms", None)
    if latency is not None and not (math.isfinite(latency) and latency >= 0):
        raise ConfigError("--min-latency-ms", latency, "the command line",
                          "expected a number of milliseconds, 0 or more")
    limit = getattr(args, "limit", None)
    if limit is not None and not 0 <= limit <= MAX_LIMIT:
        raise ConfigError("--limit", limit, "the command line",
                          f"expected how many steps to list, 0 to {MAX_LIMIT}")


def _since(args: argparse.Namespace, now: float) -> float | None:
    text = getattr(args, "since", None)
    return None if text is None else parse_since(text, now)


# -- the commands ----------------------------------------------------------------------------
def _spend(args: argparse.Namespace, target: Target, store: query.ReadOnly, after: float | None,
           out: TextIO) -> int:
    rows = query.spend(store, args.by, parse(args.window, target.spec.time_zone), after)
    total = {"calls": sum(r.calls for r in rows), "cost": sum(r.cost for r in rows),
             "unpriced": sum(r.unpriced for r in rows)}
    if args.json:
        _json(out, {"by": args.by, "window": args.window, "time_zone": target.spec.time_zone,
                    "since": after, "rows": [asdict(r) for r in rows], "total": total})
        return 0
    _table(out, ("window", args.by, "calls", "stopped", "tokens in", "cached", "uncached",
                 "tokens out", "cost USD", "unpriced"),
           [(r.window, r.group, r.calls, r.stopped, r.tokens_in, r.cached_tokens,
             r.uncached_tokens, r.tokens_out, f"{r.cost:.6f}", r.unpriced) for r in rows])
    print(f"total: {total['calls']} calls, {total['cost']:.6f} USD ({total['unpriced']} unpriced "
          f"calls not in it); windows in {target.spec.time_zone}", file=out)
    return 0


def _steps(args: argparse.Namespace, target: Target, store: query.ReadOnly, after: float | None,
           out: TextIO) -> int:
    filters = query.Filters(args.model, args.agent, args.user, args.project, args.error,
                            args.status, args.min_latency_ms, after)
    rows = query.steps(store, filters, args.limit)
    found = query.matched(store, filters, PERCENTILES)
    count, samples = found.count, found.samples
    ranks = {f"p{p}": v for p, v in zip(PERCENTILES, found.percentiles, strict=True)}
    similar = _similar_models(store, args.model) if args.model is not None and not count else None
    if args.json:
        _json(out, {"steps": rows, "matched": count, "latency_ms": ranks,
                    "latency_samples": samples,
                    **({} if similar is None else {"models_containing": similar})})
        return 0
    zone = time_zone(target.spec.time_zone)
    _table(out, ("time", "run", "step", "user", "agent", "model", "status", "error", "tok in",
                 "tok out", "cost USD", "ms"),
           [(_when(query.as_float(r["ts"]), zone),
             r["run_id"], r["step"], r["user"], r["agent"], r["model"], r["status"], r["error"],
             r["tokens_in"], r["tokens_out"],
             None if r["cost"] is None else f"{query.as_float(r['cost']):.6f}",
             None if r["latency_ms"] is None else f"{query.as_float(r['latency_ms']):.0f}") for r in rows])
    shown = ", ".join(f"P{p} {'-' if v is None else f'{v:.0f}'}" for p, v in zip(
        PERCENTILES, ranks.values(), strict=True))
    print(f"{len(rows)} of {count} matching steps, newest first; times in "
          f"{target.spec.time_zone}\nlatency ms over the {samples} matching steps with one "
          f"(interpolated between ranks): {shown}", file=out)
    if similar is not None:
        _no_such_model(args.model, similar, out)
    return 0


def _when(ts: float, zone: tzinfo) -> str:
    """A step's time in the ledger's zone; a ts no calendar holds (a damaged or imported row,
    in milliseconds) as the number it is."""
    if not query.in_calendar(ts):
        return repr(ts)
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S")


def _similar_models(store: query.Reader, model: str) -> list[str] | None:
    """None when some step has exactly this model (another filter left nothing), else the
    models whose name contains it."""
    found = query.models_containing(store, model)
    return None if found[:1] == [model] else found


def _no_such_model(model: str, similar: Sequence[str], out: TextIO) -> None:
    """`--model` is an exact match: say which models with that name in them the ledger has."""
    found = ", ".join(_cell(m) for m in similar)
    print(f"no step has model {_cell(model)!r} (an exact match); " + (
        f"models in the ledger containing it: {found}" if similar else
        "no model in the ledger contains it"), file=out)


def _purge(args: argparse.Namespace, target: Target, store: SQLiteStore, now: float,
           out: TextIO) -> int:
    keep = target.spec.retention
    cut = query.Retention.of(now, keep.usage_days, keep.content_days, keep.outcome_days)
    counts = query.purge(store, cut, now, args.dry_run)
    return _report(args, out, counts, f"retention: usage events and run entries "
                   f"{keep.usage_days} days, content {keep.content_days} days, outcomes "
                   f"{keep.outcome_days} days; counters, holds, request slots and alert marks "
                   "once their windows have passed")


def _forget(args: argparse.Namespace, target: Target, store: SQLiteStore, now: float,
            out: TextIO) -> int:
    keys = query.user_keys(args.user, target.budgets, target.limits)
    counts = query.forget(store, args.user, keys, args.dry_run)
    notes = [f"counters, holds and slots of the user-scoped budgets {list(target.budgets)} and "
             f"limits {list(target.limits)} in the config"]
    if target.spec.url is not None or target.spec.url_env is not None:
        notes.append("windowed figures in Redis (ledger.url) are not touched: they expire with "
                     "their windows")
    if target.spec.events_jsonl is not None:
        counts["events_jsonl"] = jsonl.forget(target.spec.events_jsonl, args.user, args.dry_run)
        notes.append(f"events_jsonl is {target.spec.events_jsonl}")
    return _report(args, out, counts, "; ".join(notes))


READS = {"spend": _spend, "steps": _steps}
WRITES = {"purge": _purge, "forget": _forget}


# -- output ----------------------------------------------------------------------------------
def _report(args: argparse.Namespace, out: TextIO, counts: dict[str, int], note: str) -> int:
    if args.json:
        _json(out, {"dry_run": args.dry_run, "removed": counts, "note": note})
        return 0
    verb = "would remove" if args.dry_run else "removed"
    _table(out, ("place", f"rows {verb}"), list(counts.items()))
    print(f"({note})", file=out)
    return 0


def _table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Columns padded to their widest cell; numbers to the right."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    right = [bool(rows) and all(_numeric(r[i]) for r in rows) for i in range(len(headers))]
    for line in [list(headers), *cells]:
        print("  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in
                        zip(line, widths, right, strict=True)).rstrip(), file=out)
    if not rows:
        print("(none)", file=out)


def _numeric(value: object) -> bool:
    return value is None or isinstance(value, int | float) or str(value).replace(".", "", 1).isdigit()


def _cell(value: object) -> str:
    """A value as one printable cell: an id with control characters cannot move the cursor."""
    text = "-" if value is None else str(value)
    return text if text.isprintable() else ascii(text)[1:-1]


def _json(out: TextIO, value: object) -> None:
    print(json.dumps(value, indent=2, default=str), file=out)
