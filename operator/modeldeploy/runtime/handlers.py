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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import kopf

from modeldeploy.api import GROUP, PLURAL, VERSION
from modeldeploy.core.children import CHILD_KINDS, ChildKind
from modeldeploy.core.naming import DEPLOYMENT_LABEL, MANAGED_BY
from modeldeploy.core.settings import Settings
from modeldeploy.runtime import operator_metrics
from modeldeploy.runtime.errors import KubeError
from modeldeploy.runtime.kube import Kube
from modeldeploy.runtime.providers import MetricsProviders
from modeldeploy.runtime.reconcile import Reconciled, reconcile

log = logging.getLogger(__name__)
TICK_SECONDS = 1.0


_STATUS_READ: dict[str | None, tuple[str, ...] | None] = {
    None: None,  # the ModelDeployment itself: all of its status
    "Deployment": ("conditions", "replicas", "readyReplicas", "availableReplicas",
                   "updatedReplicas", "observedGeneration"),
}  # fmt: skip
"""Status fields reconcile reads, by kind; the index keeps no other status (memory: the
operator holds a copy of every child it manages)."""


def _essentials(body: Mapping[str, Any], kind: str | None) -> dict[str, Any]:
    """What reconcile reads of an object: no managedFields and no unread status, which are
    most of a child's bytes."""
    meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    copy = {"apiVersion": body.get("apiVersion"), "kind": kind or body.get("kind"),
            "metadata": meta, "spec": body.get("spec")}  # fmt: skip
    status = body.get("status")
    keys = _STATUS_READ.get(kind, ())
    if status and keys is None:
        copy["status"] = status
    elif status and keys:
        copy["status"] = {k: status[k] for k in keys if k in status}
    return copy


def _snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """A detached copy of a ModelDeployment (kopf bodies change under our feet)."""
    detached: dict[str, Any] = json.loads(json.dumps(_essentials(body, None)))
    return detached


class _Child(NamedTuple):
    """A child as the index keeps it: identity, version, and the object as compact JSON.

    JSON text is a tenth of the memory of the same object as Python dicts, and the operator
    holds every child it manages; reconcile parses the few it needs, when it runs."""

    kind: str
    name: str
    version: str
    text: str

    @classmethod
    def of(cls, body: Mapping[str, Any], kind: str) -> _Child:
        meta = body["metadata"]
        text = json.dumps(_essentials(body, kind), separators=(",", ":"))
        return cls(kind, meta["name"], str(meta.get("resourceVersion")), text)


class _NoDiffBase(kopf.DiffBaseStorage):
    """kopf builds a deep-copied "diff base" of every object on every watch event, for change
    handlers. This operator has none (see the module docstring), so build nothing: at a
    thousand objects that copying was a quarter of the operator's CPU."""

    def build(
        self,
        *,
        body: kopf.Body,  # noqa: ARG002
        extra_fields: Iterable[Any] | None = None,  # noqa: ARG002
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:  # noqa: ARG002
        return None

    def store(
        self,
        *,
        body: kopf.Body,  # noqa: ARG002
        patch: kopf.Patch,  # noqa: ARG002
        essence: kopf.BodyEssence,  # noqa: ARG002
    ) -> None:
        return None


def _index_id(kind: ChildKind) -> str:
    """The id of a child kind's kopf index, which kopf also passes handlers as a keyword."""
    return f"children_{kind.plural}"


def _fingerprint(body: dict[str, Any], children: list[_Child]) -> tuple[str, ...]:
    """resourceVersions of the object and its children: equal means nothing changed."""
    versions = sorted(f"{c.kind}/{c.name}@{c.version}" for c in children)
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
    providers: MetricsProviders
    tracked: dict[tuple[str, str], _Tracked] = field(default_factory=dict)
    indexes: dict[str, Any] = field(default_factory=dict)
    """kopf's child indexes, as handed to the handlers (the same objects for the whole run)."""

    def children(self, key: tuple[str, str]) -> list[_Child]:
        return [
            child for kind in CHILD_KINDS for child in self.indexes[_index_id(kind)].get(key, [])
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
                reconciled = await asyncio.to_thread(self._reconcile, entry.body, children)
            except KubeError as exc:
                log.warning("reconciling ModelDeployment %s/%s: %s", *key, exc)
                entry.wake_at = datetime.now(UTC)  # try again on a later tick
                entry.fingerprint = None
                return
            for event in reconciled.events:
                await asyncio.to_thread(self.kube.post_event, entry.body, event.type,
                                        event.reason, event.message)  # fmt: skip
        # After writes the next watch events change the fingerprint anyway; remember it only
        # when this reconcile found everything in place.
        entry.fingerprint = None if reconciled.writes else seen
        entry.wake_at = reconciled.wake_at

    def _reconcile(self, body: dict[str, Any], children: list[_Child]) -> Reconciled:
        parsed = [json.loads(child.text) for child in children]
        return reconcile(self.kube, body, parsed, self.settings, datetime.now(UTC), self.providers)

    async def resync_forever(self) -> None:
        """Reconcile what is due: a time-based step, a retry, or the periodic drift check.

        Each due object gets a task of its own, so one slow reconcile (a pod that answers its
        metrics scrape late) delays nobody else's step; an object whose reconcile is still
        running is not queued twice."""
        running: set[asyncio.Task[None]] = set()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now, clock = datetime.now(UTC), time.monotonic()
            due = [
                key
                for key, entry in self.tracked.items()
                if not entry.lock.locked()
                and (
                    (entry.wake_at is not None and now >= entry.wake_at)
                    or clock - entry.last_run >= self.settings.resync_seconds
                )
            ]
            for key in due:
                self.tracked[key].last_run = clock  # checked now, even if nothing changed
                task = asyncio.create_task(self._resync(key), name=f"resync {key[0]}/{key[1]}")
                running.add(task)
                task.add_done_callback(running.discard)

    async def _resync(self, key: tuple[str, str]) -> None:
        try:
            await self.run(key)
        except Exception:  # one object's bug must not stop the others' resync
            log.exception("resync of ModelDeployment %s/%s failed", *key)


def register(registry: kopf.OperatorRegistry, settings: Settings, kube: Kube) -> None:
    """Register every handler on `registry` (explicit, so tests and `run` share one setup)."""
    op = _Operator(settings, kube, MetricsProviders(kube))
    managed: dict[str, Any] = {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        DEPLOYMENT_LABEL: kopf.PRESENT,
    }

    for kind in CHILD_KINDS:

        def index_child(
            body: kopf.Body,
            namespace: str | None,
            labels: kopf.Labels,
            _kind: str = kind.kind,
            **_: Any,
        ) -> dict[tuple[str | None, str], _Child]:
            return {(namespace, labels[DEPLOYMENT_LABEL]): _Child.of(body, _kind)}

        kopf.index(
            kind.group, kind.version, kind.plural, labels=managed, id=_index_id(kind),
            registry=registry,
        )(index_child)  # fmt: skip

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def on_event(event: kopf.RawEvent, body: kopf.Body, **kwargs: Any) -> None:
        if not op.indexes:
            op.indexes.update({k: v for k, v in kwargs.items() if k.startswith("children_")})
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if event["type"] == "DELETED":
            op.tracked.pop(key, None)
            op.providers.forget_owner(*key)
            operator_metrics.forget(*key)
            return
        snapshot = _snapshot(body)
        entry = op.tracked.setdefault(key, _Tracked(snapshot))
        entry.body = snapshot
        await op.run(key)

    # A registry of our own does not get kopf's default login handlers: log in the way the
    # kubernetes client does (in-cluster service account, else the kubeconfig).
    kopf.on.login(registry=registry)(kopf.login_via_client)

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Events come from reconcile's decisions only (posted by kube.py), never from kopf's
        # own log lines.
        settings.posting.enabled = False
        settings.persistence.diffbase_storage = _NoDiffBase()
        settings.watching.server_timeout = 300
        asyncio.get_running_loop().create_task(op.resync_forever(), name="resync")

    @kopf.on.probe(id="managed", registry=registry)
    def count_managed(**kwargs: Any) -> dict[str, int]:
        counts = {}
        for kind in CHILD_KINDS:
            index = kwargs[_index_id(kind)]
            counts[kind.kind] = sum(len(index[k]) for k in index)
            operator_metrics.MANAGED.labels(kind=kind.kind).set(counts[kind.kind])
        return counts
