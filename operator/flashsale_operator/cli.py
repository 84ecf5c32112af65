"""`flashsale sale apply|delete -f FILE`: a FlashSale manifest driven against the local platform, no Kubernetes."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from flashsale.common import kafka_security
from flashsale.common import settings as common_settings
from flashsale_operator import decide, local, state
from flashsale_operator import settings as operator_settings
from flashsale_operator.sales_client import SalesClient

UNTIL = {"ready": state.Phase.READY, "active": state.Phase.ACTIVE, "ended": state.Phase.ENDED}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `apply` and `delete` to the `sale` subparser."""
    actions = parser.add_subparsers(dest="sale_command", required=True)
    apply_p = actions.add_parser(
        "apply", help="create, prepare and follow a sale through its phases until it ends (or --until)"
    )
    apply_p.add_argument("-f", "--filename", required=True, type=Path, help="FlashSale manifest (YAML)")
    apply_p.add_argument("--until", choices=sorted(UNTIL), default="ended", help="phase to stop at (default ended)")
    apply_p.add_argument("--state-dir", type=Path, default=Path("var/sales"), help="where the status is kept")
    delete_p = actions.add_parser("delete", help="delete the sale's request topic and forget its status")
    delete_p.add_argument("-f", "--filename", required=True, type=Path, help="FlashSale manifest (YAML)")
    delete_p.add_argument("--state-dir", type=Path, default=Path("var/sales"), help="where the status is kept")


def state_file(state_dir: Path, manifest: local.Manifest) -> local.StateFile:
    """Where a FlashSale's status is kept."""
    return local.StateFile(state_dir / f"{manifest.namespace}.{manifest.name}.json")


async def _main(args: argparse.Namespace) -> int:
    config = common_settings.load_settings()
    own = operator_settings.load_operator_settings()
    manifest = local.read_manifest(args.filename)
    states = state_file(args.state_dir, manifest)
    options = decide.Options(poll_s=own.operator_poll_s, stats_interval_s=own.operator_stats_interval_s)
    sales = SalesClient(config.sales_addr, own.operator_rpc_timeout_s)
    try:
        backend = local.LocalBackend(
            args.filename,
            states,
            sales,
            local.KafkaTopics(config.kafka_bootstrap, kafka_security.client_settings(config)),
            local.print_event(sys.stdout),
        )
        if args.sale_command == "delete":
            await local.delete(backend, states, options)
            print(f"flashsale {manifest.name}: deleted")
            return 0
        final = await local.apply(backend, states, options, frozenset({UNTIL[args.until]}))
    finally:
        await sales.close()
    print(f"flashsale {manifest.name}: {final.phase.value if final.phase else '?'} ({final.message})")
    return 1 if final.phase is state.Phase.FAILED else 0


def run(args: argparse.Namespace) -> int:
    """Run `flashsale sale …`; exit 1 when the sale failed, 2 on bad configuration or manifest."""
    try:
        return asyncio.run(_main(args))
    except (common_settings.ConfigError, local.ManifestError) as exc:
        print(f"flashsale sale: {exc}", file=sys.stderr)
        return 2
