"""Kafka topic names; every event of one entity is keyed by that entity's id."""

USERS = "flashsale.users"
PRODUCTS = "flashsale.products"
SALES = "flashsale.sales"
ORDERS = "flashsale.orders"
ALL = (USERS, PRODUCTS, SALES, ORDERS)


def dead_letter(topic: str) -> str:
    """The dead-letter topic of a topic."""
    return f"{topic}.dlq"
