"""The model signatures the signature gate compares, read from the revisions' pods (the
deciding is pure, modeldeploy.core.gate).

One Ready pod's `GET /v2/models/NAME` answer per revision, through the API server's pod proxy
(runtime/served.py, as `modeldeploy check-model --against` reads it). A revision's model does
not change under it, so what was read is kept per revision for the life of the process and
asked for once: the stable revision's signature serves every candidate that follows it.

A read that fails is handled so that the gate never wedges a rollout and never crashes:
- the pods ask for credentials (inference auth on: 401; the pod proxy cannot carry a bearer
  token), or answer something that is not OIP metadata: given up at once, the gate skips the
  check and says so in a Warning Event;
- anything else (no Ready pod yet, a timeout, a pod restarting): asked again after
  `RETRY_AFTER` while the candidate waits without traffic, and given up after `GIVE_UP` seconds
  of failures, with the same skip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from urllib3.exceptions import HTTPError

from modeldeploy.core.gate import Read, SignatureReads, Unreadable
from modeldeploy.core.signature import parse_metadata
from modeldeploy.runtime.errors import KubeError
from modeldeploy.runtime.kube import Kube
from modeldeploy.runtime.served import served_metadata

log = logging.getLogger(__name__)
RETRY_AFTER: Final = 10.0
"""Seconds before a revision whose read failed is asked again."""
AUTH: Final = ("the model server asks for credentials (inference auth is on), which the API "
               "server's pod proxy does not pass on")  # fmt: skip
GIVE_UP: Final = 120.0
"""Seconds of failed reads after which the check is skipped rather than waited for."""


@dataclass
class SignatureReader:
    """Reads and keeps each revision's model signature; remembers failing reads."""

    known: dict[tuple[str, str], Read] = field(default_factory=dict)
    """(namespace, revision) → its signature, or why it cannot be read (given up)."""
    failing_since: dict[tuple[str, str], float] = field(default_factory=dict)
    quiet_until: dict[tuple[str, str], float] = field(default_factory=dict)
    last_error: dict[tuple[str, str], str] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    """Seconds, monotonic (a parameter so a test can move time)."""

    def read(self, kube: Kube, namespace: str, owner: str, stable: str,
             canary: str) -> SignatureReads:  # fmt: skip
        """Both sides, each read at most once (a failing one again after RETRY_AFTER)."""
        before, new_before = self._one(kube, namespace, owner, stable)
        after, new_after = self._one(kube, namespace, owner, canary)
        return SignatureReads(stable, canary, before, after, new=new_before or new_after)

    def _one(self, kube: Kube, namespace: str, owner: str, revision: str) -> tuple[Read, bool]:
        """The revision's read and whether it was settled just now."""
        key = (namespace, revision)
        if key in self.known:
            return self.known[key], False
        now = self.clock()
        if self.quiet_until.get(key, 0.0) > now:
            return Unreadable(self.last_error.get(key, "asking again shortly"), final=False), False
        try:
            answers = served_metadata(kube, namespace, owner, revision)
            read: Read = parse_metadata(answers[0].metadata)
        except KubeError as exc:
            if getattr(exc.__cause__, "status", None) == 401:
                return self._settle(key, Unreadable(AUTH, final=True)), True
            return self._failed(key, str(exc), now)
        except (OSError, HTTPError) as exc:  # the API server unreachable: the same, retried
            return self._failed(key, f"reading the model metadata of {revision}: {exc}", now)
        except ValueError as exc:  # not OIP metadata: an old or foreign image; never retried
            return self._settle(key, Unreadable(str(exc), final=True)), True
        return self._settle(key, read), True

    def _failed(self, key: tuple[str, str], error: str, now: float) -> tuple[Read, bool]:
        since = self.failing_since.setdefault(key, now)
        if now - since >= GIVE_UP:
            said = f"reads failed for {now - since:.0f}s, the last: {error}"
            log.warning("signature check of %s/%s skipped: %s", *key, said)
            return self._settle(key, Unreadable(said, final=True)), True
        log.info("reading the model signature of %s/%s: %s; asking again in %.0fs",
                 *key, error, RETRY_AFTER)  # fmt: skip
        self.quiet_until[key] = now + RETRY_AFTER
        self.last_error[key] = error
        return Unreadable(error, final=False), False

    def _settle(self, key: tuple[str, str], read: Read) -> Read:
        self.known[key] = read
        for kept in (self.failing_since, self.quiet_until, self.last_error):
            kept.pop(key, None)
        if isinstance(read, Unreadable):
            log.warning("signature check of %s/%s skipped: %s", *key, read.reason)
        return read

    def forget_owner(self, namespace: str, owner: str) -> None:
        """Drop what is kept for a deleted ModelDeployment's revisions (NAME-<hash>)."""
        for kept in (self.known, self.failing_since, self.quiet_until, self.last_error):
            for key in [k for k in kept if k[0] == namespace and k[1].startswith(f"{owner}-")]:
                del kept[key]
