"""kopf glue: watch ModelDeployments and their children, and call reconcile. No decisions here.

Only watch-event handlers and indexes are used. kopf's change handlers persist progress in
annotations on every run (and the operator must write nothing when nothing changed); kopf's
timers and daemons put a finalizer on every object (so a ModelDeployment could not be deleted
once the operator is gone). Resync is therefore a loop of our own: every second it reconciles
the objects whose resync interval has passed or whose rollout has a time-based step due.
Children are watched into in-memory indexes (one watch per kind), so a reconcile reads no
object from the API server except the Secrets and claims a spec names.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from modeldeploy import metrics
from modeldeploy.api import GROUP, PLURAL, VERSION
from modeldeploy.collect import Collector
from modeldeploy.errors import KubeError
from modeldeploy.kube import CHILD_KINDS, Kube
from modeldeploy.naming import DEPLOYMENT_LABEL, MANAGED_BY
from modeldeploy.reconcile import reconcile
from modeldeploy.settings import Settings

log = logging.getLogger(__name__)
_CHILD_RESOURCES = {
    "Deployment": ("apps", "v1", "deployments"),
    "Service": ("", "v1", "services"),
    "HorizontalPodAutoscaler": ("autoscaling", "v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy", "v1", "poddisruptionbudgets"),
    "HTTPRoute": ("gateway.networking.k8s.io", "v1", "httproutes"),
}
assert _CHILD_RESOURCES.keys() == CHILD_KINDS.keys()
TICK_SECONDS = 1.0


def _snapshot(body: Mapping[str, Any], kind: str | None = None) -> dict[str, Any]:
    """A detached copy of what reconcile reads (kopf bodies change under our feet)."""
    keys = ("apiVersion", "kind", "metadata", "spec", "status")
    copy: dict[str, Any] = json.loads(json.dumps({k: body.get(k) for k in keys}))
    if kind:
        copy["kind"] = kind
    copy["metadata"].pop("managedFields", None)
    return copy


def _fingerprint(body: dict[str, Any], children: list[dict[str, Any]]) -> tuple[str, ...]:
    """resourceVersions of the object and its children: equal means nothing changed."""
    versions = sorted(f"{c['kind']}/{c['metadata']['name']}@{c['metadata'].get('resourceVersion')}"
                      for c in children)  # fmt: skip
    return (str(body["metadata"].get("resourceVersion")), *versions)


@dataclass
class _Tracked:
    """What the operator remembers of one ModelDeployment between reconciles (nothing that
    matters after a restart: the rollout's state is in its status)."""

    body: dict[str, Any]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    fingerprint: tuple[str, ...] | None = None
    wake_at: datetime | None = None
    last_run: float = 0.0


@dataclass
class _Operator:
    settings: Settings
    kube: Kube
    collector: Collector
    tracked: dict[tuple[str, str], _Tracked] = field(default_factory=dict)
    indexes: dict[str, Any] = field(default_factory=dict)
    """kopf's child indexes, as handed to the handlers (the same objects for the whole run)."""

    def children(self, key: tuple[str, str]) -> list[dict[str, Any]]:
        return [
            child
            for _, _, plural in _CHILD_RESOURCES.values()
            for child in self.indexes[f"children_{plural}"].get(key, [])
        ]

    async def run(self, key: tuple[str, str]) -> None:
        entry = self.tracked.get(key)
        if entry is None or not self.indexes:
            return
        children = self.children(key)
        # Nothing changed since the last reconcile and nothing is due: skip it. This keeps an
        # idle operator near zero CPU however many objects it manages.
        seen = _fingerprint(entry.body, children)
        due = entry.wake_at is not None and datetime.now(UTC) >= entry.wake_at
        if entry.fingerprint == seen and not due:
            return
        async with entry.lock:
            entry.last_run = time.monotonic()
            try:
                outcome = await asyncio.to_thread(
                    reconcile, self.kube, entry.body, children, self.settings,
                    datetime.now(UTC), self.collector,
                )  # fmt: skip
            except KubeError as exc:
                log.warning("reconciling ModelDeployment %s/%s: %s", *key, exc)
                entry.wake_at = datetime.now(UTC)  # try again on a later tick
                entry.fingerprint = None
                return
            for event in outcome.events:
                await asyncio.to_thread(self.kube.post_event, entry.body, event.type,
                                        event.reason, event.message)  # fmt: skip
        # After writes the next watch events change the fingerprint anyway; remember it only
        # when this reconcile found everything in place.
        entry.fingerprint = None if outcome.writes else seen
        entry.wake_at = outcome.wake_at

    async def resync_forever(self) -> None:
        """Reconcile what is due: a time-based step, a retry, or the periodic drift check."""
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now, clock = datetime.now(UTC), time.monotonic()
            due = [
                key
                for key, entry in self.tracked.items()
                if (entry.wake_at is not None and now >= entry.wake_at)
                or clock - entry.last_run >= self.settings.resync_seconds
            ]
            for key in due:
                self.tracked[key].last_run = clock  # checked now, even if nothing changed
                try:
                    await self.run(key)
                except Exception:  # one object's bug must not stop the others' resync
                    log.exception("resync of ModelDeployment %s/%s failed", *key)


def register(registry: kopf.OperatorRegistry, settings: Settings, kube: Kube) -> None:
    """Register every handler on `registry` (explicit, so tests and `run` share one setup)."""
    op = _Operator(settings, kube, Collector(kube))
    managed: dict[str, Any] = {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        DEPLOYMENT_LABEL: kopf.PRESENT,
    }

    for kind, (group, version, plural) in _CHILD_RESOURCES.items():

        def index_child(
            body: kopf.Body, namespace: str | None, labels: kopf.Labels, _kind: str = kind, **_: Any
        ) -> dict[tuple[str | None, str], dict[str, Any]]:
            return {(namespace, labels[DEPLOYMENT_LABEL]): _snapshot(body, _kind)}

        kopf.index(
            group, version, plural, labels=managed, id=f"children_{plural}", registry=registry
        )(index_child)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def on_event(event: kopf.RawEvent, body: kopf.Body, **kwargs: Any) -> None:
        if not op.indexes:
            op.indexes.update({k: v for k, v in kwargs.items() if k.startswith("children_")})
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if event["type"] == "DELETED":
            op.tracked.pop(key, None)
            op.collector.forget_owner(*key)
            metrics.forget(*key)
            return
        entry = op.tracked.setdefault(key, _Tracked(_snapshot(body)))
        entry.body = _snapshot(body)
        await op.run(key)

    # A registry of our own does not get kopf's default login handlers: log in the way the
    # kubernetes client does (in-cluster service account, else the kubeconfig).
    kopf.on.login(registry=registry)(kopf.login_via_client)

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Events come from reconcile's decisions only (posted by kube.py), never from kopf's
        # own log lines.
        settings.posting.enabled = False
        settings.watching.server_timeout = 300
        asyncio.get_running_loop().create_task(op.resync_forever(), name="resync")

    @kopf.on.probe(id="managed", registry=registry)
    def count_managed(**kwargs: Any) -> dict[str, int]:
        counts = {}
        for kind, (_, _, plural) in _CHILD_RESOURCES.items():
            index = kwargs[f"children_{plural}"]
            counts[kind] = sum(len(index[k]) for k in index)
            metrics.MANAGED.labels(kind=kind).set(counts[kind])
        return counts
