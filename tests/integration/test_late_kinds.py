"""A child kind whose CRD is installed after the operator started gets watched even when kopf's
own rescan missed it (modeldeploy.runtime.late_kinds), against the real API server.

The race itself (the CRD's Established event arriving before discovery serves the kind) cannot
be forced on a real API server. So the operator runs in this process, wired and started by the
same functions `modeldeploy run` uses, with kopf's CRD scanning switched off: kopf then never
rescans by itself, which is the state the race leaves. The user's check follows: an HTTPRoute
the operator made is deleted when the ModelDeployment switches back to replicaRatio, which needs
kopf to watch HTTPRoutes.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from typing import Any

import kopf
import pytest
from kubernetes import client, config
from kubernetes.config import kube_config

from modeldeploy.core.children import CHILD_KINDS
from modeldeploy.core.settings import Settings
from modeldeploy.runtime import late_kinds, main
from modeldeploy.runtime.kube import Kube
from speccases import HTTPROUTE_CRD, good_spec

ROUTES = ("gateway.networking.k8s.io", "v1")
MD = ("modeldeploy.io", "v1alpha1")


def _watched_httproutes(late: late_kinds.LateKinds) -> list[str]:
    return sorted(f"{r.group}/{r.version} {r.plural}"
                  for r in late.insights.watched_resources if r.plural == "httproutes")  # fmt: skip


async def _until(what: str, check: Callable[[], bool], timeout: float) -> None:
    give_up = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < give_up, f"not within {timeout:.0f} s: {what}"
        await asyncio.sleep(0.5)


def test_an_httproute_crd_installed_later_is_watched_without_kopfs_rescan(
    crd, namespace: str, httproute_crd: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # kopf logs in as the kubernetes client does, from the default kubeconfig (read at import).
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(crd.kubeconfig))
    api = config.new_client_from_config(str(crd.kubeconfig))  # type: ignore[no-untyped-call]
    custom = client.CustomObjectsApi(api)
    late = main.wire(Settings(resync_seconds=2.0), Kube(api))
    late.settings.scanning.disabled = True  # kopf alone would now never see the new CRD

    def routes() -> list[str]:
        found = custom.list_namespaced_custom_object(*ROUTES, namespace, "httproutes")
        return [item["metadata"]["name"] for item in found["items"]]

    async def scenario() -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        operator = asyncio.create_task(main.operate(
            late, namespaces=[namespace], stop_flag=stop, ready_flag=ready
        ))  # fmt: skip
        try:
            await asyncio.wait_for(ready.wait(), timeout=60)
            assert _watched_httproutes(late) == []
            await asyncio.to_thread(httproute_crd)
            await _until("kopf watches HTTPRoutes",
                         lambda: bool(_watched_httproutes(late)), timeout=30)  # fmt: skip
            assert _watched_httproutes(late) == ["gateway.networking.k8s.io/v1 httproutes"]

            doc = good_spec("routed")
            doc["spec"]["rollout"]["trafficRouting"] = {
                "gatewayAPI": {"parentRefs": [{"name": "gw"}]}
            }
            custom.create_namespaced_custom_object(*MD, namespace, "modeldeployments", doc)
            await _until("the operator creates the HTTPRoute", lambda: "routed" in routes(), 60)
            custom.patch_namespaced_custom_object(*MD, namespace, "modeldeployments", "routed", {
                "spec": {"rollout": {"trafficRouting": {"gatewayAPI": None, "replicaRatio": {}}}}
            })  # fmt: skip
            await _until("the operator deletes the HTTPRoute", lambda: routes() == [], 60)
        finally:
            stop.set()
            await asyncio.wait_for(operator, timeout=30)

    asyncio.run(scenario())


def _established_event() -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(HTTPROUTE_CRD)
    body["status"] = {"conditions": [{"type": "NamesAccepted", "status": "True"},
                                     {"type": "Established", "status": "True"}]}  # fmt: skip
    return {"type": "MODIFIED", "object": body}


def test_crds_of_other_kinds_and_unestablished_ones_change_nothing(crd) -> None:
    api = config.new_client_from_config(str(crd.kubeconfig))  # type: ignore[no-untyped-call]
    late = late_kinds.register(kopf.OperatorRegistry(), Kube(api), kopf.OperatorSettings(),
                               late_kinds.Insights(), CHILD_KINDS)  # fmt: skip
    assert set(late.by_crd) == {"httproutes.gateway.networking.k8s.io"}
    pending = _established_event()
    pending["object"]["status"]["conditions"][1]["status"] = "False"
    deleted = {**_established_event(), "type": "DELETED"}
    other = _established_event()
    other["object"]["metadata"]["name"] = "widgets.example.com"

    async def scenario() -> None:
        for event in (pending, deleted, other):
            # Each returns at once: no wait for discovery, no rescan.
            await asyncio.wait_for(late.on_event(event), timeout=1)  # type: ignore[arg-type]

    asyncio.run(scenario())
    assert _watched_httproutes(late) == []
