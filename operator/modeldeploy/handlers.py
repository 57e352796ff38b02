"""kopf glue: watch ModelDeployments and their children, and call reconcile. No decisions here.

Only event handlers and a timer are used, never kopf's change-detection handlers: those
persist progress in annotations on every run, and the operator must not write anything when
nothing changed. Children are watched into an in-memory index (one watch per kind), so a
reconcile reads no object from the API server except the Secrets and claims a spec names.
"""

from __future__ import annotations

import asyncio
import json
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

_CHILD_RESOURCES = {
    "Deployment": ("apps", "v1", "deployments"),
    "Service": ("", "v1", "services"),
    "HorizontalPodAutoscaler": ("autoscaling", "v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy", "v1", "poddisruptionbudgets"),
    "HTTPRoute": ("gateway.networking.k8s.io", "v1", "httproutes"),
}
assert _CHILD_RESOURCES.keys() == CHILD_KINDS.keys()


def _snapshot(kind: str, body: kopf.Body) -> dict[str, Any]:
    """A detached copy of what reconcile compares (kopf bodies change under our feet)."""
    copy: dict[str, Any] = json.loads(
        json.dumps({k: body.get(k) for k in ("apiVersion", "metadata", "spec", "status")})
    )
    copy["kind"] = kind
    copy["metadata"].pop("managedFields", None)
    return copy


def _fingerprint(body: kopf.Body, children: list[dict[str, Any]]) -> tuple[str, ...]:
    """resourceVersions of the object and its children: equal means nothing changed."""
    versions = sorted(f"{c['kind']}/{c['metadata']['name']}@{c['metadata'].get('resourceVersion')}"
                      for c in children)  # fmt: skip
    return (str(body["metadata"].get("resourceVersion")), *versions)


def register(registry: kopf.OperatorRegistry, settings: Settings, kube: Kube) -> None:
    """Register every handler on `registry` (explicit, so tests and `run` share one setup)."""
    collector = Collector(kube)
    managed: dict[str, Any] = {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        DEPLOYMENT_LABEL: kopf.PRESENT,
    }

    for kind, (group, version, plural) in _CHILD_RESOURCES.items():

        def index_child(
            body: kopf.Body, namespace: str | None, labels: kopf.Labels, _kind: str = kind, **_: Any
        ) -> dict[tuple[str | None, str], dict[str, Any]]:
            return {(namespace, labels[DEPLOYMENT_LABEL]): _snapshot(_kind, body)}

        kopf.index(
            group, version, plural, labels=managed, id=f"children_{plural}", registry=registry
        )(index_child)

    async def run(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        lock: asyncio.Lock = memo.setdefault("lock", asyncio.Lock())
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        children = [
            child
            for _, _, plural in _CHILD_RESOURCES.values()
            for child in kwargs[f"children_{plural}"].get(key, [])
        ]
        # Nothing changed since the last reconcile and no time-based step is due: skip it.
        # This keeps an idle operator near zero CPU however many objects it manages.
        seen = _fingerprint(body, children)
        wake_at = memo.get("wake_at")
        due = wake_at is not None and datetime.now(UTC) >= wake_at
        if memo.get("fingerprint") == seen and not due:
            return
        async with lock:
            try:
                outcome = await asyncio.to_thread(
                    reconcile,
                    kube,
                    json.loads(json.dumps(dict(body))),
                    children,
                    settings,
                    datetime.now(UTC),
                    collector,
                )
            except KubeError as exc:
                raise kopf.TemporaryError(str(exc), delay=exc.retry_delay) from exc
        for event in outcome.events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        # After writes the next watch events change the fingerprint anyway; remember it only
        # when this reconcile found everything in place.
        memo["fingerprint"] = None if outcome.writes else seen
        memo["wake_at"] = outcome.wake_at

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def on_event(event: kopf.RawEvent, **kwargs: Any) -> None:
        if event["type"] in (None, "ADDED", "MODIFIED"):
            await run(**kwargs)
        elif event["type"] == "DELETED":
            meta = kwargs["body"]["metadata"]
            metrics.forget(meta["namespace"], meta["name"])

    @kopf.timer(GROUP, VERSION, PLURAL, interval=settings.resync_seconds, registry=registry)
    async def resync(**kwargs: Any) -> None:
        """Repairs drift (hand edits, deleted children) and advances time-based steps."""
        await run(**kwargs)

    # A registry of our own does not get kopf's default login handlers: log in the way the
    # kubernetes client does (in-cluster service account, else the kubeconfig).
    kopf.on.login(registry=registry)(kopf.login_via_client)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Events come from reconcile's decisions only, never from kopf's own log lines.
        settings.posting.loggers = False
        settings.watching.server_timeout = 300
        settings.persistence.finalizer = f"{GROUP}/finalizer"

    @kopf.on.probe(id="managed", registry=registry)
    def count_managed(**kwargs: Any) -> dict[str, int]:
        counts = {}
        for kind, (_, _, plural) in _CHILD_RESOURCES.items():
            index = kwargs[f"children_{plural}"]
            counts[kind] = sum(len(index[k]) for k in index)
            metrics.MANAGED.labels(kind=kind).set(counts[kind])
        return counts
