"""Domain errors, and the one place that maps them to kopf's retry semantics.

A handler never sleeps: it raises, and kopf retries after the delay the error carries. Spec
problems are not errors at all (they become a Degraded condition), so nothing here loops on a
user's mistake.
"""

from __future__ import annotations

from typing import Any


class KubeError(Exception):
    """An API call failed; the message says what was being done."""

    def __init__(self, doing: str, cause: Any) -> None:
        status = getattr(cause, "status", None)
        reason = getattr(cause, "reason", None) or str(cause)
        super().__init__(f"{doing}: {status or ''} {reason}".strip().rstrip(":"))
        self.status = status

    @property
    def retry_delay(self) -> float:
        """Conflicts and throttling clear quickly; anything else gets a longer backoff."""
        return 1.0 if self.status in (409, 429) else 10.0
