"""Reads for `modeldeploy status`: one ModelDeployment, its Events, and a watch of both.

Read-only, and for the command line only (the operator reads from kopf's watch): kept beside
kube.py, which holds every write, on the same ApiClient and timeouts. Objects come back as the
API server writes them (camelCase JSON), which is what modeldeploy.statusview reads.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from typing import Any, Final

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from modeldeploy.api import GROUP, KIND, PLURAL, VERSION
from modeldeploy.runtime.errors import KubeError
from modeldeploy.runtime.kube import TIMEOUT, Kube

WATCH_SECONDS: Final = 290
"""How long one watch request runs before it is renewed (the API server caps it anyway)."""
Change = tuple[str, str, dict[str, Any]]
"""What a watch saw: ("object" or "event", the watch type ADDED/MODIFIED/DELETED, the object)."""


class NotFoundError(KubeError):
    """The ModelDeployment does not exist."""


class NoResourceTypeError(KubeError):
    """The API server does not serve ModelDeployments (the CRD is not installed)."""


def _json(response: Any) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(response.data)
    finally:
        response.release_conn()
    return data


def _not_found(exc: ApiException, namespace: str, name: str) -> KubeError:
    """A 404 for the object, or for its type: the API server's body tells which."""
    try:
        details = json.loads(exc.body or "{}").get("details") or {}
    except ValueError:
        details = {}
    if details.get("name") == name:
        return NotFoundError(f"{KIND.lower()} {namespace}/{name} not found", "")
    return NoResourceTypeError(
        f"the server doesn't have a resource type {PLURAL}.{GROUP}: install the CRD "
        "(helm install modeldeploy charts/modeldeploy, or modeldeploy crd | kubectl apply -f -)",
        "",
    )


def read_modeldeployment(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """The object as stored; NotFoundError or NoResourceTypeError with kubectl's words."""
    try:
        response = client.CustomObjectsApi(kube.api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name,
            _request_timeout=TIMEOUT, _preload_content=False,
        )  # fmt: skip
    except ApiException as exc:
        if exc.status == 404:
            raise _not_found(exc, namespace, name) from exc
        raise KubeError(f"reading ModelDeployment {namespace}/{name}", exc) from exc
    return _json(response)


def _event_selector(name: str) -> str:
    return f"involvedObject.kind={KIND},involvedObject.name={name}"


def list_events(kube: Kube, namespace: str, name: str) -> tuple[list[dict[str, Any]], str]:
    """The Events about the ModelDeployment `name` (any object of that name: the view keeps
    the current one's by uid), and the list's resourceVersion to watch from."""
    try:
        response = client.CoreV1Api(kube.api).list_namespaced_event(
            namespace, field_selector=_event_selector(name),
            _request_timeout=TIMEOUT, _preload_content=False,
        )  # fmt: skip
    except ApiException as exc:
        raise KubeError(f"listing the Events of ModelDeployment {namespace}/{name}", exc) from exc
    found = _json(response)
    return list(found.get("items") or []), str((found.get("metadata") or {}).get("resourceVersion"))


def follow(
    kube: Kube, namespace: str, name: str, object_version: str, events_version: str
) -> queue.Queue[Change | BaseException]:
    """Watch the object and its Events from the given resourceVersions, in two daemon
    threads; every change (or the error that stopped a watch) lands in the returned queue."""
    changes: queue.Queue[Change | BaseException] = queue.Queue()
    custom, core = client.CustomObjectsApi(kube.api), client.CoreV1Api(kube.api)

    def objects(version: str) -> Any:
        return watch.Watch().stream(  # type: ignore[no-untyped-call]
            custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
            field_selector=f"metadata.name={name}", resource_version=version,
            timeout_seconds=WATCH_SECONDS, _request_timeout=(TIMEOUT[0], WATCH_SECONDS + 30),
        )  # fmt: skip

    def events(version: str) -> Any:
        return watch.Watch().stream(  # type: ignore[no-untyped-call]
            core.list_namespaced_event, namespace, field_selector=_event_selector(name),
            resource_version=version, timeout_seconds=WATCH_SECONDS,
            _request_timeout=(TIMEOUT[0], WATCH_SECONDS + 30),
        )  # fmt: skip

    for what, stream, version in (("object", objects, object_version),
                                  ("event", events, events_version)):  # fmt: skip
        threading.Thread(
            target=_pump, args=(what, stream, version, changes), daemon=True,
            name=f"watch-{what}",
        ).start()  # fmt: skip
    return changes


def _pump(
    what: str,
    stream: Callable[[str], Any],
    version: str,
    changes: queue.Queue[Change | BaseException],
) -> None:
    """Pass one watch's changes on, renewing it when the server ends it; from the start
    again ("" = now) when the version it watched from has expired (410 Gone)."""
    while True:
        try:
            for change in stream(version):
                raw = change["raw_object"]
                if change["type"] == "ERROR":
                    if raw.get("code") == 410:
                        version = ""
                        break
                    raise KubeError(f"watching the {what}: {raw.get('message')}", "")
                version = str((raw.get("metadata") or {}).get("resourceVersion") or version)
                changes.put((what, str(change["type"]), raw))
        except ApiException as exc:
            if exc.status == 410:
                version = ""
                continue
            changes.put(KubeError(f"watching the {what}", exc))
            return
        except Exception as exc:  # a dropped connection, a bad answer: say it, stop watching
            changes.put(exc)
            return
