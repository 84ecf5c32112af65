"""The payment provider behind PayOrder, and a simulated one for development and tests."""

from __future__ import annotations

import uuid
from typing import Protocol

from flashsale.order import domain

DECLINED_TOKEN = "tok_declined"


class PaymentDeclined(Exception):
    """The provider refused the charge; nothing was charged."""


class PaymentProvider(Protocol):
    """Charges an order's amount with a shopper's payment token."""

    async def charge(self, order: domain.Order, token: str) -> str:
        """Charge the order; return the provider's payment id or raise PaymentDeclined."""
        ...


class SimulatedProvider:
    """Accepts every token except "tok_declined"; payment ids are fresh uuids."""

    async def charge(self, order: domain.Order, token: str) -> str:
        """Charge the order; return the provider's payment id or raise PaymentDeclined."""
        if token == DECLINED_TOKEN:
            raise PaymentDeclined(f"token declined for order {order.order_id}")
        return f"pay_{uuid.uuid4().hex}"
