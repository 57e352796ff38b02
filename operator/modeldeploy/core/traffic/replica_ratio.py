"""Weights approximated by replica counts behind one entry Service (no mesh, no gateway).

kube-proxy spreads connections evenly over ready endpoints, so with `s` stable and `c` canary
pods the canary gets about c / (s + c) of the traffic. The stable side keeps its full size
(`demand`, the HPA's or spec's count): capacity never drops during a rollout and the HPA is
never fought. The canary gets the smallest count whose share is closest to the weight:

    c = round(demand * w / (100 - w)), at least 1 while w > 0

Worked examples (demand 2): w=10 → c=1 → 33 %; w=50 → c=2 → 50 %. With demand 10: w=10 →
c=1 → 9.1 %; w=25 → c=3 → 23 %. The granularity is one pod: with few replicas a small weight
over-shoots, which the status reports as the effective weight. Use gatewayAPI for exact
weights, header matches (ABTest) and shadow traffic.

The entry Service selects every revision's pods only while the canary takes a weighted share;
otherwise it selects the stable revision alone. So a BlueGreen candidate, a candidate growing
to full size for an Immediate switch or a `modeldeploy promote`, and a canary without a ready
pod get no live request; tests reach them through `NAME-canary`, the preview Service. When
the last canary step is done and the canary grows to the stable side's size next to it, the
two sides share the traffic by their pod counts, and the status says so (50 % at full size).
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from modeldeploy.api.spec import MatchRule
from modeldeploy.core.children import ChildKind
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.naming import owner_selector, revision_selector
from modeldeploy.core.traffic.base import Split


def canary_replicas(demand: int, weight: int) -> int:
    """Canary pods for `weight` percent next to `demand` stable pods.

    >>> [canary_replicas(2, w) for w in (0, 10, 50)]
    [0, 1, 2]
    >>> canary_replicas(10, 25)
    3
    """
    if weight <= 0:
        return 0
    if weight >= 100:
        return max(demand, 1)
    return max(1, round(demand * weight / (100 - weight)))


class ReplicaRatio:
    kinds: ClassVar[tuple[ChildKind, ...]] = ()
    """Nothing but the Services: the entry Service is the router."""

    def split(  # the interface's other inputs matter only to routers
        self,
        owner: Owner,  # noqa: ARG002
        demand: int,
        weight: int,
        canary: str | None,
        match: list[MatchRule] | None,  # noqa: ARG002
        full_size: bool = False,
    ) -> Split:
        if not canary:
            return Split(demand, 0, 0.0)
        c = canary_replicas(demand, weight)
        if full_size:
            c = max(c, demand)
        total = demand + c
        share = 100.0 * c / total if weight > 0 and total else 0.0
        said = weight if not full_size or weight == 0 else round(share)
        return Split(demand, c, share, said)

    def entry_selector(self, owner: str, stable: str, weighted: str | None) -> dict[str, str]:
        """Every revision's pods while the canary takes a weighted share (the replica counts
        split the traffic), else the stable revision's only."""
        return owner_selector(owner) if weighted else revision_selector(owner, stable)

    def scale_down_delay(self, configured: timedelta) -> timedelta:  # noqa: ARG002
        """None: behind the entry Service every running pod takes traffic, so after a
        promotion the previous revision must stop at once."""
        return timedelta(0)
