"""The resync scheduler (modeldeploy.runtime.scheduler), on a real event loop and real threads.

No kopf: the scheduler is handed plain functions (list a ModelDeployment's children, reconcile
it, post an Event), so these tests give it recording ones and a tick of a few milliseconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from modeldeploy.core.events import Event
from modeldeploy.runtime.errors import KubeError
from modeldeploy.runtime.reconcile import Reconciled
from modeldeploy.runtime.scheduler import Child, Scheduler

KEY = ("ml", "fraud")
OTHER = ("ml", "iris")
TICK = 0.01


def body(version: str = "1", name: str = "fraud") -> dict[str, Any]:
    return {"metadata": {"namespace": "ml", "name": name, "resourceVersion": version}}


class Recorder:
    """A reconcile that records each call and answers what the test set for that object."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.answer: dict[str, Callable[[], Reconciled]] = {}
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def reconcile(self, obj: dict[str, Any], children: list[Child]) -> Reconciled:
        name = obj["metadata"]["name"]
        with self.lock:
            self.calls.append((name, len(children)))
        return self.answer.get(name, Reconciled)()

    def post_event(self, obj: dict[str, Any], event: Event) -> None:
        self.events.append((obj["metadata"]["name"], event.reason))

    def count(self, name: str = "fraud") -> int:
        with self.lock:
            return sum(1 for n, _ in self.calls if n == name)


def scheduler(recorder: Recorder, children: dict | None = None, resync: float = 60.0) -> Scheduler:
    listed = children if children is not None else {}
    return Scheduler(
        reconcile=recorder.reconcile,
        post_event=recorder.post_event,
        children=lambda key: listed.get(key, []),
        resync_seconds=resync,
        tick_seconds=TICK,
    )


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, "condition not met in time"
        await asyncio.sleep(TICK)


def test_nothing_changed_and_nothing_due_skips_the_reconcile():
    async def scenario() -> None:
        rec = Recorder()
        children = {KEY: [Child("Deployment", "fraud-abc", "7", "{}")]}
        s = scheduler(rec, children)
        s.track(KEY, body("1"))
        await s.run(KEY)
        await s.run(KEY)
        assert rec.calls == [("fraud", 1)]  # the second found the same resourceVersions
        children[KEY] = [Child("Deployment", "fraud-abc", "8", "{}")]  # a child changed
        await s.run(KEY)
        s.track(KEY, body("2"))  # the object changed
        await s.run(KEY)
        assert rec.count() == 3

    asyncio.run(scenario())


def test_a_reconcile_that_wrote_runs_again_and_events_are_posted_in_order():
    async def scenario() -> None:
        rec = Recorder()
        said = [Event("Normal", "RevisionCreated", "x"), Event("Normal", "Promoted", "y")]
        rec.answer["fraud"] = lambda: Reconciled(events=list(said), writes=2)
        s = scheduler(rec)
        s.track(KEY, body())
        await s.run(KEY)
        assert rec.events == [("fraud", "RevisionCreated"), ("fraud", "Promoted")]
        await s.run(KEY)  # its own writes will change the fingerprint: never skipped on it
        assert rec.count() == 2

    asyncio.run(scenario())


def test_a_time_based_step_due_runs_even_when_nothing_changed():
    async def scenario() -> None:
        rec = Recorder()
        past = datetime.now(UTC) - timedelta(seconds=1)
        rec.answer["fraud"] = lambda: Reconciled(wake_at=past)
        s = scheduler(rec)
        s.track(KEY, body())
        await s.run(KEY)
        await s.run(KEY)
        assert rec.count() == 2
        rec.answer["fraud"] = lambda: Reconciled(wake_at=datetime.now(UTC) + timedelta(hours=1))
        await s.run(KEY)
        await s.run(KEY)
        assert rec.count() == 3

    asyncio.run(scenario())


def test_an_api_error_is_retried_on_a_later_tick():
    async def scenario() -> None:
        rec = Recorder()
        failures = [KubeError("applying Deployment ml/fraud-abc", "timeout")]

        def flaky() -> Reconciled:
            if failures:
                raise failures.pop()
            return Reconciled()

        rec.answer["fraud"] = flaky
        s = scheduler(rec)
        s.track(KEY, body())
        await s.run(KEY)  # raises inside; the scheduler remembers to try again
        task = asyncio.create_task(s.resync_forever())
        await until(lambda: rec.count() == 2)
        task.cancel()
        assert failures == []

    asyncio.run(scenario())


def test_every_object_is_resynced_after_the_resync_interval():
    async def scenario() -> None:
        rec = Recorder()
        s = scheduler(rec, resync=0.05)
        s.track(KEY, body())
        await s.run(KEY)
        task = asyncio.create_task(s.resync_forever())
        await asyncio.sleep(0.3)
        task.cancel()
        # Checked every 50 ms, but reconciled once: nothing changed, nothing was due.
        assert rec.count() == 1
        rec.answer["fraud"] = lambda: Reconciled(writes=1)
        s.track(KEY, body("2"))
        task = asyncio.create_task(s.resync_forever())
        await until(lambda: rec.count() >= 4)  # it wrote each time: checked again and again
        task.cancel()

    asyncio.run(scenario())


def test_a_slow_reconcile_delays_no_other_object_and_is_not_queued_twice():
    async def scenario() -> None:
        rec = Recorder()
        release = threading.Event()

        def slow() -> Reconciled:
            release.wait(5)
            return Reconciled(wake_at=datetime.now(UTC))

        rec.answer["fraud"] = slow
        rec.answer["iris"] = lambda: Reconciled(wake_at=datetime.now(UTC))  # due on every tick
        s = scheduler(rec, resync=0.0)
        s.track(KEY, body())
        s.track(OTHER, body(name="iris"))
        task = asyncio.create_task(s.resync_forever())
        await until(lambda: rec.count("iris") >= 5)  # iris goes on while fraud hangs
        assert rec.count("fraud") == 1  # fraud's reconcile is still running: not started again
        release.set()
        await until(lambda: rec.count("fraud") >= 2)
        task.cancel()

    asyncio.run(scenario())


def test_one_objects_bug_does_not_stop_the_others_resync():
    async def scenario() -> None:
        rec = Recorder()

        def broken() -> Reconciled:
            raise RuntimeError("a bug")

        rec.answer["fraud"] = broken
        s = scheduler(rec, resync=0.0)
        s.track(KEY, body())
        s.track(OTHER, body(name="iris"))
        rec.answer["iris"] = lambda: Reconciled(writes=1)
        task = asyncio.create_task(s.resync_forever())
        await until(lambda: rec.count("iris") >= 3 and rec.count("fraud") >= 3)
        task.cancel()

    asyncio.run(scenario())


def test_a_forgotten_object_is_never_reconciled_again():
    async def scenario() -> None:
        rec = Recorder()
        rec.answer["fraud"] = lambda: Reconciled(writes=1)
        s = scheduler(rec, resync=0.0)
        s.track(KEY, body())
        s.forget(KEY)
        await s.run(KEY)
        task = asyncio.create_task(s.resync_forever())
        await asyncio.sleep(0.1)
        task.cancel()
        assert rec.calls == []

    asyncio.run(scenario())


def test_a_failing_object_backs_off_and_events_do_not_cut_the_wait():
    async def scenario() -> None:
        rec = Recorder()
        rec.answer["fraud"] = lambda: Reconciled(writes=1, failed=1)  # refused every time
        rec.answer["iris"] = lambda: Reconciled(wake_at=datetime.now(UTC))  # due on every tick
        s = Scheduler(
            reconcile=rec.reconcile, post_event=rec.post_event, children=lambda _key: [],
            resync_seconds=0.0, tick_seconds=TICK, backoff=lambda n: 0.1 * 2 ** (n - 1),
        )  # fmt: skip
        s.track(KEY, body("1"))
        s.track(OTHER, body(name="iris"))
        task = asyncio.create_task(s.resync_forever())
        started = time.monotonic()
        await s.run(KEY)
        for version in range(2, 12):  # watch events (its own status writes) while it waits
            s.track(KEY, body(str(version)))
            await s.run(KEY)
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.2 - (time.monotonic() - started))
        # Tries at 0, 0.1, 0.3, 0.7 s (1.5 s is the next): not one per tick or per event.
        assert rec.count() == 4
        assert rec.count("iris") > 50  # the other object went on every tick meanwhile
        failing = s.tracked[KEY]
        assert failing.failures == 4
        # A spec change (a new generation) ends the wait at once.
        s.track(KEY, {"metadata": {**body("20")["metadata"], "generation": 2}})
        await s.run(KEY)
        assert rec.count() == 5
        rec.answer["fraud"] = Reconciled
        s.track(KEY, {"metadata": {**body("21")["metadata"], "generation": 3}})
        await s.run(KEY)
        assert (rec.count(), failing.failures) == (6, 0)  # a success resets the count
        task.cancel()

    asyncio.run(scenario())


def test_a_run_that_waited_for_a_failing_one_backs_off_too():
    async def scenario() -> None:
        rec = Recorder()
        release = threading.Event()

        def slow_refusal() -> Reconciled:
            release.wait(5)
            return Reconciled(writes=1, failed=1)

        rec.answer["fraud"] = slow_refusal
        s = scheduler(rec)
        s.track(KEY, body("1"))
        first = asyncio.create_task(s.run(KEY))
        await until(lambda: rec.count() == 1)
        s.track(KEY, body("2"))  # a watch event while the first reconcile runs
        second = asyncio.create_task(s.run(KEY))
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(first, second)
        assert rec.count() == 1  # the second saw the failure and waits its backoff
        assert s.tracked[KEY].failures == 1

    asyncio.run(scenario())
