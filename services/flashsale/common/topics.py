"""Kafka topic names; every event of one entity is keyed by that entity's id."""

USERS = "flashsale.users"
PRODUCTS = "flashsale.products"
SALES = "flashsale.sales"
ORDERS = "flashsale.orders"
ALL = (USERS, PRODUCTS, SALES, ORDERS)


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
