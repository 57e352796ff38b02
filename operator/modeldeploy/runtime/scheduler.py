"""When to reconcile which ModelDeployment: on a watch event, on a time-based step, on resync.

The operator uses no kopf timers (they put a finalizer on every object), so resync is this loop:
every tick it reconciles, each in a task of its own, the objects whose rollout has a step due,
whose last reconcile failed, or whose resync interval has passed. A reconcile is skipped when
the object and its children carry the same resourceVersions as last time and nothing is due,
which keeps an idle operator near zero CPU however many objects it manages.

A reconcile that failed (an error, or writes the API server refused) makes that object wait
`backoff_seconds(failures in a row)` before the next one, whatever events arrive meanwhile
(its own status write is one): a persistent refusal costs one try per delay, doubling from 1 s
to 5 minutes. A change of the user's intent (the generation, or the action annotation) ends the
wait at once.

Only the leader reconciles (runtime/leader.py): `leading` is asked before each reconcile and
on each tick, so a standby tracks every object (warm, for a quick takeover) and writes nothing.
A reconcile cut short because the Lease ran out mid-way (Kube refuses the write: NotLeadingError) is
no failure: no backoff, no Event. When this replica starts leading, `wake_all` has the next
tick reconcile every object, whatever it remembers from an earlier term.

Nothing here knows kopf: the glue (handlers) hands in how to list an object's children, how to
reconcile it and how to post an Event, so the tests run this on a real event loop alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

from modeldeploy.api import ACTION_ANNOTATION
from modeldeploy.core.events import Event
from modeldeploy.core.failures import backoff_seconds
from modeldeploy.runtime import operator_metrics
from modeldeploy.runtime.errors import KubeError
from modeldeploy.runtime.kube import NotLeadingError
from modeldeploy.runtime.reconcile import Reconciled

log = logging.getLogger(__name__)
TICK_SECONDS: Final = 1.0
Key = tuple[str, str]
"""(namespace, name) of a ModelDeployment."""


class Child(NamedTuple):
    """A child as the watch index keeps it: identity, version, and the object as compact JSON.

    JSON text is a tenth of the memory of the same object as Python dicts, and the operator
    holds every child it manages; reconcile parses the few it needs, when it runs."""

    kind: str
    name: str
    version: str
    text: str


def fingerprint(body: dict[str, Any], children: list[Child]) -> tuple[str, ...]:
    """resourceVersions of the object and its children: equal means nothing changed."""
    versions = sorted(f"{c.kind}/{c.name}@{c.version}" for c in children)
    return (str(body["metadata"].get("resourceVersion")), *versions)


def intent(body: dict[str, Any]) -> tuple[str, ...]:
    """What the user last asked of the object: its generation and its action annotation."""
    meta = body["metadata"]
    action = (meta.get("annotations") or {}).get(ACTION_ANNOTATION)
    return (str(meta.get("generation")), str(action))


@dataclass
class Tracked:
    """What the operator remembers of one ModelDeployment between reconciles (nothing that
    matters after a restart: the rollout's state is in its status)."""

    body: dict[str, Any]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    fingerprint: tuple[str, ...] | None = None
    wake_at: datetime | None = None
    last_run: float = 0.0
    failures: int = 0
    """Failed reconciles in a row."""
    retry_at: float = 0.0
    """Monotonic time before which a failed object is not reconciled again."""
    failed_intent: tuple[str, ...] | None = None
    """The user's intent when it failed: a new one ends the wait."""


def _always() -> bool:
    return True


@dataclass
class Scheduler:
    """Runs reconciles, one at a time per object and never more often than needed."""

    reconcile: Callable[[dict[str, Any], list[Child]], Reconciled]
    """Reconciles one object with its children; blocking (it runs in a worker thread)."""
    post_event: Callable[[dict[str, Any], Event], None]
    """Posts an Event about the object; blocking."""
    children: Callable[[Key], list[Child]]
    """The object's children as the watch indexes hold them now."""
    resync_seconds: float
    tick_seconds: float = TICK_SECONDS
    backoff: Callable[[int], float] = backoff_seconds
    """Seconds to wait after this many failed reconciles in a row (core.failures)."""
    leading: Callable[[], bool] = _always
    """Whether this replica may act now (the leader elector's answer)."""
    tracked: dict[Key, Tracked] = field(default_factory=dict)

    def track(self, key: Key, body: dict[str, Any]) -> None:
        """The newest version of an object (a detached copy), from its watch event."""
        self.tracked.setdefault(key, Tracked(body)).body = body

    def forget(self, key: Key) -> None:
        """The object was deleted: reconcile it never again."""
        if self.tracked.pop(key, Tracked({})).failures:
            self._count_backing_off()

    def wake_all(self) -> None:
        """This replica just started leading: reconcile every object on the next tick. What
        it remembers (fingerprints, backoffs) is from before another replica acted."""
        for entry in self.tracked.values():
            entry.fingerprint, entry.last_run = None, float("-inf")
            entry.failures, entry.retry_at, entry.wake_at = 0, 0.0, None
        self._count_backing_off()

    async def run(self, key: Key) -> None:
        """Reconcile one object unless nothing changed since its last reconcile, nothing is
        due, or it is waiting a backoff; then post the Events the reconcile decided on.

        Decided under the object's lock: a run that waited for another one sees what that one
        left (a failure to back off from, a fingerprint), and does not repeat it at once."""
        entry = self.tracked.get(key)
        if entry is None:
            return
        async with entry.lock:
            if not self.leading():
                return  # a standby: the leader reconciles it
            wanted = intent(entry.body)
            if entry.failures and wanted != entry.failed_intent:
                entry.failures, entry.retry_at = 0, 0.0  # the user changed something: try now
            if entry.failures and time.monotonic() < entry.retry_at:
                return  # backing off; the resync loop comes back at wake_at
            children = self.children(key)
            seen = fingerprint(entry.body, children)
            due = entry.wake_at is not None and datetime.now(UTC) >= entry.wake_at
            if entry.fingerprint == seen and not due:
                return
            entry.last_run = time.monotonic()
            try:
                reconciled = await asyncio.to_thread(self.reconcile, entry.body, children)
            except NotLeadingError as exc:
                log.info("reconciling ModelDeployment %s/%s stopped: %s", *key, exc)
                entry.fingerprint = None
                return
            except KubeError as exc:
                log.warning("reconciling ModelDeployment %s/%s: %s", *key, exc)
                self._failed(entry, wanted)
                return
            except Exception:  # a bug: said loudly, once per backoff, never a busy loop
                log.exception("reconciling ModelDeployment %s/%s failed", *key)
                self._failed(entry, wanted)
                return
            try:
                for event in reconciled.events:
                    await asyncio.to_thread(self.post_event, entry.body, event)
            except NotLeadingError:
                entry.fingerprint = None
                return
            if reconciled.failed:
                self._failed(entry, wanted)
                return
            if entry.failures:
                entry.failures = 0
                self._count_backing_off()
            # After writes the next watch events change the fingerprint anyway; remember it
            # only when this reconcile found everything in place.
            entry.fingerprint = None if reconciled.writes else seen
            entry.wake_at = reconciled.wake_at

    def _failed(self, entry: Tracked, wanted: tuple[str, ...]) -> None:
        """Wait before the next try: longer after each failure in a row."""
        entry.failures += 1
        delay = self.backoff(entry.failures)
        entry.retry_at = time.monotonic() + delay
        entry.wake_at = datetime.now(UTC) + timedelta(seconds=delay)
        entry.failed_intent = wanted
        entry.fingerprint = None
        self._count_backing_off()

    def _count_backing_off(self) -> None:
        operator_metrics.BACKING_OFF.set(sum(1 for e in self.tracked.values() if e.failures))

    async def resync_forever(self) -> None:
        """Reconcile what is due: a time-based step, a retry, or the periodic drift check.

        Each due object gets a task of its own, so one slow reconcile (a pod that answers its
        metrics scrape late) delays nobody else's step; an object whose reconcile is still
        running is not queued twice."""
        running: set[asyncio.Task[None]] = set()
        while True:
            await asyncio.sleep(self.tick_seconds)
            if not self.leading():
                continue
            now, clock = datetime.now(UTC), time.monotonic()
            due = [
                key
                for key, entry in self.tracked.items()
                if not entry.lock.locked()
                and (
                    (entry.wake_at is not None and now >= entry.wake_at)
                    or clock - entry.last_run >= self.resync_seconds
                )
            ]
            for key in due:
                self.tracked[key].last_run = clock  # checked now, even if nothing changed
                task = asyncio.create_task(self._resync(key), name=f"resync {key[0]}/{key[1]}")
                running.add(task)
                task.add_done_callback(running.discard)

    async def _resync(self, key: Key) -> None:
        try:
            await self.run(key)
        except Exception:  # one object's bug must not stop the others' resync
            log.exception("resync of ModelDeployment %s/%s failed", *key)
