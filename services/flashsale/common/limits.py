"""Bounds of a sale's terms, shared by the sales service and its clients (the gateway, the operator)."""

MAX_PRICE_CENTS = 10**10
MAX_STOCK = 10**7
MAX_PER_USER_LIMIT = 1000
MAX_PARTITIONS = 256
