"""Notification service: e-mail, SMS and live streams of what happens to a user's account and orders."""
