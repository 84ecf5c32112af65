"""Runs every registered mode on one workload in this process tree, prints the report, writes reports/bench.json.

`python -m flashsale_tools.bench [options]` (what `make bench` runs through scripts/bench.sh). Exit status 1 only
when a registered mode failed or oversold; modes that are not registered are printed as not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rich import console as rich_console
from rich import table

from flashsale.common import collector
from flashsale_tools.bench import core, registry, report

log = logging.getLogger(__name__)


async def run_modes(
    workload: core.Workload, env: core.BenchEnv, modes: Sequence[core.Mode], con: rich_console.Console | None = None
) -> tuple[dict[str, core.ModeResult], dict[str, str]]:
    """Run modes one after the other; return (results, failures) keyed by mode letter."""
    results: dict[str, core.ModeResult] = {}
    failures: dict[str, str] = {}
    for mode in modes:
        spec = report.BY_LETTER[mode.letter]
        if con is not None:
            con.print(f"({spec.letter}) {spec.title} …")
        began = time.monotonic()
        try:
            result = await mode.run(workload, env)
        except Exception as exc:
            log.exception("mode %s failed", mode.letter)
            failures[mode.letter] = f"{type(exc).__name__}: {exc}"
            if con is not None:
                con.print(f"    [red]failed[/red]: {exc}")
            continue
        results[mode.letter] = result
        if con is not None:
            con.print(f"    {result.rate_per_s:,.0f}/s, oversold {result.oversold} ({time.monotonic() - began:.1f}s)")
    return results, failures


def _fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def render(
    con: rich_console.Console,
    workload: core.Workload,
    results: report.Results,
    failures: dict[str, str],
    registered: set[str],
) -> None:
    """Print every mode (rate, p99, oversold or why it has none), the ratios and the targets."""
    modes = table.Table(title=f"Flashsale benchmark — {workload}")
    for column in ("mode", "design", "rate /s", "p99 ms", "oversold", "notes"):
        modes.add_column(column, justify="right" if column in ("rate /s", "p99 ms", "oversold") else "left")
    for spec in report.SPECS:
        result = results.get(spec.letter)
        if result is not None:
            notes = ", ".join(f"{k}={v}" for k, v in result.notes.items())
            if result.accepted is not None:
                notes = f"accepted={result.accepted}, {notes}"
            oversold = str(result.oversold) if result.oversold == 0 else f"[red]{result.oversold}[/red]"
            modes.add_row(spec.letter, spec.title, _fmt(result.rate_per_s), _fmt(result.p99_ms, 2), oversold, notes)
        elif spec.letter in failures:
            modes.add_row(spec.letter, spec.title, "[red]failed[/red]", "", "", failures[spec.letter])
        else:
            why = "not selected" if spec.letter in registered else "not registered"
            modes.add_row(spec.letter, spec.title, "not measured", "", "", why)
    con.print(modes)

    measured = report.ratios(results)
    ratio_table = table.Table(title="ratios")
    ratio_table.add_column("ratio")
    ratio_table.add_column("value", justify="right")
    for top, bottom in report.RATIOS:
        name = report.ratio_name(top, bottom)
        ratio_table.add_row(name, _fmt(measured.get(name), 2) if name in measured else "not measured")
    con.print(ratio_table)

    target_table = table.Table(title="targets")
    for column in ("target", "goal", "measured", "status"):
        target_table.add_column(column)
    for name, status in report.targets(results).items():
        met = status["met"]
        shown = "not measured" if met is None else ("[green]met[/green]" if met else "[red]not met[/red]")
        value = status["value"]
        target_table.add_row(
            name, f"{status['op']} {status['threshold']:g}", "—" if value is None else f"{value:,.2f}", shown
        )
    con.print(target_table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options (shared by `python -m flashsale_tools.bench` and a `flashsale bench` subcommand)."""
    defaults = core.Workload()
    parser.add_argument("--stock", type=int, default=defaults.stock)
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--purchases", type=int, default=defaults.purchases)
    parser.add_argument("--quantity", type=int, default=defaults.quantity)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="database modes")
    parser.add_argument("--redis-connections", type=int, default=defaults.redis_connections)
    parser.add_argument("--in-flight", type=int, default=defaults.in_flight, help="gRPC modes")
    parser.add_argument(
        "--redis-ceiling-requests",
        type=int,
        default=defaults.redis_ceiling_requests,
        help="Redis runs stock and purchases scaled up to at least this many requests",
    )
    parser.add_argument("--only", default="", help="comma-separated mode letters to run (default: all registered)")
    parser.add_argument("--report", default="reports/bench.json")
    parser.add_argument("--work-dir", default="", help="folder for the servers' data (default: a temporary one)")
    parser.add_argument(
        "--profile-dir",
        default="",
        help="(h) also sample every process of the purchase path with py-spy in one more closed loop; the "
        "collapsed stacks and a summary of where each process's CPU went are written here",
    )
    parser.add_argument(
        "--platform-env",
        action="append",
        default=[],
        metavar="FLASHSALE_NAME=VALUE",
        help="(h) a setting of the platform it starts (repeatable), e.g. "
        "FLASHSALE_KAFKA_EVENT_BATCH_WAIT_MS=0 for an A/B",
    )


def workload_of(args: argparse.Namespace) -> core.Workload:
    """The workload of parsed arguments (ValueError naming the bad option)."""
    return core.Workload(
        stock=args.stock,
        users=args.users,
        purchases=args.purchases,
        quantity=args.quantity,
        concurrency=args.concurrency,
        redis_connections=args.redis_connections,
        in_flight=args.in_flight,
        redis_ceiling_requests=args.redis_ceiling_requests,
    )


def platform_env(pairs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """--platform-env's FLASHSALE_NAME=VALUE pairs (ValueError naming the bad one)."""
    parsed = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith("FLASHSALE_"):
            raise ValueError(f"--platform-env: {pair!r} is not FLASHSALE_NAME=VALUE")
        parsed.append((name, value))
    return tuple(parsed)


def selected(only: str) -> list[core.Mode]:
    """The registered modes to run: all, or those whose letters are listed (comma-separated)."""
    letters = {letter.strip() for letter in only.split(",") if letter.strip()}
    unknown = letters - set(report.BY_LETTER)
    if unknown:
        raise ValueError(f"--only: unknown mode letters {', '.join(sorted(unknown))}")
    return [mode for mode in registry.MODES if not letters or mode.letter in letters]


async def _measure(
    workload: core.Workload, modes: Sequence[core.Mode], args: argparse.Namespace, con: rich_console.Console
) -> tuple[dict[str, core.ModeResult], dict[str, str]]:
    profile_dir = Path(args.profile_dir) if args.profile_dir else None
    with (
        tempfile.TemporaryDirectory(prefix="flashsale-bench-") as tmp,
        core.BenchEnv(
            Path(args.work_dir or tmp), profile_dir=profile_dir, platform_env=platform_env(args.platform_env)
        ) as env,
    ):
        return await run_modes(workload, env, modes, con)


def run_cli(args: argparse.Namespace) -> int:
    """Run the benchmark for parsed arguments, print the report, write the JSON; return the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "mail.log"):  # a request or an e-mail line per shopper onboarded by (h)
        logging.getLogger(chatty).setLevel(logging.WARNING)
    con = rich_console.Console(width=None if sys.stdout.isatty() else 160)
    try:
        workload = workload_of(args)
        modes = selected(args.only)
        platform_env(args.platform_env)
    except ValueError as exc:
        con.print(f"[red]bad argument[/red]: {exc}")
        return 2
    collector.tune()  # the modes that run Flashsale's code in this process run it as its processes do
    results, failures = asyncio.run(_measure(workload, modes, args, con))
    render(con, workload, results, failures, {mode.letter for mode in registry.MODES})
    path = Path(args.report)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.build_report(results), indent=2) + "\n")
    con.print(f"report written to {path}")
    absent = report.missing(results)
    if absent:
        con.print("not measured (no key in the report): " + ", ".join(f"{s.letter} {s.key}" for s in absent))
    code = report.exit_code(results, failures)
    if code:
        why = [f"{letter} failed: {reason}" for letter, reason in failures.items()]
        why += [f"{letter} oversold {r.oversold}" for letter, r in results.items() if r.oversold > 0]
        con.print("[red]FAILED[/red]: " + "; ".join(why))
    return code


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m flashsale_tools.bench`."""
    parser = argparse.ArgumentParser(prog="flashsale bench", description=__doc__)
    add_arguments(parser)
    sys.exit(run_cli(parser.parse_args(argv)))
