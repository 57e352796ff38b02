"""Webhook hooks and notifications: the operator process, the real API server, and a real HTTP
receiver on loopback (the operator runs on this host, as in test_operator.py).

No pod runs in this tier (no node), so the phase tested is preRollout: its hooks run as soon as
a candidate exists, before any of its pods could be Ready. A webhook that answers 500 rolls the
candidate back, one that answers 2xx passes it, and receivers that hang delay no status write.
"Passing webhook promotes" needs Ready pods: tests/e2e/test_rollout.py.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

from webhook_receiver import Receiver

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The operator process and the helpers of test_operator.py (a module-scoped operator of our own).
from test_operator import (  # noqa: F401 (`operator` is a fixture)
    RESYNC_SECONDS,
    apply,
    describe,
    example,
    get,
    operator,
    wait_for,
)


def status(crd, namespace: str, name: str) -> dict[str, Any]:
    return get(crd, namespace, "md", name).get("status") or {}


def versioned(name: str, version: str, **rollout: Any) -> dict[str, Any]:
    """The canary example at a model version (each version is a revision of its own)."""
    doc = example(name)
    doc["spec"]["model"]["uri"] = f"https://models.example/{name}-{version}.onnx"
    doc["spec"]["model"]["version"] = version
    doc["spec"]["rollout"].update(rollout)
    return doc


def hook(url: str | None = None, **webhook: Any) -> dict[str, Any]:
    return {"preRollout": [{"name": "checker", "webhook": {
        **({"url": url} if url else {}), **webhook}}]}  # fmt: skip


def roll_to_v2(crd, namespace: str, name: str, op, **rollout: Any) -> None:
    apply(crd, namespace, versioned(name, "v1", **rollout))
    wait_for(lambda: status(crd, namespace, name).get("stableRevision"), "v1 stable", op)
    apply(crd, namespace, versioned(name, "v2", **rollout))


def test_a_failing_webhook_rolls_back_and_notifies(crd, operator, namespace):  # noqa: F811
    with Receiver((500, 0)) as checker, Receiver((200, 0)) as audit:
        rollout = {"hooks": hook(checker.url + "/verify", retries=1, timeout="2s"),
                   "notifications": [{"name": "audit", "url": audit.url}]}  # fmt: skip
        roll_to_v2(crd, namespace, "fraud", operator, **rollout)
        wait_for(lambda: status(crd, namespace, "fraud").get("phase") == "RolledBack",
                 "the rollback the failing webhook asks for", operator)  # fmt: skip
        s = status(crd, namespace, "fraud")
        run = s["hooks"][-1]
        assert (run["phase"], run["name"], run["verdict"]) == ("preRollout", "checker", "Failed")
        assert run["message"] == "HTTP 500: answer 500 after 2 attempts"
        assert run["attempts"] == 2
        assert "job" not in run
        assert s["rolledBackRevision"]["modelVersion"] == "v2"
        described = wait_for(lambda: "HookFailed" in (d := describe(crd, namespace, "fraud"))
                             and "RolledBack" in d and d, "the Events")  # fmt: skip
        assert "preRollout hook checker for revision" in described
        assert "HTTP 500" in described

        # What the receiver was told: the ModelDeployment, the hook, both revisions.
        uid = get(crd, namespace, "md", "fraud")["metadata"]["uid"]
        path, headers, body = checker.requests[0]
        assert path == "/verify"
        assert headers["Content-Type"] == "application/json"
        assert body["modelDeployment"] == {"namespace": namespace, "name": "fraud", "uid": uid}
        assert body["hook"] == {"name": "checker", "phase": "preRollout"}
        assert body["stableRevision"]["modelVersion"] == "v1"
        assert body["candidateRevision"] == {"name": s["rolledBackRevision"]["name"],
                                             "modelVersion": "v2"}  # fmt: skip
        assert body["previewUrl"] == f"http://fraud-canary.{namespace}.svc/v2/models/fraud"
        assert len(checker.requests) == 2  # once, and its one retry: never per reconcile

        told = audit.wait(3)
        by_event = {b["event"]: b for b in told}
        assert told[0]["event"] == "RolloutStarted"  # the hook's two come from one reconcile
        assert set(by_event) == {"RolloutStarted", "HookFailed", "RolledBack"}
        assert all(b["modelDeployment"]["uid"] == uid for b in told)
        assert by_event["RolloutStarted"]["canaryRevision"]["modelVersion"] == "v2"
        assert by_event["RolledBack"]["type"] == "Warning"
        assert by_event["RolledBack"]["rolledBackRevision"]["modelVersion"] == "v2"
        assert "HTTP 500" in by_event["HookFailed"]["message"]
    sent = re.search(r'^modeldeploy_notifications_total\{result="sent"\} (\S+)$',
                     operator.metrics(), re.M)  # fmt: skip
    assert sent
    assert float(sent.group(1)) >= 3


def test_a_passing_webhook_reads_its_url_and_token_from_a_secret(crd, operator, namespace):  # noqa: F811
    with Receiver((200, 0)) as checker, Receiver((200, 0)) as chat:
        crd.kubectl("create", "secret", "generic", "checker", "-n", namespace,
                    f"--from-literal=url={checker.url}/verify", "--from-literal=token=Bearer t0ken",
                    f"--from-literal=chat={chat.url}")  # fmt: skip
        ref = {"secretKeyRef": {"name": "checker", "key": "url"}}
        from_secret = {"secretKeyRef": {"name": "checker", "key": "token"}}
        token = {"name": "Authorization", "valueFrom": from_secret}
        slack = {"name": "chat", "format": "Slack", "events": ["RolloutStarted"],
                 "urlFrom": {"secretKeyRef": {"name": "checker", "key": "chat"}}}  # fmt: skip
        roll_to_v2(crd, namespace, "fraud", operator, hooks=hook(urlFrom=ref, headers=[token]),
                   notifications=[slack])  # fmt: skip
        run = wait_for(lambda: (h := status(crd, namespace, "fraud").get("hooks"))
                       and h[-1]["verdict"] == "Passed" and h[-1], "the webhook's pass",
                       operator)  # fmt: skip
        assert run["message"].startswith("HTTP 200 in ")
        assert run["attempts"] == 1
        s = status(crd, namespace, "fraud")
        assert s["phase"] != "RolledBack"
        assert s["canaryRevision"]["modelVersion"] == "v2"  # on to its steps
        wait_for(lambda: "HookPassed" in describe(crd, namespace, "fraud"), "HookPassed")
        path, headers, _ = checker.requests[0]
        assert (path, headers["Authorization"]) == ("/verify", "Bearer t0ken")
        (text,) = chat.wait(1)
        assert text == {"text": f"{namespace}/fraud RolloutStarted: rolling out revision "
                                f"{s['canaryRevision']['name']} (Canary)"}  # fmt: skip


def test_receivers_that_hang_delay_no_status_write(crd, operator, namespace):  # noqa: F811
    with Receiver((200, 60)) as checker, Receiver((200, 60)) as audit:
        rollout = {"hooks": hook(checker.url, retries=0, timeout="3s"),
                   "notifications": [{"name": "audit", "url": audit.url}]}  # fmt: skip
        apply(crd, namespace, versioned("fraud", "v1", **rollout))
        wait_for(lambda: status(crd, namespace, "fraud").get("stableRevision"), "v1 stable")
        asked = time.monotonic()
        apply(crd, namespace, versioned("fraud", "v2", **rollout))
        wait_for(lambda: (h := status(crd, namespace, "fraud").get("hooks"))
                 and h[-1]["verdict"] == "Running", "the running hook in status", operator,
                 timeout=2 * RESYNC_SECONDS)  # fmt: skip
        written = time.monotonic() - asked
        s = status(crd, namespace, "fraud")
        assert s["canaryRevision"]["modelVersion"] == "v2"
        audit.wait(1)  # the RolloutStarted notice reached a receiver that does not answer
        # The hook fails by its own timeout; the rollout goes on deciding meanwhile.
        wait_for(lambda: status(crd, namespace, "fraud").get("phase") == "RolledBack",
                 "the hook's timeout", operator, timeout=30)  # fmt: skip
        run = status(crd, namespace, "fraud")["hooks"][-1]
        assert run["message"] == "no answer within 3s"
        assert run["verdict"] == "Failed"
    print(f"\nstatus written {written:.1f}s after the change, with both receivers hanging")
