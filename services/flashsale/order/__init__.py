"""Order service: orders from accepted purchases, payment, expiry and history."""
