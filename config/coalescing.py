"""Work that many changes of one transaction each ask for, done once after its commit.

The domain signals are sent after commit, one per change (`pipeline.services`), and each deal signal asks for a
metrics refresh. A batch of 200 writes in one transaction would ask 200 times: 200 round trips to Redis, and as
many refresh tasks as a worker manages to start meanwhile. Inside `coalescing_commit_hooks()` those asks are
gathered by `once` and run once, after the last on-commit callback of the block; `gather` collects the items of
work done for each change (the webhook events of 200 deals) and hands them over in one list, so that they are
written set-based. Nothing here knows what the work is: receivers name it (`forecasting.receivers`,
`pipeline.webhooks.receivers`), so this module imports no app.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)

# The work gathered while the on-commit callbacks of a coalescing block run, by key; None outside one.
_gathered: ContextVar[dict[str, Callable[[], Any]] | None] = ContextVar("coalesced_work", default=None)


def once(key: str, work: Callable[[], Any]) -> None:
    """Run `work` now; or, while the on-commit callbacks of a `coalescing_commit_hooks()` block run, once after the
    last of them, however many callbacks ask for the same `key` (the first `work` given for it is run)."""
    gathered = _gathered.get()
    if gathered is None:
        work()
    else:
        gathered.setdefault(key, work)


class _Gathering:
    """The items `gather` collected for one key, and the work that takes them all."""

    def __init__(self, work: Callable[[list], Any]):
        self.work = work
        self.items: list = []

    def __call__(self) -> Any:
        return self.work(self.items)


def gather(key: str, item: Any, work: Callable[[list], Any]) -> None:
    """Run `work([item])` now; or, while the on-commit callbacks of a `coalescing_commit_hooks()` block run, once
    after the last of them with every item given for `key`, in the order given (the first `work` is run)."""
    gathered = _gathered.get()
    if gathered is None:
        work([item])
        return
    gathering = gathered.get(key)
    if not isinstance(gathering, _Gathering):
        gathering = gathered.setdefault(key, _Gathering(work))
    gathering.items.append(item)


@contextmanager
def coalescing_commit_hooks() -> Iterator[None]:
    """Inside an atomic block: the on-commit callbacks registered within the block run with `once` gathering, and
    the work they gathered runs once right after them. Both brackets are on-commit callbacks of the block's own
    transaction level, so a rollback of that level drops them with the callbacks between them."""
    tokens: list[Token] = []

    def open_gathering() -> None:
        tokens.append(_gathered.set({}))

    def run_gathered() -> None:
        gathered = _gathered.get() or {}
        _gathered.reset(tokens.pop())
        for key, work in gathered.items():
            try:
                work()
            except Exception:  # the writes are committed: work that fails afterwards is logged, never raised
                logger.exception("coalesced work %r failed", key)

    transaction.on_commit(open_gathering, robust=True)
    try:
        yield
    finally:
        transaction.on_commit(run_gathered, robust=True)
