"""Domain errors of the runtime: an API call that failed, with what was being done.

A handler never sleeps and never loops on a failure: reconcile turns a refused write into a
Degraded condition (core/failures.py) and the scheduler waits a backoff before trying again.
Spec problems are not errors at all (they become a Degraded condition too).
"""

from __future__ import annotations

import json
from typing import Any


def api_answer(cause: Any) -> str:
    """What the API server said: the Status message of its reply (which names the field it
    refused, e.g. `Deployment.apps "x" is invalid: spec...: Invalid value`), else the HTTP
    reason, else the error itself.

    >>> class Refused:
    ...     status, reason = 422, "Unprocessable Entity"
    ...     body = '{"kind": "Status", "message": "spec.replicas: Invalid value"}'
    >>> api_answer(Refused())
    'spec.replicas: Invalid value'
    >>> api_answer("timed out")
    'timed out'
    """
    body = getattr(cause, "body", None)
    if body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError):
            message = None
        if isinstance(message, str) and message:
            return message
    return str(getattr(cause, "reason", None) or cause)


class KubeError(Exception):
    """An API call failed; the message says what was being done and what the server said."""

    def __init__(self, doing: str, cause: Any) -> None:
        status = getattr(cause, "status", None)
        self.answer = api_answer(cause)
        super().__init__(f"{doing}: {status or ''} {self.answer}".strip().rstrip(":"))
        self.status = status
