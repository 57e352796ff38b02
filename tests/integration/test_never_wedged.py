"""Issue 20 on the real API server: every spec it accepts ends in an honest status.

The operator runs as its own process (as in test_operator.py). Each input the issue found, then
specs drawn from the API models' schema (tests/specgen.py): each must end, within a
bounded time, with `observedGeneration == generation` and either progress or `Degraded` naming a
field; the operator log must hold no traceback, and another object must keep reconciling.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings

from integration import test_operator
from integration.test_operator import (
    RESYNC_SECONDS,
    apply,
    cli,
    example,
    get,
    revisions,
    wait_for,
)
from modeldeploy.cli import validation_errors
from specgen import specs

operator_process = test_operator.operator
"""test_operator's fixture: this module's own `modeldeploy run` process, with a 2 s resync."""
SETTLE_SECONDS = 30
"""The bound within which every accepted spec must be reflected in its status."""
GENERATED_EXAMPLES = 25


def status_of(crd, namespace: str, name: str) -> dict[str, Any]:
    return get(crd, namespace, "md", name).get("status") or {}


def caught_up(crd, namespace: str, name: str) -> dict[str, Any] | None:
    """The object when its status describes its current generation."""
    md = get(crd, namespace, "md", name)
    status = md.get("status") or {}
    return md if status.get("observedGeneration") == md["metadata"]["generation"] else None


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def events(crd, namespace: str, name: str) -> list[dict[str, Any]]:
    selector = f"involvedObject.name={name},involvedObject.kind=ModelDeployment"
    out = crd.kubectl("get", "events", "-n", namespace, "--field-selector", selector, "-o", "json")
    return list(json.loads(out.stdout)["items"])


def test_an_action_too_long_for_the_status_is_named_and_the_status_follows_the_spec(
    crd, operator_process, namespace
):
    apply(crd, namespace, example("a3"))
    wait_for(lambda: caught_up(crd, namespace, "a3"), "the first status", operator_process)
    long_action = "promote@" + "x" * 300
    crd.kubectl("annotate", "md", "a3", "-n", namespace, f"modeldeploy.io/action={long_action}")
    refused = wait_for(
        lambda: [e for e in events(crd, namespace, "a3") if e["reason"] == "InvalidAction"],
        "an InvalidAction Event", operator_process,
    )  # fmt: skip
    assert "modeldeploy.io/action must be VERB@TIME" in refused[0]["message"]
    handled = status_of(crd, namespace, "a3")["handledAction"]
    assert handled.startswith("promote@xxx")
    assert len(handled) <= 128
    time.sleep(2 * RESYNC_SECONDS)
    posted = [e for e in events(crd, namespace, "a3") if e["reason"] == "InvalidAction"]
    # Once, or twice when a resync raced the status write's watch event (the body it read did
    # not show handledAction yet); never again afterwards: it is recorded as handled.
    assert len(posted) in (1, 2)
    doc = example("a3")
    doc["spec"]["serving"]["replicas"] = 3
    apply(crd, namespace, doc)
    md = wait_for(lambda: caught_up(crd, namespace, "a3"), "observedGeneration 2",
                  operator_process, timeout=SETTLE_SECONDS)  # fmt: skip
    assert md["metadata"]["generation"] == 2
    (deployment,) = revisions(crd, namespace, "a3")
    assert get(crd, namespace, "deploy", deployment)["spec"]["replicas"] == 3
    time.sleep(2 * RESYNC_SECONDS)
    assert [e for e in events(crd, namespace, "a3") if e["reason"] == "InvalidAction"] == posted


def test_promote_with_nothing_to_promote_says_so(crd, operator_process, namespace):
    apply(crd, namespace, example("settled"))
    wait_for(lambda: caught_up(crd, namespace, "settled"), "the first status", operator_process)
    out = cli(crd, "promote", "settled", "-n", namespace, "--wait", "30")
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout == "modeldeployment.modeldeploy.io/settled promote requested\n"
    assert "warning: PromoteImpossible: nothing to promote: no rollout in progress" in out.stderr
    said = [e for e in events(crd, namespace, "settled") if e["reason"] == "PromoteImpossible"]
    assert said[0]["message"].startswith("nothing to promote: no rollout in progress")
    assert status_of(crd, namespace, "settled")["handledAction"].startswith("promote@")
    # An action that acts is reported as handled, exit 0.
    doc = example("settled")
    doc["spec"]["model"]["uri"] = "https://models.example/iris-v2.onnx"
    apply(crd, namespace, doc)
    wait_for(lambda: status_of(crd, namespace, "settled").get("canaryRevision"), "a canary")
    out = cli(crd, "abort", "settled", "-n", namespace, "--wait", "30")
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    assert out.stdout.endswith("settled abort handled\n")


def refused_applies(log: str, namespace: str) -> int:
    """The operator's refused applies of Deployments in a namespace, from its log (one line
    each, before this issue's fix and after)."""
    refusal = f"applying Deployment {namespace}/"
    return sum(1 for line in log.splitlines() if refusal in line and "422" in line)


def try_times(operator_process, namespace: str, window: float) -> list[float]:
    """When (seconds into the window, to a quarter second) each refused apply happened."""
    started, seen, times = time.monotonic(), None, []
    while (now := time.monotonic() - started) < window:
        count = refused_applies(operator_process.log.read_text(), namespace)
        if seen is not None:
            times.extend([round(now, 2)] * (count - seen))
        seen = count
        time.sleep(0.25)
    return times


def test_a_rejected_child_is_degraded_and_retried_at_the_backoff_rate(
    crd, operator_process, namespace
):
    doc = example("picky")
    # Accepted by the CRD (nodeSelector is a plain string map), refused by the Deployment's own
    # validation: a label key may not hold a space.
    doc["spec"]["serving"]["nodeSelector"] = {"disk type": "ssd"}
    apply(crd, namespace, doc)
    md = wait_for(lambda: caught_up(crd, namespace, "picky"), "a status", operator_process,
                  timeout=SETTLE_SECONDS)  # fmt: skip
    degraded = condition(md["status"], "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ApplyFailed")
    assert degraded["message"].startswith("Deployment picky-")
    assert "spec.template.spec.nodeSelector" in degraded["message"]
    assert md["status"]["phase"] == "Failed"
    # The other children do not depend on the Deployment: they are in place (at rest, no
    # candidate: the entry Service alone).
    services = get(crd, namespace, "services", "-l", "modeldeploy.io/deployment=picky")["items"]
    assert [s["metadata"]["name"] for s in services] == ["picky"]
    warned = [e for e in events(crd, namespace, "picky") if e["reason"] == "ApplyFailed"]
    assert len(warned) == 1

    window = 40
    tries = try_times(operator_process, namespace, window)
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(tries)]
    print(f"\n{len(tries)} refused applies of the Deployment in {window} s, at {tries}")
    # Backoff 1, 2, 4, 8, 16, 32 s: at most 6 tries in 40 s (one per second before the fix).
    assert 3 <= len(tries) <= 6, tries  # still retried, never given up on
    exported = operator_process.metrics()
    assert 'modeldeploy_apply_failures_total{kind="Deployment"}' in exported
    assert "modeldeploy_backing_off_objects 1.0" in exported
    assert all(b >= a * 1.5 for a, b in itertools.pairwise(gaps[1:])), gaps
    assert len([e for e in events(crd, namespace, "picky") if e["reason"] == "ApplyFailed"]) == 1

    # A spec change retries at once, and a fix clears the condition.
    del doc["spec"]["serving"]["nodeSelector"]
    apply(crd, namespace, doc)
    crd.kubectl("wait", "--for=condition=Degraded=False", "md/picky", "-n", namespace,
                f"--timeout={SETTLE_SECONDS}s")  # fmt: skip
    assert len(revisions(crd, namespace, "picky")) == 1


@pytest.mark.usefixtures("operator_process")
def test_pods_the_api_server_refuses_are_degraded_naming_the_field(crd, namespace):
    """Found by the generated-spec test (a priorityClassName no PriorityClass has): the
    Deployment is accepted, its pods are not, and Degraded named only the revision."""
    doc = example("urgent")
    doc["spec"]["serving"]["priorityClassName"] = "0"
    apply(crd, namespace, doc)
    crd.kubectl("wait", "--for=condition=Degraded", "md/urgent", "-n", namespace,
                f"--timeout={SETTLE_SECONDS}s")  # fmt: skip
    degraded = condition(status_of(crd, namespace, "urgent"), "Degraded")
    assert degraded["reason"] == "RevisionFailed"
    assert "spec.serving.priorityClassName: " in degraded["message"]
    assert "no PriorityClass with name 0 was found" in degraded["message"]


def honest(md: dict[str, Any]) -> str | None:
    """Why a settled status is not honest, or None: progress, or Degraded naming a field."""
    status = md.get("status") or {}
    degraded = condition(status, "Degraded")
    if degraded.get("status") == "True":
        if not re.search(r"\b(spec|metadata)\.[A-Za-z]", degraded.get("message", "")):
            return f"Degraded without naming a field: {degraded}"
        return None
    if status.get("phase") not in ("Progressing", "Healthy", "Paused"):
        return f"neither progress nor Degraded: phase {status.get('phase')}"
    if not status.get("stableRevision"):
        return "no revision chosen"
    return None


def test_generated_specs_end_in_an_honest_status(crd, operator_process, namespace):
    apply(crd, namespace, example("sentinel"))
    wait_for(lambda: caught_up(crd, namespace, "sentinel"), "the sentinel", operator_process)
    seen = {"offline-refused": 0, "server-refused": 0, "applied": 0, "degraded": 0}
    findings: list[str] = []
    started = time.monotonic()

    # Derandomized unless asked: CI runs the same examples each time, so a finding is fixed
    # once and kept as a regular case (tests/speccases.py) instead of failing a random landing.
    # MODELDEPLOY_SPECGEN_EXPLORE=1 draws new examples each run, to look for more.
    @settings(max_examples=GENERATED_EXAMPLES, deadline=None, database=None,
              derandomize=not os.environ.get("MODELDEPLOY_SPECGEN_EXPLORE"),
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(doc=specs())
    def settles(doc: dict[str, Any]) -> None:
        if validation_errors(doc):
            seen["offline-refused"] += 1
            assume(False)  # not an example: hypothesis draws another
        name = f"g{sum(seen.values())}"
        doc["metadata"]["name"] = name
        proc = crd.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc),
                           check=False)  # fmt: skip
        if proc.returncode != 0:
            # The offline gate passed it: the two gates disagree, which is a finding too.
            seen["server-refused"] += 1
            findings.append(f"offline valid, API server refused: {proc.stderr.strip()[:300]}")
            return
        seen["applied"] += 1
        try:
            md = wait_for(lambda: caught_up(crd, namespace, name), f"{name} to settle",
                          operator_process, timeout=SETTLE_SECONDS)  # fmt: skip
            problem = honest(md)
            assert problem is None, f"{problem}\nspec: {json.dumps(doc['spec'])}"
            if condition(md["status"], "Degraded").get("status") == "True":
                seen["degraded"] += 1
                findings.append(f"{name}: {condition(md['status'], 'Degraded')['message'][:200]}")
            assert "Traceback" not in operator_process.log.read_text()
        finally:
            crd.kubectl("delete", "md", name, "-n", namespace, "--wait=false")

    settles()
    elapsed = time.monotonic() - started
    print(f"generated specs: {seen} in {elapsed:.0f} s")
    for line in findings:
        print("  ", line)
    assert seen["applied"] + seen["server-refused"] == GENERATED_EXAMPLES, seen
    assert seen["server-refused"] == 0, findings  # the two gates agree

    # The sentinel kept reconciling through it all.
    doc = example("sentinel")
    doc["spec"]["serving"]["replicas"] = 4
    apply(crd, namespace, doc)
    (deployment,) = revisions(crd, namespace, "sentinel")
    wait_for(lambda: get(crd, namespace, "deploy", deployment)["spec"]["replicas"] == 4,
             "the sentinel to scale", operator_process, timeout=5 * RESYNC_SECONDS)  # fmt: skip
