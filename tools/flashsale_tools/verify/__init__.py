"""`flashsale verify`: read one sale's databases and request topic and check every invariant of the purchase path."""
