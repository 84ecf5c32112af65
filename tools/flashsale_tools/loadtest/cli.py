"""`flashsale loadtest`: simulated shoppers against the purchase pipeline, then the checker, then a report
(text, reports/loadtest.json, reports/loadtest.png). Exit 0 only when the checker found no violation."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sqlite3
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from rich import console as rich_console

from flashsale.common import errors
from flashsale.common import settings as settings_module
from flashsale_tools.loadtest import chart, cpu, gateway, profile, report, runner
from flashsale_tools.platform import mailcatcher
from flashsale_tools.verify import reader, rules

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The arguments of `flashsale loadtest`."""
    parser = argparse.ArgumentParser(prog="flashsale loadtest", description=__doc__)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `flashsale loadtest` to a (sub)parser."""
    load = parser.add_argument_group("load")
    load.add_argument("--users", type=int, default=20_000, help="simulated shoppers")
    load.add_argument("--stock", type=int, default=5_000, help="units on sale")
    load.add_argument("--limit", type=int, default=2, help="units one shopper may hold")
    load.add_argument("--partitions", type=int, default=8, help="partitions of the sale's request topic")
    load.add_argument("--reserve", type=int, default=None, help="units in the reserve pool (default: 5%% of stock)")
    load.add_argument("--profile", choices=profile.PROFILES, default="spike", help="how shoppers arrive")
    load.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals for ramp and uniform")
    load.add_argument("--spike-s", type=float, default=1.0, help="seconds within which a spike arrives")
    load.add_argument("--greedy-fraction", type=float, default=0.1, help="shoppers who try to exceed the limit")
    load.add_argument("--retry-fraction", type=float, default=0.05, help="requests sent again with the same id")
    load.add_argument("--unary-fraction", type=float, default=0.01, help="requests sent as waiting unary Purchase")
    load.add_argument("--seed", type=int, default=1, help="seed of the schedule")
    load.add_argument("--tick-ms", type=int, default=10, help="the sender batches the requests due in each tick")
    load.add_argument("--wait-ms", type=int, default=10_000, help="wait_ms of the unary sample")
    load.add_argument("--lead-s", type=float, default=3.0, help="the sale opens this many seconds after it is made")
    load.add_argument("--settle-timeout", type=float, default=300.0, help="seconds to wait for decisions and orders")
    load.add_argument(
        "--fairness-tolerance-ms", type=int, default=rules.DEFAULT_FAIRNESS_TOLERANCE_MS, help="checker tolerance"
    )
    out = parser.add_argument_group("output")
    out.add_argument("--report", default="reports/loadtest.json", help="JSON report path")
    out.add_argument("--chart", default="reports/loadtest.png", help="PNG chart path")
    where = parser.add_argument_group("platform")
    where.add_argument(
        "--via",
        choices=("sales", "gateway"),
        default="sales",
        help="sales: batches straight to the sales service (no users); gateway: shoppers onboarded and buying "
        "through the REST gateway",
    )
    where.add_argument(
        "--gateway-url", default="", help="(--via gateway) target a running platform's gateway, e.g. http://HOST:8080"
    )
    where.add_argument(
        "--mail-dir", default="", help="(--via gateway, running platform) the Maildir its verification e-mails land in"
    )
    where.add_argument(
        "--mail-listen",
        default="",
        metavar="HOST:PORT",
        help="(--via gateway, running platform) receive its verification e-mails here: an SMTP server the platform's "
        "notification service is pointed at (in a cluster: a Service in front of the load-test pod)",
    )
    where.add_argument(
        "--sale",
        default="",
        metavar="SALE_ID",
        help="(--via gateway, running platform) load this existing sale (e.g. a FlashSale's) instead of making one; "
        "its stock, limit and opening come from the sale",
    )
    where.add_argument("--sales-addr", default="", help="target a running platform: sales service HOST:PORT")
    where.add_argument("--product-addr", default="", help="target a running platform: product service HOST:PORT")
    where.add_argument(
        "--wait-orders", action="store_true", help="(running platform) wait for every order and check them too"
    )
    where.add_argument("--postgres", action="store_true", help="(own platform) store on PostgreSQL")
    where.add_argument("--data-dir", default="var/loadtest", help="(own platform) folder for data and logs")


def settings_from_env(env: Mapping[str, str]) -> settings_module.Settings:
    """Settings from a FLASHSALE_* environment given as a mapping (e.g. LocalPlatform.env())."""
    prefix = settings_module.ENV_PREFIX
    values = {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
    return settings_module.Settings.model_validate(values)


def _spec(args: argparse.Namespace) -> profile.LoadSpec:
    return profile.LoadSpec(
        users=args.users,
        limit=args.limit,
        profile=args.profile,
        duration_s=args.duration,
        spike_s=args.spike_s,
        greedy_fraction=args.greedy_fraction,
        retry_fraction=args.retry_fraction,
        unary_fraction=args.unary_fraction,
        seed=args.seed,
    )


def _terms(args: argparse.Namespace) -> runner.SaleTerms:
    reserve = args.stock // 20 if args.reserve is None else args.reserve
    if args.stock < 1:
        raise errors.InvalidArgument("must be at least 1", "stock")
    if not 0 <= reserve <= args.stock:
        raise errors.InvalidArgument("must be between 0 and the stock", "reserve")
    if not 1 <= args.partitions <= 256:
        raise errors.InvalidArgument("must be between 1 and 256", "partitions")
    if args.tick_ms < 1:
        raise errors.InvalidArgument("must be at least 1", "tick_ms")
    if not 0 <= args.wait_ms <= 30_000:
        raise errors.InvalidArgument("must be between 0 and 30000", "wait_ms")
    lead = max(1.0, args.lead_s)
    open_s = lead + max(args.duration, args.spike_s) + 600.0
    return runner.SaleTerms(args.stock, args.limit, args.partitions, reserve, lead_s=lead, open_s=open_s)


def _config(args: argparse.Namespace, terms: runner.SaleTerms, target: str) -> dict[str, Any]:
    return {
        "users": args.users,
        "stock": terms.stock,
        "limit": terms.limit,
        "partitions": terms.partitions,
        "reserve": terms.reserve,
        "profile": args.profile,
        "duration_s": args.duration,
        "spike_s": args.spike_s,
        "greedy_fraction": args.greedy_fraction,
        "retry_fraction": args.retry_fraction,
        "unary_fraction": args.unary_fraction,
        "seed": args.seed,
        "tick_ms": args.tick_ms,
        "via": args.via,
        "target": target,
    }


def _listen_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise errors.InvalidArgument("must be HOST:PORT", "mail_listen")
    return host, int(port)


def _inbox(args: argparse.Namespace, stack: contextlib.ExitStack) -> mailcatcher.Inbox:
    if args.mail_dir:
        return mailcatcher.MaildirInbox(Path(args.mail_dir))
    host, port = _listen_address(args.mail_listen)
    catcher = mailcatcher.MailCatcher(port, host=host)
    catcher.start()
    stack.callback(catcher.stop)
    return catcher


def _running_gateway(
    args: argparse.Namespace,
    con: rich_console.Console,
    terms: runner.SaleTerms,
    spec: profile.LoadSpec,
    options: dict[str, Any],
) -> tuple[runner.Outcome, str, runner.SaleTerms]:
    settings = _checker_settings()
    admin_key = os.environ.get("FLASHSALE_ADMIN_API_KEY", "")
    with contextlib.ExitStack() as stack:
        inbox = _inbox(args, stack)  # a missing Maildir or a taken address is said first
        if args.sale:  # a sale that is missing or over is said before onboarding; its limit is the one planned for
            spec = dataclasses.replace(spec, limit=gateway.existing_sale(args.gateway_url, args.sale).terms.limit)
        elif not admin_key:
            raise settings_module.ConfigError(
                "FLASHSALE_ADMIN_API_KEY: must be set to make the sale (the gateway's key)"
            )
        shop = gateway.GatewayTarget(args.gateway_url, admin_key, inbox, settings, args.wait_orders, args.sale)
        outcome, loaded = gateway.run(shop, terms, spec, con, **options)
    return outcome, f"running gateway at {args.gateway_url}", loaded


def _execute(
    args: argparse.Namespace, con: rich_console.Console, terms: runner.SaleTerms, spec: profile.LoadSpec
) -> tuple[runner.Outcome, str, runner.SaleTerms]:
    options = dict(
        tick_ms=args.tick_ms,
        wait_ms=args.wait_ms,
        settle_timeout_s=args.settle_timeout,
        fairness_tolerance_ms=args.fairness_tolerance_ms,
    )
    gateway_options = {k: options[k] for k in ("tick_ms", "settle_timeout_s", "fairness_tolerance_ms")}
    if args.gateway_url:
        return _running_gateway(args, con, terms, spec, gateway_options)
    if args.sales_addr:
        target = runner.Target(args.sales_addr, args.product_addr, _checker_settings(), args.wait_orders)
        return runner.run(target, terms, spec, con, **options), f"running platform at {args.sales_addr}", terms
    from flashsale_tools.platform import supervisor

    data_dir = Path(args.data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    backend = "postgres" if args.postgres else "sqlite"
    unlimited = (("FLASHSALE_GATEWAY_RATE_LIMIT_PER_S", "1000000"), ("FLASHSALE_GATEWAY_RATE_BURST", "1000000"))
    platform_options = supervisor.PlatformOptions(
        data_dir=data_dir,
        backend=backend,
        extra_env=(("FLASHSALE_LOG_LEVEL", "WARNING"), *(unlimited if args.via == "gateway" else ())),
    )  # one load-test client is every shopper's address: the per-address budget would throttle it alone
    con.print("starting the platform (Kafka, services, gateway)…")
    with supervisor.LocalPlatform(platform_options) as platform:
        env = platform.env()
        settings = settings_from_env(env)
        con.print(f"platform up ({backend}); logs in {data_dir / 'logs'}")
        if args.via == "gateway":
            own = gateway.GatewayTarget(platform.gateway_url, platform.admin_key, platform.mail, settings, True)
            outcome, _ = gateway.run(own, terms, spec, con, **gateway_options)
            return outcome, f"own platform ({backend}) via gateway", terms
        target = runner.Target(settings.sales_addr, settings.product_addr, settings, wait_orders=True)
        meter = cpu.Meter({**platform.pids(), "loadtest": os.getpid()})  # every part runs on this machine
        outcome = runner.run(target, terms, spec, con, **options, meter=meter)
        return outcome, f"own platform ({backend})", terms


def _checker_settings() -> settings_module.Settings:
    """The settings of a running platform the checker reads (FLASHSALE_* here), its databases opened now: what is
    missing is said before any request is sent."""
    settings = settings_module.load_settings()
    with reader.Reader(settings):
        pass
    return settings


def run(args: argparse.Namespace) -> int:
    """Run `flashsale loadtest` with parsed arguments: 0 when the checker found no violation, 1 when it found
    one (or a request taken was never decided), 2 when the load test could not run."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    con = rich_console.Console()
    if bool(args.sales_addr) != bool(args.product_addr):
        print("flashsale loadtest: --sales-addr and --product-addr go together", file=sys.stderr)
        return 2
    running = (args.gateway_url, args.mail_dir, args.mail_listen, args.sale)
    inboxes = bool(args.mail_dir) + bool(args.mail_listen)
    if any(running) and not (args.via == "gateway" and args.gateway_url and inboxes == 1):
        print(
            "flashsale loadtest: --gateway-url goes with one of --mail-dir and --mail-listen (and --sale, if given), "
            "with --via gateway",
            file=sys.stderr,
        )
        return 2
    try:
        terms = _terms(args)
        spec = _spec(args)
        outcome, target, terms = _execute(args, con, terms, spec)
    except errors.DomainError as exc:
        print(f"flashsale loadtest: {exc.detail()}", file=sys.stderr)
        return 2
    except settings_module.ConfigError as exc:
        print(f"flashsale loadtest: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing Maildir, an address already taken
        print(f"flashsale loadtest: {exc}", file=sys.stderr)
        return 2
    except (
        runner.LoadTestError,
        errors.TemporaryError,
        sqlite3.Error,
        psycopg.Error,
        RuntimeError,
        TimeoutError,
    ) as exc:
        print(f"flashsale loadtest: {exc}", file=sys.stderr)
        return 2
    result = report.build(
        _config(args, terms, target),
        outcome.summary,
        outcome.check,
        outcome.log,
        orders_settled=outcome.orders_settled,
        cpu=outcome.cpu,
    )
    path = Path(args.report)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    chart.draw(result, Path(args.chart))
    report.render(con, result)
    con.print(f"report: {path}; chart: {args.chart}")
    return 0 if report.passed(result) else 1


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run."""
    return run(build_parser().parse_args(argv))
