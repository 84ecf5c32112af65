"""Exponential backoff between retries of a temporary failure (one helper instead of hand-rolled delays)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Backoff:
    """Delays that double from `first_s` up to `cap_s`; `reset()` after a success starts again from the first."""

    first_s: float = 0.05
    cap_s: float = 2.0
    _next_s: float = dataclasses.field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.cap_s:
            raise ValueError(f"backoff needs 0 < first_s <= cap_s, got {self.first_s} and {self.cap_s}")
        self._next_s = self.first_s

    def next(self) -> float:
        """The delay before the next attempt (each one twice the last, at most cap_s)."""
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self.cap_s)
        return delay

    @property
    def exhausted(self) -> bool:
        """True once the delays reached the cap (a caller may give up there)."""
        return self._next_s >= self.cap_s

    def reset(self) -> None:
        """Start again from the first delay."""
        self._next_s = self.first_s
