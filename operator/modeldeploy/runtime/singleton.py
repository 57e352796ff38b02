"""One lazily created instance per operator process, for what must outlive a reconcile.

The notifier's queue and the webhook runner's results are process state: reconciles in
different kopf threads must share the one instance, and it is made on first use rather than at
import so that importing the runtime (tests, the CLI) starts no thread.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def process_singleton(factory: Callable[[], T]) -> Callable[[], T]:
    """Decorate a factory so that every call returns the instance its first call made.

    A lock, not `functools.cache`: two threads calling at once must not both run the factory
    (that would make two queues, one of them never drained).

    >>> @process_singleton
    ... def numbers() -> list[int]:
    ...     return []
    >>> numbers() is numbers()
    True
    """
    lock = threading.Lock()
    made: list[T] = []

    @functools.wraps(factory)
    def shared() -> T:
        with lock:
            if not made:
                made.append(factory())
            return made[0]

    return shared
