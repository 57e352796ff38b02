"""kopf glue: watch ModelDeployments and their children, and call reconcile. No decisions here.

Only watch-event handlers and indexes are used. kopf's change handlers persist progress in
annotations on every run (and the operator must write nothing when nothing changed); kopf's
timers and daemons put a finalizer on every object (so a ModelDeployment could not be deleted
once the operator is gone). Resync is therefore a loop of our own (scheduler.py), which this
module only feeds: the objects from their watch events, their children from the indexes.
Children are watched into in-memory indexes (one watch per kind), so a reconcile reads no
object from the API server except the Secrets and claims a spec names.

With several replicas every one runs these handlers (kopf standalone, no kopf peering): the
watches and indexes stay warm on a standby, and the scheduler reconciles only while this
replica leads (runtime/leader.py). kopf itself writes nothing here: no finalizers (no timers,
daemons or deletion handlers), no progress or diff-base annotations (no change handlers, and
_NoDiffBase), no Events (posting off); tests/integration/test_ha.py counts a standby's requests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from modeldeploy.api import GROUP, PLURAL, VERSION
from modeldeploy.core.children import CHILD_KINDS, DEPLOYMENT, JOB, ChildKind
from modeldeploy.core.events import Event
from modeldeploy.core.naming import DEPLOYMENT_LABEL, MANAGED_BY
from modeldeploy.core.settings import Settings
from modeldeploy.runtime import operator_metrics
from modeldeploy.runtime.kube import Kube
from modeldeploy.runtime.leader import Alone, Leadership
from modeldeploy.runtime.providers import MetricsProviders
from modeldeploy.runtime.reconcile import Reconciled, reconcile
from modeldeploy.runtime.scheduler import Child, Key, Scheduler

_STATUS_READ: dict[str | None, tuple[str, ...] | None] = {
    None: None,  # the ModelDeployment itself: all of its status
    DEPLOYMENT.kind: ("conditions", "replicas", "readyReplicas", "availableReplicas",
                   "updatedReplicas", "observedGeneration"),
    JOB.kind: ("conditions", "succeeded", "failed", "active"),  # a hook's verdict
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


def _child(body: Mapping[str, Any], kind: str) -> Child:
    """A child as the index keeps it (compact JSON of what reconcile reads)."""
    meta = body["metadata"]
    text = json.dumps(_essentials(body, kind), separators=(",", ":"))
    return Child(kind, meta["name"], str(meta.get("resourceVersion")), text)


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


def register(
    registry: kopf.OperatorRegistry,
    settings: Settings,
    kube: Kube,
    leader: Leadership | None = None,
) -> None:
    """Register every handler on `registry` (explicit, so tests and `run` share one setup).
    `leader`: who may act (default: this process alone)."""
    leader = leader or Alone()
    providers = MetricsProviders(kube)
    indexes: dict[str, Any] = {}
    """kopf's child indexes, as handed to the handlers (the same objects for the whole run)."""

    def children(key: Key) -> list[Child]:
        return [child for kind in CHILD_KINDS for child in indexes[_index_id(kind)].get(key, [])]

    def reconcile_one(body: dict[str, Any], listed: list[Child]) -> Reconciled:
        parsed = [json.loads(child.text) for child in listed]
        # Status writes are conditional on the version this decision is read from.
        version = str(body["metadata"].get("resourceVersion") or "") or None
        deciding = kube.for_version(version) if version else kube
        return reconcile(deciding, body, parsed, settings, datetime.now(UTC), providers)

    def post_event(body: dict[str, Any], event: Event) -> None:
        kube.post_event(body, event.type, event.reason, event.message)

    scheduler = Scheduler(reconcile_one, post_event, children, settings.resync_seconds,
                          leading=leader.leading)  # fmt: skip
    leader.on_lead(scheduler.wake_all)
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
        ) -> dict[tuple[str | None, str], Child]:
            return {(namespace, labels[DEPLOYMENT_LABEL]): _child(body, _kind)}

        kopf.index(
            kind.group, kind.version, kind.plural, labels=managed, id=_index_id(kind),
            registry=registry,
        )(index_child)  # fmt: skip

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def on_event(event: kopf.RawEvent, body: kopf.Body, **kwargs: Any) -> None:
        if not indexes:
            indexes.update({k: v for k, v in kwargs.items() if k.startswith("children_")})
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if event["type"] == "DELETED":
            scheduler.forget(key)
            providers.forget_owner(*key)
            operator_metrics.forget(*key)
            return
        scheduler.track(key, _snapshot(body))
        await scheduler.run(key)

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
        asyncio.get_running_loop().create_task(scheduler.resync_forever(), name="resync")

    @kopf.on.probe(id="managed", registry=registry)
    def count_managed(**kwargs: Any) -> dict[str, int]:
        counts = {}
        for kind in CHILD_KINDS:
            index = kwargs[_index_id(kind)]
            counts[kind.kind] = sum(len(index[k]) for k in index)
            operator_metrics.MANAGED.labels(kind=kind.kind).set(counts[kind.kind])
        return counts
