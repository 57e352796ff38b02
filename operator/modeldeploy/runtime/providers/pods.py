"""The pods provider: every ready pod of a revision scraped through the API server's pod proxy.

A window needs two scrapes an interval apart, so the previous scrape of each revision is kept in
memory; after an operator restart the first interval only primes it, and the rollout (whose
state is in the status) simply waits one interval longer for its next check.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from modeldeploy.api.spec import Analysis
from modeldeploy.core.analysis import PodSample, RevisionMetrics, RevisionSample, window_between
from modeldeploy.core.naming import HTTP_PORT, label_selector, revision_selector
from modeldeploy.runtime.errors import KubeError
from modeldeploy.runtime.kube import Kube

log = logging.getLogger(__name__)


@dataclass
class PodScrapes:
    """The last scrape of each revision, by (namespace, revision)."""

    last: dict[tuple[str, str], RevisionSample] = field(default_factory=dict)

    def windows(
        self,
        kube: Kube,
        namespace: str,
        owner: str,
        analysis: Analysis,
        canary: str,
        stable: str | None,
    ) -> tuple[RevisionMetrics, RevisionMetrics | None] | None:
        """Both revisions since their last scrape, or None while the canary's is not ready."""
        interval = analysis.interval.seconds
        windows: dict[str, RevisionMetrics] = {}
        for revision in filter(None, (canary, stable)):
            key = (namespace, revision)
            before = self.last.get(key)
            if before is not None and time.monotonic() - before.time < 0.8 * interval:
                return None  # too early for a full window (an event woke us before the timer)
            after = _scrape(kube, namespace, owner, revision)
            self.last[key] = after
            if before is None:
                continue
            windows[revision] = RevisionMetrics(window_between(before, after))
        if canary not in windows:
            return None
        return windows[canary], windows.get(stable or "")

    def forget_owner(self, namespace: str, owner: str) -> None:
        """Drop the scrapes of a deleted ModelDeployment's revisions (NAME-<hash>)."""
        for key in [k for k in self.last if k[0] == namespace and
                    k[1].startswith(f"{owner}-")]:  # fmt: skip
            del self.last[key]


def _scrape(kube: Kube, namespace: str, owner: str, revision: str) -> RevisionSample:
    selector = label_selector(revision_selector(owner, revision))
    pods: dict[str, PodSample] = {}
    for pod in kube.ready_pods(namespace, selector):
        try:
            pods[pod] = PodSample.parse(kube.pod_proxy_get(namespace, pod, HTTP_PORT, "metrics"))
        except (KubeError, ValueError) as exc:  # one bad pod must not sink the check
            log.warning("scraping %s/%s: %s", namespace, pod, exc)
    return RevisionSample(time.monotonic(), pods)
