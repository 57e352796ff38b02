"""runtime/singleton.py: one instance per process, even when threads ask at the same moment."""

from __future__ import annotations

import threading
import time

from modeldeploy.runtime.notify import Notifier, shared_notifier
from modeldeploy.runtime.singleton import process_singleton
from modeldeploy.runtime.webhooks import WebhookRunner, shared_runner


def test_threads_asking_at_once_get_the_one_instance() -> None:
    made: list[object] = []

    @process_singleton
    def slow() -> object:
        time.sleep(0.05)  # wide enough for every thread to arrive while the first one builds
        made.append(object())
        return made[-1]

    start = threading.Barrier(8)
    got: list[object] = []

    def ask() -> None:
        start.wait()
        got.append(slow())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1
    assert got == made * 8


def test_the_operator_accessors_keep_their_names_and_instances() -> None:
    assert isinstance(shared_notifier(), Notifier)
    assert shared_notifier() is shared_notifier()
    assert isinstance(shared_runner(), WebhookRunner)
    assert shared_runner() is shared_runner()
    assert shared_runner.__name__ == "shared_runner"
    assert "one per process" in (shared_runner.__doc__ or "")
