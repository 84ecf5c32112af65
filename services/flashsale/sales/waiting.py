"""Calls waiting for decisions: resolved from the worker thread or the decision feed, with the database read as a
fallback (a decision's event may be missed while this process's feed joins its group)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Sequence

from flashsale.common import database
from flashsale.sales import decision_store, domain

_REMEMBERED = 200_000
_FIRST_POLL_S = 1.0  # a waiting purchase reads the database after this long without its decision,
_POLL_S = 0.5  # then this often
_WATCH_POLL_S = 0.25


def pending(request: domain.PurchaseRequest) -> domain.Decision:
    """The answer for a request taken but not decided yet."""
    return domain.Decision(
        request.request_id, request.sale_id, request.user_id, request.quantity, domain.Outcome.PENDING, "", 0
    )


class Waiters:
    """Calls waiting for decisions (resolved from other threads) and the request ids taken recently."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: dict[str, list[asyncio.Future[domain.Decision]]] = {}
        self._taken: collections.OrderedDict[str, None] = collections.OrderedDict()

    def taken(self, request_ids: Sequence[str]) -> None:
        """Remember request ids that were appended to a request topic (bounded)."""
        for rid in request_ids:
            self._taken[rid] = None
        while len(self._taken) > _REMEMBERED:
            self._taken.popitem(last=False)

    def was_taken(self, request_id: str) -> bool:
        """True when this process appended the request id recently."""
        return request_id in self._taken

    def wait(self, request_id: str) -> asyncio.Future[domain.Decision]:
        """A future resolved with the request's decision."""
        fut: asyncio.Future[domain.Decision] = self._loop.create_future()
        self._waiting.setdefault(request_id, []).append(fut)
        return fut

    def forget(self, request_id: str, fut: asyncio.Future[domain.Decision]) -> None:
        """Stop waiting (after a timeout)."""
        futs = self._waiting.get(request_id, [])
        if fut in futs:
            futs.remove(fut)
        if not futs:
            self._waiting.pop(request_id, None)

    def anyone_waiting(self) -> bool:
        """True while a call waits for a decision (safe to ask from any thread)."""
        return bool(self._waiting)

    def resolve_from_thread(self, decided: list[domain.Decision]) -> None:
        """Hand decisions over from another thread (the worker's publisher, the decision feed)."""
        if self._waiting:
            self._loop.call_soon_threadsafe(self._resolve, decided)

    def _resolve(self, decided: list[domain.Decision]) -> None:
        for decision in decided:
            for fut in self._waiting.pop(decision.request_id, []):
                if not fut.done():
                    fut.set_result(decision)


class Decisions:
    """Waits for decisions: handed over by the Waiters, or read from the database."""

    def __init__(self, db: database.Database, waiters: Waiters) -> None:
        self._db = db
        self.waiters = waiters

    async def stored(self, request_id: str) -> domain.Decision | None:
        """The decision of a request id in the database, or None."""
        return await self._db.run(lambda tx: decision_store.get(tx, request_id))

    async def wait_for(
        self, request_id: str, fut: asyncio.Future[domain.Decision], within_s: float
    ) -> domain.Decision | None:
        """The decision once handed over, else, after a second, read from the database every half second in case
        its event was missed; None when not decided within `within_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        step = min(_FIRST_POLL_S, within_s)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(fut), step)
                found = await self.stored(request_id)
                if found is not None:
                    return found
                left = deadline - loop.time()
                if left <= 0:
                    return None
                step = min(_POLL_S, left)
        finally:
            self.waiters.forget(request_id, fut)

    async def watch(
        self, request_id: str, found: domain.Decision | None, within_s: float
    ) -> AsyncIterator[domain.Decision]:
        """PENDING (when undecided), then the decision once it is made; polls as a fallback for other writers."""
        if found is not None:
            yield found
            return
        yield domain.Decision(request_id, "", "", 0, domain.Outcome.PENDING, "", 0)
        deadline = asyncio.get_running_loop().time() + within_s
        while asyncio.get_running_loop().time() < deadline:
            fut = self.waiters.wait(request_id)
            with contextlib.suppress(TimeoutError):
                yield await asyncio.wait_for(asyncio.shield(fut), _WATCH_POLL_S)
                return
            self.waiters.forget(request_id, fut)
            decided = await self.stored(request_id)
            if decided is not None:
                yield decided
                return
