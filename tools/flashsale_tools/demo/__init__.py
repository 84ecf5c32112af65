"""The demo flash sale: simulated shoppers through the gateway, and the report."""
