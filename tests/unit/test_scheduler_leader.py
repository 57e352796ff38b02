"""The resync scheduler under leader election: a standby reconciles nothing, a Lease lost in
the middle of a reconcile is no failure, and a new leader reconciles everything at once.

Real event loop and threads, as tests/unit/test_scheduler.py; `leading` is a plain switch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from modeldeploy.core.events import Event
from modeldeploy.runtime.kube import NotLeadingError
from modeldeploy.runtime.reconcile import Reconciled
from modeldeploy.runtime.scheduler import Child, Scheduler

TICK = 0.01


class Replica:
    """A scheduler whose reconcile records the objects it was called for."""

    def __init__(self, leads: bool) -> None:
        self.leads = leads
        self.calls: list[str] = []
        self.events: list[str] = []
        self.answer: Callable[[], Reconciled] = Reconciled
        self.scheduler = Scheduler(
            reconcile=self.reconcile, post_event=self.post_event, children=lambda _: [],
            resync_seconds=0.05, tick_seconds=TICK, leading=lambda: self.leads,
        )  # fmt: skip

    def reconcile(self, obj: dict[str, Any], _: list[Child]) -> Reconciled:
        self.calls.append(obj["metadata"]["name"])
        return self.answer()

    def post_event(self, _: dict[str, Any], event: Event) -> None:
        if not self.leads:  # what Kube's fence does
            raise NotLeadingError("posting an event: not sent")
        self.events.append(event.reason)

    def track(self, *names: str) -> None:
        for name in names:
            self.scheduler.track(("ml", name), {"metadata": {"namespace": "ml", "name": name,
                                                             "resourceVersion": "1"}})  # fmt: skip


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, "condition not met in time"
        await asyncio.sleep(TICK)


def test_a_standby_reconciles_nothing_on_events_or_on_resync():
    async def scenario() -> None:
        standby = Replica(leads=False)
        standby.track("fraud", "iris")
        await standby.scheduler.run(("ml", "fraud"))
        task = asyncio.create_task(standby.scheduler.resync_forever())
        await asyncio.sleep(20 * TICK)  # several resync intervals
        task.cancel()
        assert standby.calls == []

    asyncio.run(scenario())


def test_a_new_leader_reconciles_every_object_at_once():
    async def scenario() -> None:
        replica = Replica(leads=False)
        replica.scheduler.resync_seconds = 3600.0  # only the takeover can bring a reconcile
        replica.track("fraud", "iris")
        task = asyncio.create_task(replica.scheduler.resync_forever())
        await asyncio.sleep(5 * TICK)
        replica.leads = True
        replica.scheduler.wake_all()
        await until(lambda: sorted(replica.calls) == ["fraud", "iris"])
        await asyncio.sleep(5 * TICK)
        task.cancel()
        assert sorted(replica.calls) == ["fraud", "iris"]  # once each, then nothing is due

    asyncio.run(scenario())


def test_a_lease_lost_mid_reconcile_is_no_failure_and_posts_nothing():
    async def scenario() -> None:
        replica = Replica(leads=True)

        def lost() -> Reconciled:
            replica.leads = False  # the Lease ran out while this reconcile ran
            raise NotLeadingError("applying Deployment ml/fraud-abc: not sent")

        replica.answer = lost
        replica.track("fraud")
        await replica.scheduler.run(("ml", "fraud"))
        entry = replica.scheduler.tracked[("ml", "fraud")]
        assert (entry.failures, entry.retry_at) == (0, 0.0)  # no backoff
        # Events decided by a reconcile whose leader stepped down before posting them.
        replica.leads = True
        replica.answer = lambda: Reconciled(events=[Event("Normal", "Promoted", "x")])
        original = replica.post_event

        def post_after_losing(obj: dict[str, Any], event: Event) -> None:
            replica.leads = False
            original(obj, event)

        replica.scheduler.post_event = post_after_losing
        await replica.scheduler.run(("ml", "fraud"))
        assert replica.events == []
        assert entry.failures == 0
        assert entry.fingerprint is None  # decided again by whoever leads next

    asyncio.run(scenario())
