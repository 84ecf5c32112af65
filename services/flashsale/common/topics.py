"""Kafka topic names and the event types published on each; every event of one entity is keyed by that entity's id.

The one home of both: docs/architecture.md's event table lists the same."""

USERS = "flashsale.users"
PRODUCTS = "flashsale.products"
SALES = "flashsale.sales"
ORDERS = "flashsale.orders"
ALL = (USERS, PRODUCTS, SALES, ORDERS)
BROKER_DEFAULT_REPLICAS = -1  # a topic the platform creates gets the cluster's default.replication.factor

USER_REGISTERED = "user.registered"
USER_VERIFIED = "user.verified"
PRODUCT_CHANGED = "product.changed"
SALE_CREATED = "sale.created"
SALE_UPDATED = "sale.updated"
PURCHASES_DECIDED = "purchases.decided"
STOCK_RELEASED = "stock.released"
ORDER_CREATED = "order.created"
ORDER_PAID = "order.paid"
ORDER_EXPIRED = "order.expired"
ORDER_CANCELLED = "order.cancelled"

TOPIC_OF = {
    USER_REGISTERED: USERS,
    USER_VERIFIED: USERS,
    PRODUCT_CHANGED: PRODUCTS,
    SALE_CREATED: SALES,
    SALE_UPDATED: SALES,
    PURCHASES_DECIDED: SALES,
    STOCK_RELEASED: SALES,
    ORDER_CREATED: ORDERS,
    ORDER_PAID: ORDERS,
    ORDER_EXPIRED: ORDERS,
    ORDER_CANCELLED: ORDERS,
}
"""The topic each event type is published on."""


def dead_letter(topic: str) -> str:
    """The dead-letter topic of a topic."""
    return f"{topic}.dlq"


REQUEST_PREFIX = "flashsale.sale."
REQUEST_SUFFIX = ".requests"
REQUEST_PATTERN = r"^flashsale\.sale\..+\.requests$"  # every sale's request topic (the sales workers' subscription)


def request_topic(sale_id: str) -> str:
    """The request topic of a sale: its purchases, partitioned by user."""
    return f"{REQUEST_PREFIX}{sale_id}{REQUEST_SUFFIX}"


def sale_of_topic(topic: str) -> str:
    """The sale id of a request topic."""
    if not (topic.startswith(REQUEST_PREFIX) and topic.endswith(REQUEST_SUFFIX)):
        raise ValueError(f"not a request topic: {topic}")
    return topic[len(REQUEST_PREFIX) : -len(REQUEST_SUFFIX)]
