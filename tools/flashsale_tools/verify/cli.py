"""`flashsale verify --sale ID`: check every invariant of one sale; exit 1 on any violation, 2 when unable."""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
import time

import psycopg
from rich import console as rich_console
from rich import table

from flashsale.common import errors, timeutil
from flashsale.common import settings as settings_module
from flashsale_tools.verify import model, reader, rules

log = logging.getLogger(__name__)

POLL_S = 0.5


def build_parser() -> argparse.ArgumentParser:
    """The arguments of `flashsale verify`."""
    parser = argparse.ArgumentParser(
        prog="flashsale verify",
        description="Check the invariants of one sale (databases and request topic from FLASHSALE_* variables). "
        "Every check assumes the sale has settled; during a running sale pass --wait-settled.",
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `flashsale verify` to a (sub)parser."""
    parser.add_argument("--sale", required=True, help="sale id")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--wait-settled",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS until no request is pending and every order and release has caught up",
    )
    parser.add_argument(
        "--fairness-tolerance-ms",
        type=int,
        default=rules.DEFAULT_FAIRNESS_TOLERANCE_MS,
        help="how much earlier a rejected request must have arrived to count as a fairness inversion",
    )
    parser.add_argument(
        "--order-grace-ms",
        type=int,
        default=rules.DEFAULT_ORDER_GRACE_MS,
        help="how long past its deadline an unpaid order may stay PENDING_PAYMENT",
    )


def _settled_snapshot(source: reader.Reader, sale_id: str, wait_s: float) -> tuple[model.Snapshot, int]:
    deadline = time.monotonic() + wait_s
    while True:
        snapshot = source.snapshot(sale_id)
        now = timeutil.now_ms()
        if wait_s <= 0 or rules.is_settled(snapshot, now_ms=now):
            return snapshot, now
        if time.monotonic() >= deadline:
            log.warning("sale not settled after waiting", extra={"sale_id": sale_id, "wait_s": wait_s})
            return snapshot, now
        time.sleep(POLL_S)


def verify(settings: settings_module.Settings, args: argparse.Namespace) -> rules.Report:
    """Read the sale (waiting for it to settle if asked) and check it as settled."""
    with reader.Reader(settings) as source:
        snapshot, now = _settled_snapshot(source, args.sale, args.wait_settled)
    return rules.check(
        snapshot,
        now_ms=now,
        sale_finished=rules.is_finished(snapshot, now_ms=now),
        orders_settled=True,
        fairness_tolerance_ms=args.fairness_tolerance_ms,
        order_grace_ms=args.order_grace_ms,
    )


def render(con: rich_console.Console, report: rules.Report) -> None:
    """Print the report as a table, one row per invariant."""
    grid = table.Table(title=f"Invariants of sale {report.sale_id}")
    grid.add_column("invariant")
    grid.add_column("count", justify="right")
    grid.add_column("examples")
    grid.add_column("meaning")
    for v in report.violations:
        if not v.applied:
            count = "[dim]n/a[/dim]"
        elif v.count:
            count = f"[bold red]{v.count}[/bold red]"
        else:
            count = "[green]0[/green]"
        grid.add_row(v.name, count, ", ".join(v.examples), v.description)
    con.print(grid)
    pending = "unknown" if report.pending_requests is None else str(report.pending_requests)
    con.print(
        f"stock {report.stock}, held {report.held}, remaining {report.remaining}, pending requests {pending}, "
        f"sale finished: {report.sale_finished}"
    )
    con.print("[green]OK: no violation[/green]" if report.ok else "[bold red]VIOLATIONS FOUND[/bold red]")


def main(argv: list[str] | None = None) -> int:
    """Run `flashsale verify`; 0 when every invariant holds, 1 on a violation, 2 when it could not check."""
    args = build_parser().parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run `flashsale verify` with parsed arguments."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_module.load_settings()
        report = verify(settings, args)
    except settings_module.ConfigError as exc:
        print(f"flashsale verify: configuration error: {exc}", file=sys.stderr)
        return 2
    except errors.DomainError as exc:
        print(f"flashsale verify: {exc.detail()}", file=sys.stderr)
        return 2
    except (errors.TemporaryError, sqlite3.Error, psycopg.Error) as exc:
        print(f"flashsale verify: cannot read the sale: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        render(rich_console.Console(), report)
    return 0 if report.ok else 1
