"""Argon2id password hashing (blocking: call it from a worker thread)."""

from __future__ import annotations

import argon2

# The OWASP minimum for Argon2id: argon2-cffi's defaults take ~100 ms per hash on the 2-core
# reference machine, which makes a demo registering 1,000 users needlessly slow.
TIME_COST = 2
MEMORY_COST_KIB = 19456
PARALLELISM = 1


class PasswordHasher:
    """Hashes and checks passwords; verification of an unknown account costs as much as a real one."""

    def __init__(
        self, time_cost: int = TIME_COST, memory_cost: int = MEMORY_COST_KIB, parallelism: int = PARALLELISM
    ) -> None:
        self._hasher = argon2.PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
        self._dummy = self._hasher.hash("flashsale-dummy-password")

    def hash(self, password: str) -> str:
        """The encoded Argon2id hash of a password."""
        return self._hasher.hash(password)

    def verify(self, encoded: str | None, password: str) -> bool:
        """Whether a password matches a hash; with no hash, spend the same time and answer False."""
        try:
            return self._hasher.verify(encoded or self._dummy, password) and encoded is not None
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
