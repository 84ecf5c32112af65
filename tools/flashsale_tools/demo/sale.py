"""`flashsale demo`: start the platform, run one flash sale with simulated shoppers, report, stop."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
from rich import console as rich_console
from rich import progress, table

from flashsale.common import timeutil
from flashsale_tools.demo import report
from flashsale_tools.platform import shoppers, supervisor
from flashsale_tools.verify import reader, rules

log = logging.getLogger(__name__)


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.UTC).isoformat().replace("+00:00", "Z")


def _bar(con: rich_console.Console) -> progress.Progress:
    return progress.Progress(
        progress.TextColumn("{task.description}"),
        progress.BarColumn(),
        progress.MofNCompleteColumn(),
        progress.TimeElapsedColumn(),
        console=con,
    )


async def run_sale(
    platform: supervisor.LocalPlatform, args: argparse.Namespace, con: rich_console.Console
) -> dict[str, Any]:
    """The demo sale itself, against a running platform."""
    # idle connections are dropped by the client well before the gateway's keep-alive timeout closes them,
    # so a request never goes out on a connection the server is closing
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300, keepalive_expiry=2.0)
    admin = {"X-Admin-Key": platform.admin_key}
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=60.0, limits=limits) as client:
        product = shoppers._check(
            await client.post(
                "/v1/products",
                json={"name": "Limited sneaker", "description": "Demo drop", "base_price_cents": 19900},
                headers=admin,
            ),
            "create product",
            201,
        )
        run_id = int(time.time())
        crowd = [
            shoppers.Shopper(f"shopper{i}-{run_id}@demo.flashsale.local", f"pw-{i}-secret!")
            for i in range(args.shoppers)
        ]
        gate = asyncio.Semaphore(64)

        async def onboard(s: shoppers.Shopper) -> None:
            async with gate:
                await shoppers.onboard(client, platform.mail, s)

        with _bar(con) as bar:
            task = bar.add_task("register, verify by e-mail, log in", total=len(crowd))
            for fut in asyncio.as_completed([onboard(s) for s in crowd]):
                await fut
                bar.advance(task)

        starts = time.time() + 2.0
        sale = shoppers._check(
            await client.post(
                "/v1/sales",
                json={
                    "product_id": product["product_id"],
                    "price_cents": 9900,
                    "stock": args.stock,
                    "per_user_limit": args.limit,
                    "starts_at": _iso(starts),
                    "ends_at": _iso(starts + 600),
                },
                headers=admin,
            ),
            "create sale",
            201,
        )
        sale_id = str(sale["sale_id"])
        await asyncio.sleep(max(0.0, starts - time.time()))
        attempts: list[shoppers.Attempt] = []
        with _bar(con) as bar:
            task = bar.add_task(f"{len(crowd)} shoppers buy at {_iso(starts)}", total=len(crowd))
            async with shoppers.crowd_session(platform.gateway_url) as session:
                for pending in asyncio.as_completed([shoppers.buy(session, sale_id, s) for s in crowd]):
                    attempts.append(await pending)
                    bar.advance(task)

        by_email = {s.email: s for s in crowd}
        accepted = [a for a in attempts if a.outcome == "ACCEPTED"]
        to_pay = int(len(accepted) * args.pay_fraction)

        async def settle(index: int, attempt: shoppers.Attempt) -> str:
            shopper = by_email[attempt.user]
            order = await shoppers.order_of(client, shopper, attempt.request_id)
            if index < to_pay:
                paying = await client.post(
                    f"/v1/orders/{order['order_id']}/pay", json={"payment_token": "tok_visa"}, headers=shopper.headers
                )
                shoppers._check(paying, "pay")
                return "PAID"
            await shoppers.wait_for_status(client, shopper, order["order_id"], "EXPIRED", args.payment_window + 30)
            return "EXPIRED"

        con.print(f"paying {to_pay} of {len(accepted)} orders; the others expire after {args.payment_window}s")
        endings = await asyncio.gather(*(settle(i, a) for i, a in enumerate(accepted)))
        paid, expired = endings.count("PAID"), endings.count("EXPIRED")
        stats = await _wait_released(client, sale_id, args.stock, sum(a.quantity for a in accepted[:to_pay]))
        snapshot = await asyncio.to_thread(reader.read_snapshot, platform.settings(), sale_id)
        checked = rules.check(snapshot, now_ms=timeutil.now_ms(), sale_finished=True, orders_settled=True)
        result = report.build_report(
            stock=args.stock, limit=args.limit, attempts=attempts, paid=paid, expired=expired, server_stats=stats
        )
        result["checker"] = checked.to_dict()
        return result


async def _wait_released(client: httpx.AsyncClient, sale_id: str, stock: int, paid_quantity: int) -> dict[str, Any]:
    """Wait until the stock of expired orders is back in the sale, and return the sale's counters."""
    deadline = time.monotonic() + 30
    while True:
        stats = shoppers._check(await client.get(f"/v1/sales/{sale_id}/stats"), "sale stats")
        if int(stats.get("remaining", -1)) == stock - paid_quantity or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.25)


def _print(con: rich_console.Console, result: dict[str, Any], path: Path) -> None:
    grid = table.Table(title="Flashsale demo report")
    grid.add_column("metric")
    grid.add_column("value", justify="right")
    for key in (
        "stock",
        "sold",
        "paid",
        "expired",
        "rejected",
        "errors",
        "oversold",
        "per_user_violations",
        "p50_ms",
        "p99_ms",
    ):
        grid.add_row(key, str(result[key]))
    con.print(grid)
    broken = [f"{v['name']} ({v['count']})" for v in result["checker"]["violations"] if v["count"]]
    con.print("invariant checker: " + (", ".join(broken) if broken else "every invariant holds"))
    con.print(f"report written to {path}")


def main(args: argparse.Namespace) -> int:
    """Run the demo; exit status 0 when the sale kept every invariant."""
    logging.basicConfig(level=logging.WARNING)
    con = rich_console.Console()
    data_dir = Path(args.data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    options = supervisor.PlatformOptions(
        data_dir=data_dir,
        backend="postgres" if args.postgres else "sqlite",
        extra_env=(
            ("FLASHSALE_PAYMENT_WINDOW_S", str(args.payment_window)),
            ("FLASHSALE_EXPIRY_SCAN_S", "0.5"),
            ("FLASHSALE_GATEWAY_RATE_LIMIT_PER_S", "100000"),
            ("FLASHSALE_GATEWAY_RATE_BURST", "100000"),
            ("FLASHSALE_LOG_LEVEL", "WARNING"),
        ),
    )
    con.print("starting the platform (Kafka, services, gateway)…")
    with supervisor.LocalPlatform(options) as platform:
        con.print(f"platform up: gateway {platform.gateway_url}")
        try:
            result = asyncio.run(run_sale(platform, args, con))
        except shoppers.ShopperError as exc:
            con.print(f"[red]demo failed:[/red] {exc} (service logs in {data_dir / 'logs'})")
            return 1
    path = Path(args.report)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    _print(con, result, path)
    ok = (
        result["oversold"] == 0
        and result["per_user_violations"] == 0
        and 0 < result["sold"] <= result["stock"]
        and result["checker"]["ok"]
    )
    return 0 if ok else 1
