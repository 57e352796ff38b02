"""kopf glue: make sure kopf watches a child kind whose CRD is installed after the operator
started (HTTPRoute, when Gateway API is installed later).

kopf decides what to watch from the API server's discovery (/apis), and rescans a CRD's group on
each event of that CRD. But the CRD's last event, Established, can arrive before discovery
serves the new resource: kube-apiserver updates discovery in a controller of its own, after the
condition is set (Kubernetes does not promise the order; hack/cluster/crd_discovery_lag.py saw
it in 2 installs of 105 on a 2-core machine). kopf's rescan then finds nothing and nothing makes it
look again, so the operator never sees its own HTTPRoutes until restarted: a route it made would
survive a switch back to replicaRatio. So on each event of a child kind's CRD, once it is
Established and the kind is still not watched, this waits until discovery serves the kind and
has kopf rescan the group with its own function, exactly as it would on the next CRD event.

kopf exposes no public way to ask for a rescan, so two of its internals are used here and
nowhere else; tests/integration/test_late_kinds.py proves they still do what this relies on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import kopf
from kopf._cogs.structs.references import Insights
from kopf._core.reactor.observation import process_discovered_resource_event

from modeldeploy.errors import KubeError
from modeldeploy.kube import Kube

log = logging.getLogger(__name__)
CRDS: Final = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
DISCOVERY_WAIT_SECONDS: Final = 60.0
"""How long to wait for discovery to serve an Established CRD's kind before giving up (it
normally takes milliseconds; an API server that never serves it has a problem of its own)."""
POLL_SECONDS: Final = 0.25

__all__ = ["Insights", "LateKinds", "register"]


def _established(body: Mapping[str, Any]) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


@dataclass
class LateKinds:
    """The CRD event handler's state: `settings` and `insights` must be the objects given to
    kopf.operator, so that a rescan changes what kopf watches."""

    registry: kopf.OperatorRegistry
    kube: Kube
    settings: kopf.OperatorSettings
    insights: Insights
    by_crd: dict[str, tuple[str, str, str, str]]
    """CRD name -> (kind, group, version, plural)."""

    async def on_event(self, event: kopf.RawEvent) -> None:
        """Have kopf watch the kind of an Established CRD it does not watch yet."""
        body = event["object"]
        target = self.by_crd.get(body["metadata"]["name"])
        if target is None or event["type"] == "DELETED" or not _established(body):
            return
        kind, group, version, plural = target
        if self._watched(group, plural) or not await self._served(body, group, version, plural):
            return
        if self._watched(group, plural):
            return  # kopf's own rescan of this event got there first
        await process_discovered_resource_event(
            raw_event={"type": "MODIFIED", "object": body},
            settings=self.settings,
            registry=self.registry,
            insights=self.insights,
        )
        if self._watched(group, plural):
            log.info("watching %ss: their CRD %s was installed after the operator started",
                     kind, body["metadata"]["name"])  # fmt: skip

    def _watched(self, group: str, plural: str) -> bool:
        return any(r.group == group and r.plural == plural for r in self.insights.watched_resources)

    async def _served(self, crd: Mapping[str, Any], group: str, version: str, plural: str) -> bool:
        """Wait until discovery serves the kind; False if it did not within the wait."""
        give_up = time.monotonic() + DISCOVERY_WAIT_SECONDS
        while True:
            try:
                if await asyncio.to_thread(self.kube.serves, group, version, plural):
                    return True
            except KubeError as exc:
                log.warning("%s; will try again", exc)
            if time.monotonic() > give_up:
                log.warning(
                    "the CRD %s is Established but the API server has not served %s/%s %s for "
                    "%.0f s: the operator will not see them until it restarts",
                    crd["metadata"]["name"], group, version, plural, DISCOVERY_WAIT_SECONDS,
                )  # fmt: skip
                return False
            await asyncio.sleep(POLL_SECONDS)


def register(
    registry: kopf.OperatorRegistry,
    kube: Kube,
    settings: kopf.OperatorSettings,
    insights: Insights,
    kinds: Mapping[str, tuple[str, str, str]],
) -> LateKinds:
    """Watch the CRDs of `kinds` (kind -> (group, version, plural)). Built-in kinds are left
    out: a CRD's group always has a dot (the API server refuses one without), theirs do not."""
    late = LateKinds(
        registry, kube, settings, insights,
        {f"{plural}.{group}": (kind, group, version, plural)
         for kind, (group, version, plural) in kinds.items() if "." in group},
    )  # fmt: skip

    @kopf.on.event(*CRDS, registry=registry)
    async def on_crd(event: kopf.RawEvent, **_: Any) -> None:
        await late.on_event(event)

    return late
