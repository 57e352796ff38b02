"""The HTTP side of webhooks against a real receiver on loopback: verdicts, retries, timeouts,
the once-only runner, and a notifier that never blocks (runtime/webhooks.py, runtime/notify.py).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY

from modeldeploy.api.hooks import HookWebhook
from modeldeploy.api.notifications import Notifier as NotifierSpec
from modeldeploy.core.events import Event
from modeldeploy.core.hooks import WebhookCall
from modeldeploy.core.notifications import Notice, notice_body
from modeldeploy.runtime.errors import KubeError
from modeldeploy.runtime.notify import Notifier
from modeldeploy.runtime.webhooks import WebhookRunner, call_webhook
from rolloutkit import OWNER, Cluster, spec_for
from webhook_receiver import Receiver

PAYLOAD = {"modelDeployment": {"namespace": "ml", "name": "fraud", "uid": "u-1"}}
SECRETS = {("ml", "hook", "token"): "Bearer s3cr3t", ("ml", "hook", "url"): "ftp://x/y"}


def secret(namespace: str, name: str, key: str) -> str:
    """Secret values as Kube.secret_value gives them (a missing one: its KubeError)."""
    try:
        return SECRETS[(namespace, name, key)]
    except KeyError:
        raise KubeError(f"Secret {namespace}/{name} has no key {key!r}", "") from None


def call(url: str, seconds: float = 30, **webhook: Any) -> WebhookCall:
    hook = HookWebhook.model_validate({"url": url, **webhook})
    deadline = datetime.now(UTC) + timedelta(seconds=seconds)
    field = "spec.rollout.hooks.preRollout[0].webhook"
    return WebhookCall(("preRollout", "checker", "fraud-b"), hook, PAYLOAD, deadline, field)


def no_sleep(_: float) -> None:
    return


def test_a_2xx_passes_and_the_receiver_gets_the_payload_and_headers() -> None:
    with Receiver((204, 0)) as receiver:
        headers = [{"name": "Authorization", "valueFrom": {"secretKeyRef": {
            "name": "hook", "key": "token"}}}, {"name": "X-Team", "value": "ml"}]  # fmt: skip
        result = call_webhook(call(receiver.url + "/verify", headers=headers), "ml", secret)
    assert result.passed
    assert result.message.startswith("HTTP 204 in ")
    assert result.attempts == 1
    ((path, sent, body),) = receiver.requests
    assert (path, body) == ("/verify", PAYLOAD)
    assert sent["Authorization"] == "Bearer s3cr3t"
    assert sent["X-Team"] == "ml"
    assert sent["Content-Type"] == "application/json"


def test_a_5xx_is_retried_and_a_later_2xx_passes() -> None:
    with Receiver((500, 0), (503, 0), (200, 0)) as receiver:
        result = call_webhook(call(receiver.url, retries=2), "ml", secret, no_sleep)
    assert result.passed
    assert result.attempts == 3
    assert result.message.endswith("after 3 attempts")


def test_a_5xx_to_the_end_fails_with_what_the_receiver_said() -> None:
    with Receiver((500, 0)) as receiver:
        result = call_webhook(call(receiver.url, retries=1), "ml", secret, no_sleep)
    assert not result.passed
    assert result.attempts == 2
    assert result.message == "HTTP 500: answer 500 after 2 attempts"


def test_a_4xx_is_final_and_a_redirect_is_never_followed() -> None:
    with Receiver((403, 0)) as receiver:
        refused = call_webhook(call(receiver.url, retries=3), "ml", secret, no_sleep)
    assert (refused.passed, refused.attempts) == (False, 1)
    assert refused.message == "HTTP 403: answer 403 (final: not retried)"
    with Receiver((200, 0)) as target, Receiver((302, 0), location=target.url) as receiver:
        moved = call_webhook(call(receiver.url, retries=3), "ml", secret, no_sleep)
        assert target.requests == []
    assert (moved.passed, moved.attempts) == (False, 1)
    assert moved.message.startswith("HTTP 302")


def test_a_receiver_that_hangs_fails_by_the_attempt_timeout() -> None:
    with Receiver((200, 30)) as receiver:
        started = time.monotonic()
        result = call_webhook(call(receiver.url, timeout="1s", retries=0), "ml", secret)
        took = time.monotonic() - started
    assert not result.passed
    assert result.message == "no answer within 1s"
    assert took < 5


def test_no_attempt_starts_past_the_hooks_timeout() -> None:
    with Receiver((500, 0)) as receiver:
        result = call_webhook(call(receiver.url, seconds=0, retries=5), "ml", secret, no_sleep)
    assert result.message.startswith("DeadlineExceeded")
    assert receiver.requests == []


def test_nobody_listening_and_bad_secrets_fail_with_the_reason() -> None:
    with Receiver() as receiver:
        closed = receiver.url
    result = call_webhook(call(closed, retries=0), "ml", secret)
    assert not result.passed
    assert result.message.startswith("connection failed:")
    hook = HookWebhook.model_validate({"urlFrom": {"secretKeyRef": {"name": "hook", "key": "url"}}})
    bad = call_webhook(
        WebhookCall(("preRollout", "x", "r"), hook, {}, datetime.now(UTC) + timedelta(seconds=9),
                    "spec.rollout.hooks.preRollout[0].webhook"), "ml", secret,
    )  # fmt: skip
    assert bad.message.startswith(
        "spec.rollout.hooks.preRollout[0].webhook.urlFrom: the value of key 'url' in Secret hook "
        "must be an http:// or https:// URL"
    )
    missing = {"urlFrom": {"secretKeyRef": {"name": "nosuch", "key": "url"}}}
    gone = call_webhook(
        WebhookCall(("preRollout", "x", "r"), HookWebhook.model_validate(missing), {},
                    datetime.now(UTC) + timedelta(seconds=9), "f"), "ml", secret,
    )  # fmt: skip
    assert (
        gone.message
        == "f.urlFrom: Secret ml/nosuch has no key 'url'; create it or fix the reference"
    )


def test_the_runner_makes_each_call_once_and_keeps_its_result_until_recorded() -> None:
    runner = WebhookRunner(workers=2)
    with Receiver((200, 0.3)) as receiver:
        owed = call(receiver.url)
        assert runner.submit("u-1", "ml", [owed], secret) == 1
        assert runner.submit("u-1", "ml", [owed], secret) == 0  # in flight: not again
        deadline = time.monotonic() + 10
        while not runner.results("u-1") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert runner.submit("u-1", "ml", [owed], secret) == 0  # done: not again either
    assert len(receiver.requests) == 1
    assert runner.results("u-1")[owed.key].passed
    assert runner.results("u-2") == {}
    runner.forget("u-1", [owed.key])
    assert runner.results("u-1") == {}


def count(result: str) -> float:
    return REGISTRY.get_sample_value("modeldeploy_notifications_total", {"result": result}) or 0.0


def notice(url: str) -> Notice:
    receiver = NotifierSpec.model_validate({"name": "audit", "url": url})
    status = Cluster(spec_for("v1", "Canary", {"replicaRatio": {}}, 2, [20])).reconcile().status
    event = Event("Normal", "RolloutStarted", "rolling out revision fraud-b (Canary)")
    body = notice_body(receiver.format, OWNER, event, status, datetime.now(UTC))
    return Notice(receiver, "spec.rollout.notifications[0]", "RolloutStarted", body)  # type: ignore[arg-type]


def test_a_notification_is_sent_in_the_background_and_counted() -> None:
    sent = count("sent")
    with Receiver((200, 0)) as receiver:
        Notifier().submit("ml", [notice(receiver.url)], secret)
        (body,) = receiver.wait(1)
        deadline = time.monotonic() + 5
        while count("sent") == sent and time.monotonic() < deadline:
            time.sleep(0.02)
    assert body["event"] == "RolloutStarted"
    assert count("sent") == sent + 1


def test_a_hanging_receiver_never_blocks_the_sender_and_overflow_is_dropped() -> None:
    dropped, failed = count("dropped"), count("failed")
    with Receiver((200, 30)) as receiver:
        notifier = Notifier(capacity=2, timeout=1)
        started = time.monotonic()
        notifier.submit("ml", [notice(receiver.url) for _ in range(6)], secret)
        assert time.monotonic() - started < 0.5  # submitting never waits on the receiver
        receiver.wait(1)
        deadline = time.monotonic() + 20
        while count("failed") < failed + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    # One in the sender's hands, two queued, three dropped; the sent ones time out.
    assert count("dropped") - dropped == 3
    assert count("failed") - failed == 3
