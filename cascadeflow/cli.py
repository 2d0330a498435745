"""The `cascadeflow` command: one subcommand per job, each registered by its own `add_*` function.

`demo` runs the triage demo, `trace` prints a saved session, `report` writes the HTML review of
saved sessions and the ledger, `recommend` proposes limits from them and `ledger` reads and
trims the ledger.
Bad input is a one-line error naming the argument, the value and where it came from, with exit
status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from cascadeflow import ledger_cli, report
from cascadeflow.console import absent_from, print_summary, print_trace, trace_filter
from cascadeflow.demo.run import main as run_demo
from cascadeflow.errors import CascadeflowError, ConfigError
from cascadeflow.report.recommend import propose, to_toml
from cascadeflow.session import LoadedSession

Handler = Callable[[argparse.Namespace], int]


class UsageError(CascadeflowError, ValueError):
    """Bad input that is no one argument's value: `report` with nothing to read, `demo --live`
    without the key it needs."""

DESCRIPTION = """\
Review and govern the LLM calls of an application that runs cascadeflow: read the sessions it
saved and the ledger it writes, and propose the limits to enforce.

Run `cascadeflow COMMAND --help` for a command's arguments. Bad input is a one-line error and
exit status 2."""


def add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="run the support-triage demo (built-in provider, no keys)")
    demo.add_argument("--live", action="store_true", help="use a real provider (OPENAI_API_KEY)")
    demo.add_argument("--out-dir", type=Path, default=Path(".cascadeflow") / "demo",
                      help="where the demo saves its two runs and their report (%(default)s)")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    if args.live and not os.environ.get("OPENAI_API_KEY"):  # before the banner, as bad input is
        raise UsageError("--live needs OPENAI_API_KEY in the environment")
    try:  # before the demo starts: a file in the way is a one-line error, not a traceback
        args.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("--out-dir", str(args.out_dir), "the command line",
                          f"cannot make this folder: {exc.strerror}") from None
    run_demo(live=args.live, out_dir=args.out_dir)
    return 0


def add_trace(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    show = sub.add_parser("trace", help="print a session saved with session.save(path)")
    show.add_argument("path", metavar="FILE")
    show.add_argument("--agent", help="only the entries of this agent")
    show.add_argument("--action", help="only this action (stop, switch_model, deny_tool, ...)")
    show.add_argument("--reason", help="only this reason code (max_steps_reached, ...)")
    show.set_defaults(handler=_trace)


def _trace(args: argparse.Namespace) -> int:
    """Check and print one run at a time: a file of thousands of runs never sits in memory, and
    `| head` sees the first run at once."""
    wanted = {"agent": args.agent, "reason": args.reason}
    keep = trace_filter(args.path, agent=args.agent, action=args.action, reason=args.reason)
    present: dict[str, set[str]] = {key: set() for key, value in wanted.items() if value is not None}
    runs = shown = 0
    for record in report.SavedSessions(Path(args.path), "FILE").runs():
        report.read_run(record, "FILE")  # the checks the report makes: a bad value is a one-line error
        runs += 1
        loaded = LoadedSession(dict(record.summary), [dict(e) for e in record.entries])
        for key, values in present.items():
            values.update(str(e[key]) for e in record.entries if e.get(key) is not None)
        if keep is not None and not any(keep(e) for e in record.entries):
            continue  # a file of many runs: only those with a matching entry
        shown += 1
        summary = loaded.summary()
        print(json.dumps({k: summary.get(k) for k in ("run_id", "mode", "steps", "cost_total",
                                                       "outcome")}))
        print_trace(loaded, sys.stdout, keep)
        if summary.get("budget") is not None and keep is None:
            print_summary(loaded, sys.stdout)
    if not runs:
        raise ConfigError("FILE", args.path, "the command line", "holds no saved session")
    if not shown and keep is not None:
        absent_from(present, wanted, args.path)  # a typo must not look like an empty trace
        _none_match(args)
    return 0


def _none_match(args: argparse.Namespace) -> None:
    """Each value is in the file but no entry has them all (or the action is on none): an
    error, not an empty trace that exits 0."""
    given = [(f"--{key}", value) for key in ("agent", "action", "reason")
             if (value := getattr(args, key)) is not None]
    if len(given) == 1:
        raise ConfigError(given[0][0], given[0][1], args.path, "no trace entry has this action")
    shown = " and ".join(f"{flag}={value!r}" for flag, value in given)
    raise ConfigError(given[0][0], given[0][1], args.path,
                      f"no trace entry matches {shown} together")


def _add_sources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="*", metavar="SOURCES",
                        help="files written by session.save(path) (several per file is fine), or "
                             "folders; none: the ledger the config file names")
    parser.add_argument("--ledger", nargs="?", const="", metavar="PATH",
                        help="read the ledger as well: this file, or without PATH the config's "
                             "[ledger] path (then after SOURCES: a source right after it is its PATH)")
    parser.add_argument("--config", metavar="PATH", help="the config file that names the ledger "
                        "(default: CASCADEFLOW_CONFIG, ./cascadeflow.toml, pyproject.toml)")
    parser.add_argument("--since", help="runs started since: 24h, 7d, 2w, an ISO date (UTC) or an epoch")
    parser.add_argument("--user", help="only this user's runs")
    parser.add_argument("--agent", help="only runs this agent took part in")
    parser.add_argument("--project", help="only this project's runs")


def _runs(args: argparse.Namespace) -> tuple[list[report.Run], list[str], report.RunFilter]:
    keep = report.RunFilter(since=None if args.since is None else report.parse_since(args.since),
                            user=args.user, agent=args.agent, project=args.project)
    sources = report.saved_sessions(args.sources)
    if args.ledger is not None or not args.sources:
        sources.append(_ledger(args, keep))
    return report.load_runs(sources, keep), [s.name for s in sources], keep


def _ledger(args: argparse.Namespace, keep: report.RunFilter) -> report.LedgerRuns:
    """The ledger of --ledger PATH, else the config's: with no SOURCES either, the report reads
    the ledger the application writes."""
    try:
        target = ledger_cli.locate(args.ledger or None, args.config)
    except ConfigError as exc:
        if args.ledger is None and exc.setting == "ledger.path":
            raise UsageError(f"nothing to read: pass a file written by session.save(path) (or a "
                           f"folder of them) or --ledger PATH ({_no_ledger(exc.source)})") from None
        raise
    return report.LedgerRuns(target.spec.path, keep, target.setting, target.where)


def _no_ledger(where: str) -> str:
    """Why the config gave no ledger: no config file, or one without [ledger] path."""
    return where if where.startswith("no ") else f"{where.removeprefix('file ')} names no [ledger] path"


def add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rep = sub.add_parser("report", help="write a single-file HTML review of saved sessions or the ledger")
    _add_sources(rep)
    rep.add_argument("-o", "--output", type=Path, default=Path("report.html"),
                     help="the HTML file to write (%(default)s)")
    rep.add_argument("--detail", type=int, default=report.DETAIL_RUNS,
                     help="runs shown step by step (%(default)s)")
    rep.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    runs, names, keep = _runs(args)
    page = report.render(report.build(runs, names, keep, args.detail))
    try:
        args.output.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise CascadeflowError(f"cannot write -o {args.output}: {exc.strerror}") from None
    print(f"{len(runs)} runs reviewed: {args.output.resolve()}")
    return 0


def add_recommend(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rec = sub.add_parser("recommend", help="propose budget / max_steps / max_tool_calls as TOML")
    _add_sources(rec)
    rec.add_argument("--percentile", type=float, default=95.0, help="of observed use (%(default)s)")
    rec.add_argument("--headroom", type=float, default=0.2,
                     help="added above the percentile, as a fraction (%(default)s)")
    rec.set_defaults(handler=_recommend)


def _recommend(args: argparse.Namespace) -> int:
    runs, names, _keep = _runs(args)
    if not runs:
        raise CascadeflowError(f"no runs to recommend from in {', '.join(names)} (check the filters)")
    bounded = sum(1 for run in runs if run.dropped)
    print(to_toml(propose(runs, args.percentile, args.headroom), args.percentile, args.headroom, names,
                  bounded), end="")
    return 0


def add_ledger(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ledger_cli.add_parser(sub)
    sub.choices["ledger"].set_defaults(handler=ledger_cli.main)


COMMANDS = (add_demo, add_trace, add_report, add_recommend, add_ledger)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cascadeflow", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        status = handler(args)
        sys.stdout.flush()  # a reader gone (`| head`) shows here, not at interpreter exit
        return status
    except CascadeflowError as exc:
        print(f"cascadeflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of our output closed it: stop quietly
        _silence_stdout()
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what is still buffered for
    the closed pipe raises nothing either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
