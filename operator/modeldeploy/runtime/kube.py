"""The only module that talks to the API server.

Writes use server-side apply under one field manager, so the operator owns exactly the fields
it sends and converges any drift; every write is counted (operator metrics, and the tests that
prove a no-op reconcile writes nothing). Errors are wrapped with what was being done.

Every write of a managed object passes `fence` first: a replica that does not hold the leader
Lease (runtime/leader.py) sends none, whichever code path asks (NotLeadingError is raised instead).
Status writes carry the resourceVersion of the object the decision was read from
(`for_version`), so the API server refuses (409, ConflictError) a status decided on a stale read.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from modeldeploy.api import GROUP, KIND, PLURAL, VERSION
from modeldeploy.core.children import CHILD_KINDS, child_kind
from modeldeploy.core.naming import FIELD_MANAGER, MANAGED_BY, label_selector, owner_selector
from modeldeploy.runtime import operator_metrics
from modeldeploy.runtime.errors import KubeError

log = logging.getLogger(__name__)
SCALE_MANAGER: Final = f"{FIELD_MANAGER}-scale"
"""Field manager of replica-only applies to old revisions (see plan._scale_only)."""
TIMEOUT: Final = (5.0, 60.0)
"""(connect, read) seconds for every request: without one, a connection that silently died
would block its reconcile thread, and that object's rollout, forever."""
REFERENCE_KINDS: Final = {
    "Secret": "v1",
    "ConfigMap": "v1",
    "PersistentVolumeClaim": "v1",
    "CustomResourceDefinition": "apiextensions.k8s.io/v1",
}


class NotLeadingError(Exception):
    """A write stopped before it was sent: this replica does not lead (it never did, or its
    Lease ran out). Not a failure of the object: the leader writes instead."""


class ConflictError(KubeError):
    """409: the object changed since the version a write was conditional on (or a Lease was
    created or renewed by another replica first). Read again and decide again."""


def _always() -> bool:
    return True


@dataclass
class _Discovery:
    """The dynamic client, built once and shared by every view of one Kube."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    client: DynamicClient | None = None


def load_config(kubeconfig: str | None = None, connections: int = 10) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG).

    `connections`: kept-alive connections to the API server. Give it one per thread that may
    call at once: a smaller pool drops connections after use, and every new one costs a TLS
    handshake on both sides (it was the largest single cost of the API server in
    benchmarks/operator_scale.py before this was set).
    """
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)


@dataclass
class Kube:
    """API access for the reconcile shell; one instance per operator process."""

    api: client.ApiClient
    fence: Callable[[], bool] = field(default=_always, repr=False)
    """Whether this replica may write now (the leader elector's answer; always, by default:
    the CLI and single-process tests)."""
    decided_on: str | None = None
    """resourceVersion that status writes are conditional on (see for_version)."""
    _discovery: _Discovery = field(default_factory=_Discovery, init=False, repr=False)

    @property
    def dynamic(self) -> DynamicClient:
        # Discovery costs requests and writes a cache file: once, on first use, by one thread.
        with self._discovery.lock:
            if self._discovery.client is None:
                self._discovery.client = DynamicClient(self.api)  # type: ignore[no-untyped-call]
            return self._discovery.client

    def for_version(self, resource_version: str) -> Kube:
        """This Kube for one reconcile of an object read at `resource_version`: its status
        writes name that version, so the API server refuses them (ConflictError) if the object
        changed since, instead of a decision made on a stale read overwriting a newer one."""
        view = dataclasses.replace(self, decided_on=resource_version)
        view._discovery = self._discovery
        return view

    def _check_fence(self, doing: str) -> None:
        if not self.fence():
            raise NotLeadingError(f"{doing}: not sent, this replica does not hold the leader Lease")

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def apply(self, obj: dict[str, Any], *, manager: str = FIELD_MANAGER) -> None:
        kind, meta = obj["kind"], obj["metadata"]
        self._check_fence(f"applying {kind} {meta['namespace']}/{meta['name']}")
        try:
            reply = self.dynamic.server_side_apply(  # type: ignore[no-untyped-call]
                self._resource(obj["apiVersion"], kind),
                body=obj,
                field_manager=manager,
                force_conflicts=True,
                serialize=False,  # nothing reads the reply: do not build objects from it
                _request_timeout=TIMEOUT,
            )
            _release(reply)
        except ApiException as exc:
            raise KubeError(f"applying {kind} {meta['namespace']}/{meta['name']}", exc) from exc
        operator_metrics.API_WRITES.labels(verb="apply", kind=kind).inc()

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self._check_fence(f"deleting {kind} {namespace}/{name}")
        try:
            self._resource(child_kind(kind).api_version, kind).delete(
                name=name,
                namespace=namespace,
                body={"propagationPolicy": "Background"},
                _request_timeout=TIMEOUT,
            )
        except NotFoundError:
            return
        except ApiException as exc:
            raise KubeError(f"deleting {kind} {namespace}/{name}", exc) from exc
        operator_metrics.API_WRITES.labels(verb="delete", kind=kind).inc()

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """A merge patch of the status, conditional on `decided_on` when set (ConflictError when
        the object changed since that version)."""
        doing = f"updating status of ModelDeployment {namespace}/{name}"
        self._check_fence(doing)
        resource = self._resource(f"{GROUP}/{VERSION}", KIND)
        body: dict[str, Any] = {"status": status}
        if self.decided_on is not None:
            body["metadata"] = {"resourceVersion": self.decided_on}
        try:
            reply = resource.status.patch(
                body=body,
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
                serialize=False,
                _request_timeout=TIMEOUT,
            )
            _release(reply)
        except ApiException as exc:
            if exc.status == 409:
                raise ConflictError(doing, exc) from exc
            raise KubeError(doing, exc) from exc
        operator_metrics.API_WRITES.labels(verb="patch", kind="ModelDeployment").inc()

    def exists(self, kind: str, namespace: str, name: str) -> bool:
        operator_metrics.API_READS.labels(kind=kind).inc()
        resource = self._resource(REFERENCE_KINDS[kind], kind)
        try:
            resource.get(
                name=name,
                namespace=namespace if resource.namespaced else None,
                _request_timeout=TIMEOUT,
            )
        except NotFoundError:
            return False
        except ApiException as exc:
            raise KubeError(f"reading {kind} {namespace}/{name}", exc) from exc
        return True

    def serves(self, group: str, version: str, plural: str) -> bool:
        """Whether the API server's discovery lists `plural` in `group/version`. A CRD is
        Established before discovery serves it (kube-apiserver updates discovery in a
        controller of its own), and kopf decides what to watch from discovery alone."""
        try:
            found = client.CustomObjectsApi(self.api).get_api_resources(
                group, version, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise KubeError(f"reading discovery of {group}/{version}", exc) from exc
        return any(resource.name == plural for resource in found.resources)

    def list_children(self, namespace: str, owner: str) -> list[dict[str, Any]]:
        """Live children of one ModelDeployment, read directly (the operator uses its watch
        cache instead; this serves the CLI and tests)."""
        selector = label_selector(
            {**owner_selector(owner), "app.kubernetes.io/managed-by": MANAGED_BY}
        )
        found: list[dict[str, Any]] = []
        for child in CHILD_KINDS:
            items = self._resource(child.api_version, child.kind).get(
                namespace=namespace, label_selector=selector
            )
            found.extend({**i.to_dict(), "kind": child.kind} for i in items.items)
        return found

    def patch_modeldeployment(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """A merge patch of the object itself (the CLI's promote, pause...)."""
        try:
            client.CustomObjectsApi(self.api).patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, patch, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                raise KubeError(f'ModelDeployment "{name}" not found in namespace {namespace}',
                                "") from exc  # fmt: skip
            raise KubeError(f"patching ModelDeployment {namespace}/{name}", exc) from exc

    def handled_action(self, namespace: str, name: str) -> str | None:
        """status.handledAction of a ModelDeployment (the CLI waits for its action there)."""
        try:
            obj = client.CustomObjectsApi(self.api).get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            raise KubeError(f"reading ModelDeployment {namespace}/{name}", exc) from exc
        status: dict[str, Any] = cast(dict[str, Any], obj).get("status") or {}
        handled = status.get("handledAction")
        return str(handled) if handled else None

    def warnings(self, namespace: str, name: str, since: datetime) -> list[tuple[str, str]]:
        """(reason, message) of the Warning Events on a ModelDeployment since a time."""
        selector = f"involvedObject.kind={KIND},involvedObject.name={name},type=Warning"
        try:
            found = client.CoreV1Api(self.api).list_namespaced_event(
                namespace, field_selector=selector, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            raise KubeError(
                f"listing the Events of ModelDeployment {namespace}/{name}", exc
            ) from exc
        return [
            (str(e.reason), str(e.message))
            for e in found.items
            if (e.last_timestamp or e.event_time or since) >= since.replace(microsecond=0)
        ]

    def ready_pods(self, namespace: str, selector: str) -> list[str]:
        """Names of the Ready pods matching a label selector (the analysis scrapes these)."""
        operator_metrics.API_READS.labels(kind="Pod").inc()
        try:
            pods = client.CoreV1Api(self.api).list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            raise KubeError(f"listing pods {selector} in {namespace}", exc) from exc
        ready = []
        for pod in pods.items:
            conditions = (pod.status.conditions if pod.status else None) or []
            if pod.metadata and any(c.type == "Ready" and c.status == "True" for c in conditions):
                ready.append(str(pod.metadata.name))
        return ready

    def pod_proxy_get(self, namespace: str, pod: str, port: int, path: str) -> str:
        """GET a pod's HTTP endpoint through the API server (no network path to pods needed)."""
        operator_metrics.API_READS.labels(kind="Pod/proxy").inc()
        try:
            text = client.CoreV1Api(self.api).connect_get_namespaced_pod_proxy_with_path(
                f"{pod}:{port}", namespace, path, _request_timeout=10
            )
        except ApiException as exc:
            raise KubeError(f"reading {path} of pod {namespace}/{pod}", exc) from exc
        return str(text)

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        operator_metrics.API_READS.labels(kind="Secret").inc()
        try:
            secret = client.CoreV1Api(self.api).read_namespaced_secret(
                name, namespace, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            raise KubeError(f"reading Secret {namespace}/{name}", exc) from exc
        data = (secret.data or {}).get(key)
        if data is None:
            raise KubeError(f"Secret {namespace}/{name} has no key {key!r}", "")
        return base64.b64decode(data).decode().strip()

    def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event about `obj` (what `kubectl describe` lists). Best effort: a lost
        event is logged, never a reason to fail a reconcile."""
        meta = obj["metadata"]
        self._check_fence(f"posting event {reason} on {meta['namespace']}/{meta['name']}")
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.",
                                         namespace=meta["namespace"]),
            involved_object=client.V1ObjectReference(
                api_version=obj.get("apiVersion"), kind=obj.get("kind"), name=meta["name"],
                namespace=meta["namespace"], uid=meta.get("uid"),
            ),
            type=type_, reason=reason, message=message[:1024], count=1,
            first_timestamp=now, last_timestamp=now,
            source=client.V1EventSource(component=FIELD_MANAGER),
            reporting_component=FIELD_MANAGER, reporting_instance=socket.gethostname(),
        )  # fmt: skip
        try:
            client.CoreV1Api(self.api).create_namespaced_event(
                meta["namespace"], event, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            log.warning("posting event %s on %s/%s: %s", reason, meta["namespace"],
                        meta["name"], exc.body or exc.reason)  # fmt: skip
            return
        operator_metrics.API_WRITES.labels(verb="create", kind="Event").inc()

    # --- the leader Lease (runtime/leader.py); not fenced: it is how a replica gets to write.

    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Lease as the API server's JSON, or None when there is none."""
        try:
            reply = client.CoordinationV1Api(self.api).read_namespaced_lease(
                name, namespace, _preload_content=False, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeError(f"reading Lease {namespace}/{name}", exc) from exc
        return _json(reply)

    def create_lease(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Create the Lease; ConflictError when another replica created it first."""
        body: Any = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip
        doing = f"creating Lease {namespace}/{name}"
        try:
            reply = client.CoordinationV1Api(self.api).create_namespaced_lease(
                namespace, body, _preload_content=False, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            raise (ConflictError if exc.status == 409 else KubeError)(doing, exc) from exc
        operator_metrics.LEASE_WRITES.labels(verb="create").inc()
        return _json(reply)

    def replace_lease(
        self, namespace: str, name: str, spec: dict[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        """Replace the Lease's spec if it is still at `resource_version` (else ConflictError):
        two replicas that both saw it expire cannot both take it."""
        body: Any = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": name, "namespace": namespace,
                                  "resourceVersion": resource_version}, "spec": spec}  # fmt: skip
        doing = f"updating Lease {namespace}/{name}"
        try:
            reply = client.CoordinationV1Api(self.api).replace_namespaced_lease(
                name, namespace, body, _preload_content=False, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            raise (ConflictError if exc.status == 409 else KubeError)(doing, exc) from exc
        operator_metrics.LEASE_WRITES.labels(verb="update").inc()
        return _json(reply)


def _json(reply: Any) -> dict[str, Any]:
    """An unparsed reply read to its end (connection back to the pool) as JSON."""
    data: dict[str, Any] = json.loads(reply.data)
    reply.release_conn()
    return data


def _release(reply: Any) -> None:
    """Read an unparsed reply to its end, which hands its connection back to the pool. Unread,
    the connection is dropped and the next request pays a new TLS handshake (in
    benchmarks/operator_scale.py that cost the operator a third more CPU)."""
    reply.read()
    reply.release_conn()


def current_namespace() -> str:
    """The kubeconfig context's namespace, as kubectl picks it (default: "default")."""
    try:
        _, context = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
    except (config.ConfigException, FileNotFoundError):
        return "default"
    return str((context or {}).get("context", {}).get("namespace") or "default")
