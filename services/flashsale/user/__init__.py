"""User service: accounts, password hashes, e-mail verification and access tokens."""
