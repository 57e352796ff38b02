"""The served model's digest, read from a revision's pods (the deciding is pure,
modeldeploy.core.digests).

Each Ready pod's `/metrics` is read through the API server's pod proxy, as the pods analysis
provider reads it: `modelserve_model_info` is among the operational families a modelserve
serves without credentials even when inference auth or a scrape token is set (only the
payload-derived drift families need one), so no token is sent or needed.

A revision is read only while the status has no digest for it (core.digests.wanted), so once
per revision. A read in which no pod reported a digest (a serving image without the info
metric, or every pod unreachable) is not repeated for `RETRY_AFTER`, so such a revision does
not cost a request per pod on every reconcile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from modeldeploy.core.digests import Reports, reported
from modeldeploy.core.naming import HTTP_PORT, label_selector, revision_selector
from modeldeploy.runtime.errors import KubeError
from modeldeploy.runtime.kube import Kube

log = logging.getLogger(__name__)
RETRY_AFTER: Final = 300.0
"""Seconds before a revision whose pods reported no digest is asked again."""


@dataclass
class DigestReader:
    """Reads the digest each pod of a revision reports; remembers fruitless reads."""

    quiet_until: dict[tuple[str, str], float] = field(default_factory=dict)

    def read(
        self, kube: Kube, namespace: str, owner: str, revisions: Iterable[str]
    ) -> dict[str, Reports]:
        """revision → pod → digest, for the revisions that answered; none for the others."""
        out: dict[str, Reports] = {}
        now = time.monotonic()
        for revision in revisions:
            key = (namespace, revision)
            if self.quiet_until.get(key, 0.0) > now:
                continue
            reports = _read(kube, namespace, owner, revision)
            if any(reports.values()):
                self.quiet_until.pop(key, None)
                out[revision] = reports
            else:
                self.quiet_until[key] = now + RETRY_AFTER
                log.info("no pod of %s/%s reported its model digest; asking again in %.0fs",
                         namespace, revision, RETRY_AFTER)  # fmt: skip
        return out

    def forget_owner(self, namespace: str, owner: str) -> None:
        """Drop what is kept for a deleted ModelDeployment's revisions (NAME-<hash>)."""
        for key in [k for k in self.quiet_until
                    if k[0] == namespace and k[1].startswith(f"{owner}-")]:  # fmt: skip
            del self.quiet_until[key]


def _read(kube: Kube, namespace: str, owner: str, revision: str) -> dict[str, str | None]:
    selector = label_selector(revision_selector(owner, revision))
    reports: dict[str, str | None] = {}
    try:
        pods = kube.ready_pods(namespace, selector)
    except KubeError as exc:
        log.warning("listing the pods of %s/%s: %s", namespace, revision, exc)
        return reports
    for pod in pods:
        try:
            reports[pod] = reported(kube.pod_proxy_get(namespace, pod, HTTP_PORT, "metrics"))
        except (KubeError, ValueError) as exc:  # one pod unreadable: judge by the others
            log.warning("reading the model digest of pod %s/%s: %s", namespace, pod, exc)
    return reports
