"""Notifications sent in the background: a bounded queue, one daemon thread, a short timeout.

No rollout ever waits on a notification or fails because of one: reconcile only puts notices
on the queue (never blocking), a full queue drops the newest and counts it, the sender gives
each POST NOTIFY_TIMEOUT_SECONDS and no retry (a notification late by minutes misleads more
than a missing one), and whatever happens is counted in
modeldeploy_notifications_total{result="sent"|"failed"|"dropped"} and logged without the URL
(it may carry a token).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from modeldeploy.core.notifications import Notice
from modeldeploy.runtime import operator_metrics
from modeldeploy.runtime.singleton import process_singleton
from modeldeploy.runtime.webhooks import SecretValue, WebhookConfigError, post_json, resolve

log = logging.getLogger(__name__)
NOTIFY_TIMEOUT_SECONDS: Final = 5.0
QUEUE_CAPACITY: Final = 256


@dataclass(frozen=True)
class _Queued:
    namespace: str
    notice: Notice
    secret: SecretValue


class Notifier:
    """Sends notices on a daemon thread of its own (started with the first notice)."""

    def __init__(self, capacity: int = QUEUE_CAPACITY,
                 timeout: float = NOTIFY_TIMEOUT_SECONDS) -> None:  # fmt: skip
        self.timeout = timeout
        self._queue: queue.Queue[_Queued] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, namespace: str, notices: Iterable[Notice], secret: SecretValue) -> None:
        """Queue the notices; never blocks (a full queue drops them, counted)."""
        for notice in notices:
            try:
                self._queue.put_nowait(_Queued(namespace, notice, secret))
            except queue.Full:
                operator_metrics.NOTIFICATIONS.labels(result="dropped").inc()
                log.warning("notification %s to %s dropped: the queue is full (a receiver is "
                            "slow)", notice.event, notice.field)  # fmt: skip
                continue
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="notify", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                self._send(item)
            except Exception:  # a bug must never stop the sender
                operator_metrics.NOTIFICATIONS.labels(result="failed").inc()
                log.exception("notification %s to %s", item.notice.event, item.notice.field)

    def _send(self, item: _Queued) -> None:
        notice, where = item.notice, f"{item.namespace} {item.notice.field}"
        receiver = notice.notifier
        try:
            url, headers = resolve(item.namespace, receiver.url, receiver.url_from,
                                   receiver.headers or [], item.secret, notice.field)  # fmt: skip
        except WebhookConfigError as exc:
            operator_metrics.NOTIFICATIONS.labels(result="failed").inc()
            log.warning("notification %s not sent (%s): %s", notice.event, where, exc)
            return
        answer = post_json(url, notice.body, headers, self.timeout)
        if answer.passed:
            operator_metrics.NOTIFICATIONS.labels(result="sent").inc()
            log.info("notification %s sent (%s): %s", notice.event, where, answer.reason)
        else:
            operator_metrics.NOTIFICATIONS.labels(result="failed").inc()
            log.warning("notification %s failed (%s): %s", notice.event, where, answer.reason)


@process_singleton
def shared_notifier() -> Notifier:
    """The operator process's notifier (one queue and one sender per process)."""
    return Notifier()
