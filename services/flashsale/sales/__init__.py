"""The sales service: flash sales, their stock, purchase decisions and reservations."""
