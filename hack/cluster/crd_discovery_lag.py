"""How often a CRD's last watch event (Established) reaches a client before the API server's
discovery serves the new kind: the race modeldeploy.late_kinds covers for kopf.

    .venv/bin/python hack/cluster/crd_discovery_lag.py --kubeconfig .cache/cluster/admin.kubeconfig

For each of N throwaway CRDs (group `gN-<time>.lag.example.com`, deleted afterwards) it watches
the CRD's events and, as each arrives, reads discovery the way kopf does (/apis, then
/apis/GROUP/v1), then prints what every event saw and how many last events found nothing.
Needs rights to create and delete CRDs: run it on a test cluster.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from kubernetes import client, config, watch


def crd(group: str) -> dict[str, Any]:
    names = {"kind": "Thing", "plural": "things", "singular": "thing", "listKind": "ThingList"}
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"things.{group}"},
        "spec": {"group": group, "scope": "Namespaced", "names": names, "versions": [
            {"name": "v1", "served": True, "storage": True, "schema": schema}]},
    }  # fmt: skip


def served(api: client.ApiClient, group: str) -> str:
    """What kopf's rescan would find: the kind, the group without it, or no group at all."""
    if group not in {g.name for g in client.ApisApi(api).get_api_versions().groups}:
        return "no group"
    try:
        found = client.CustomObjectsApi(api).get_api_resources(group, "v1")
    except client.ApiException:
        return "no version"
    return "served" if any(r.name == "things" for r in found.resources) else "no kind"


def one_install(api: client.ApiClient, group: str) -> list[tuple[str, str, str]]:
    """(event type, Established, what discovery served) for each event of one CRD."""
    ext = client.ApiextensionsV1Api(api)
    seen: list[tuple[str, str, str]] = []
    listing = ext.list_custom_resource_definition().metadata
    since = listing.resource_version if listing else None

    def follow() -> None:
        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            ext.list_custom_resource_definition, resource_version=since, timeout_seconds=5,
            field_selector=f"metadata.name=things.{group}",
        )  # fmt: skip
        for event in stream:
            conditions = {c.type: c.status for c in event["object"].status.conditions or []}
            seen.append((event["type"], conditions.get("Established", "-"), served(api, group)))

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(0.2)  # the watch is open before the CRD exists
    ext.create_custom_resource_definition(crd(group))  # type: ignore[arg-type]  # a dict works
    follower.join()
    ext.delete_custom_resource_definition(f"things.{group}")
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--installs", type=int, default=15)
    args = parser.parse_args()
    api = config.new_client_from_config(args.kubeconfig)  # type: ignore[no-untyped-call]
    missed = 0
    for n in range(args.installs):
        events = one_install(api, f"g{n}-{int(time.time())}.lag.example.com")
        last_missed = not events or events[-1][2] != "served"
        missed += last_missed
        print(f"install {n + 1:3}: " + ", ".join(f"{t} Established={e} {s}" for t, e, s in events)
              + ("   <- last event before discovery" if last_missed else ""))  # fmt: skip
    print(f"{missed} of {args.installs} installs: the last event came before discovery served "
          "the kind")  # fmt: skip


if __name__ == "__main__":
    main()
