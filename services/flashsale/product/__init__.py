"""Product service: catalogue, base prices, sale prices and the live stock display."""
