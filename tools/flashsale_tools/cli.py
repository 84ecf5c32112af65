"""The `flashsale` command: run one service, the whole local platform, or the demo sale."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from flashsale_operator import cli as sale_cli
from flashsale_tools.bench import runner as bench_runner
from flashsale_tools.loadtest import cli as loadtest_cli
from flashsale_tools.verify import cli as verify_cli

if TYPE_CHECKING:
    from flashsale_tools.platform import supervisor

PROCESSES = ("user", "product", "sales", "order", "notification", "gateway", "operator")


def _run(args: argparse.Namespace) -> int:
    package = "flashsale_operator" if args.service == "operator" else f"flashsale.{args.service}"
    bootstrap = importlib.import_module(f"{package}.bootstrap")
    bootstrap.main()  # exits 2 naming the variable on a bad setting
    return 0


def _up(args: argparse.Namespace) -> int:
    from flashsale_tools.platform import observed, supervisor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    data_dir = Path(args.data_dir)
    with contextlib.ExitStack() as stack:
        watching = stack.enter_context(observed.Observed(data_dir / "observe")) if args.observe else None
        options = supervisor.PlatformOptions(
            data_dir=data_dir,
            backend="postgres" if args.postgres else "sqlite",
            gateway_port=args.port,
            extra_env=tuple(watching.env().items()) if watching else (),
            sales_workers=args.sales_workers,
        )
        platform = stack.enter_context(supervisor.LocalPlatform(options))
        if watching:
            watching.watch(platform)
        print(f"Flashsale is up: gateway {platform.gateway_url} (OpenAPI at {platform.gateway_url}/openapi.json)")
        print(f"  admin key (X-Admin-Key): {platform.admin_key}")
        print(f"  Kafka: {platform.kafka.bootstrap_servers}; SMTP sink: 127.0.0.1:{platform.mail.port}")
        scraped = ", ".join(f"{name} :{port}" for name, port in platform.metrics_ports.items())
        print(f"  metrics (/metrics): {scraped}, gateway {platform.gateway_url}/metrics")
        print(f"  e-mails caught: {platform.data_dir / 'mail'} (a Maildir); SMS: {platform.data_dir / 'sms'}")
        settings_file = _write_settings(platform)
        print(f"  its settings: {settings_file} (set -a; . {settings_file}; set +a), e.g. for a load test:")
        print(
            f"    flashsale loadtest --via gateway --gateway-url {platform.gateway_url} "
            f"--mail-dir {platform.data_dir / 'mail'}"
        )
        if watching:
            print(f"  Prometheus: {watching.prometheus.url} (alert rules loaded; every process scraped each second)")
            print(f"  traces: Jaeger query API {watching.jaeger.query_url}/api/traces?service=flashsale-gateway")
        print(f"  logs: {platform.data_dir / 'logs'}; Ctrl-C to stop")
        while not stop.wait(1.0):
            dead = [name for name, alive in platform.running().items() if not alive]
            if dead:
                print(f"stopping: {', '.join(dead)} exited (see the logs)", file=sys.stderr)
                return 1
    print("Flashsale stopped")
    return 0


def _write_settings(platform: supervisor.LocalPlatform) -> Path:
    """The platform's FLASHSALE_* settings as a file a shell can source (readable by its owner only: the keys)."""
    path = platform.data_dir / "platform.env"
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    own = sorted((k, v) for k, v in platform.env().items() if k.startswith("FLASHSALE_"))
    path.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in own))
    return path


def _demo(args: argparse.Namespace) -> int:
    from flashsale_tools.demo import sale

    return sale.main(args)


def _bench(args: argparse.Namespace) -> int:
    from flashsale_tools.bench import runner

    return runner.run_cli(args)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="flashsale", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run_p = sub.add_parser(
        "run", help="run one service or the FlashSale operator in the foreground (configured by FLASHSALE_* variables)"
    )
    run_p.add_argument("service", choices=PROCESSES)
    run_p.set_defaults(func=_run)

    up_p = sub.add_parser("up", help="run Kafka and every service locally until Ctrl-C")
    up_p.add_argument("--postgres", action="store_true", help="store on PostgreSQL instead of SQLite")
    up_p.add_argument("--data-dir", default="var/platform", help="folder for data and logs")
    up_p.add_argument("--port", type=int, default=8080, help="gateway port")
    up_p.add_argument("--observe", action="store_true", help="also run Prometheus and Jaeger, every process sending")
    up_p.add_argument("--sales-workers", type=int, default=0, help="sales worker processes (0: the sales process)")
    up_p.set_defaults(func=_up)

    sale_p = sub.add_parser("sale", help="drive a FlashSale manifest against the local platform (no Kubernetes)")
    sale_cli.add_arguments(sale_p)
    sale_p.set_defaults(func=sale_cli.run)

    verify_p = sub.add_parser("verify", help="check every invariant of one sale (exit 1 on a violation)")
    verify_cli.add_arguments(verify_p)
    verify_p.set_defaults(func=verify_cli.run)

    bench_p = sub.add_parser("bench", help="benchmark the purchase designs on one workload (reports/bench.json)")
    bench_runner.add_arguments(bench_p)
    bench_p.set_defaults(func=_bench)

    load_p = sub.add_parser(
        "loadtest", help="a spike of simulated shoppers, then the checker and a report (JSON + PNG)"
    )
    loadtest_cli.add_arguments(load_p)
    load_p.set_defaults(func=loadtest_cli.run)

    demo_p = sub.add_parser("demo", help="start the platform, run a demo flash sale, print a report, stop")
    demo_p.add_argument("--postgres", action="store_true", help="store on PostgreSQL instead of SQLite")
    demo_p.add_argument("--data-dir", default="var/demo", help="folder for data and logs")
    demo_p.add_argument("--shoppers", type=int, default=1000)
    demo_p.add_argument("--stock", type=int, default=100)
    demo_p.add_argument("--limit", type=int, default=1)
    demo_p.add_argument("--pay-fraction", type=float, default=0.6, help="share of orders paid; the rest expire")
    demo_p.add_argument("--payment-window", type=float, default=10.0, help="seconds an order waits for payment")
    demo_p.add_argument("--report", default="reports/demo.json")
    demo_p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `flashsale` console script."""
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
