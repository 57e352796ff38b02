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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import kopf
from kopf._cogs.structs.references import Insights
from kopf._core.reactor.observation import process_discovered_resource_event

from modeldeploy.core.children import ChildKind
from modeldeploy.runtime.kube import Kube

log = logging.getLogger(__name__)
CRDS: Final = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
DISCOVERY_WAIT_SECONDS: Final = 60.0
"""How long to try to get an Established CRD's kind watched before giving up (discovery
normally serves it within milliseconds; an API server that never does has a problem of its
own)."""
POLL_SECONDS: Final = 0.25
SETTLE_SECONDS: Final = 1.0

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
    by_crd: dict[str, ChildKind]
    """The kinds to watch, by the name of their CRD."""

    async def on_event(self, event: kopf.RawEvent) -> None:
        """Have kopf watch the kind of an Established CRD it does not watch yet."""
        body = event["object"]
        target = self.by_crd.get(body["metadata"]["name"])
        if target is None or event["type"] == "DELETED" or not _established(body):
            return
        kind, group, version, plural = target.kind, target.group, target.version, target.plural
        give_up, rescans = time.monotonic() + DISCOVERY_WAIT_SECONDS, 0
        while not self._watched(group, plural):
            if time.monotonic() > give_up:
                log.warning(
                    "the CRD %s is Established, but after %.0f s kopf still does not watch "
                    "%s/%s %s: the operator will not see its %ss until it restarts",
                    body["metadata"]["name"], DISCOVERY_WAIT_SECONDS, group, version, plural,
                    kind,
                )  # fmt: skip
                return
            if not await self._serves(group, version, plural):
                await asyncio.sleep(POLL_SECONDS)
                continue
            try:
                await process_discovered_resource_event(
                    raw_event={"type": "MODIFIED", "object": body},
                    settings=self.settings,
                    registry=self.registry,
                    insights=self.insights,
                )
                rescans += 1
            except Exception as exc:  # kopf's discovery reads failed for now: try again
                log.warning("rescanning %s for kopf: %s; will try again", group, exc)
            # A rescan replaces what kopf watches in the group with what discovery served when
            # it read it: one kopf began earlier (another CRD of the group) can still finish
            # after this one and drop the kind again. Look again a moment later.
            await asyncio.sleep(SETTLE_SECONDS)
        if rescans:
            log.info("watching %ss: their CRD %s was installed after the operator started",
                     kind, body["metadata"]["name"])  # fmt: skip

    def _watched(self, group: str, plural: str) -> bool:
        return any(r.group == group and r.plural == plural for r in self.insights.watched_resources)

    async def _serves(self, group: str, version: str, plural: str) -> bool:
        try:
            return await asyncio.to_thread(self.kube.serves, group, version, plural)
        except Exception as exc:  # the API server out of reach for a moment: ask again
            log.warning("reading discovery of %s/%s: %s; will try again", group, version, exc)
            return False


def register(
    registry: kopf.OperatorRegistry,
    kube: Kube,
    settings: kopf.OperatorSettings,
    insights: Insights,
    kinds: Iterable[ChildKind],
) -> LateKinds:
    """Watch the CRDs of `kinds`. Built-in kinds are left out: a CRD's group always has a dot
    (the API server refuses one without), theirs do not."""
    by_crd = {f"{k.plural}.{k.group}": k for k in kinds if "." in k.group}
    late = LateKinds(registry, kube, settings, insights, by_crd)

    @kopf.on.event(*CRDS, registry=registry)
    async def on_crd(event: kopf.RawEvent, **_: Any) -> None:
        await late.on_event(event)

    return late
