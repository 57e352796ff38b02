"""Exact weights, header/cookie matches and shadow traffic on a Gateway API HTTPRoute.

The route sends the default rule to `NAME` (the entry Service, which under this router selects
the stable revision only, at rest and during a rollout alike) and `NAME-canary` with weights
that add up to 100; at rest its one backend is `NAME`, so no role Service is needed then.
ABTest match rules come first and send matching requests to the canary only. Gateway API has
no cookie match, so a cookie rule becomes a regular expression on the Cookie header. With
`mirror`, stable traffic is also copied to the canary and its answers dropped.

The canary's size follows its share of traffic, rounded up, so it is never starved:
c = ceil(demand * w / 100), at least 1 while a canary exists (it must answer matched
requests even at weight 0). With `mirror` the default rule copies every request it matches
(those it sends the canary too) to the canary, so the canary answers (100 + w) % of the
stable side's load: c = ceil(demand * (100 + w) / 100). Before a switch it runs at least at
the stable side's size.

The entry Service selects the stable revision only: clients that bypass the route (in-cluster
calls to `NAME`) never reach a candidate.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any, ClassVar

from modeldeploy.api.spec import GatewayApi, MatchRule
from modeldeploy.core.children import HTTP_ROUTE, ChildKind
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.naming import (
    SERVICE_PORT,
    canary_service,
    entry_service,
    revision_selector,
)
from modeldeploy.core.traffic.base import Split


def _backend(name: str, weight: int | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": name, "port": SERVICE_PORT}
    if weight is not None:
        ref["weight"] = weight
    return ref


def match_to_gateway(rule: MatchRule) -> dict[str, Any]:
    """One ABTest rule as an HTTPRouteMatch.

    >>> from modeldeploy.api.spec import CookieMatch
    >>> rule = MatchRule(cookies=[CookieMatch(name="variant", value="b")])
    >>> match_to_gateway(rule)["headers"][0]["value"]
    '(^|;\\\\s*)variant=b(;|$)'
    """
    headers = [{"name": h.name, "type": h.type, "value": h.value} for h in rule.headers or []]
    for cookie in rule.cookies or []:
        pattern = rf"(^|;\s*){re.escape(cookie.name)}={re.escape(cookie.value)}(;|$)"
        headers.append({"name": "Cookie", "type": "RegularExpression", "value": pattern})
    return {"headers": headers}


def build_route(
    owner: Owner,
    config: GatewayApi,
    weight: int,
    has_canary: bool,
    match: list[MatchRule] | None,
) -> dict[str, Any]:
    """The HTTPRoute: `NAME` for the stable side (the entry Service selects only the stable
    revision under this router, see entry_selector), `NAME-canary` for a candidate. Not
    `NAME-stable`: that Service exists only during a rollout, and a backend that changed name
    at every promotion would leave the gateway a moment routing to a deleted Service."""
    stable, canary = entry_service(owner.name), canary_service(owner.name)
    rules: list[dict[str, Any]] = []
    if has_canary and match:
        rules.append({"matches": [match_to_gateway(m) for m in match],
                      "backendRefs": [_backend(canary)]})  # fmt: skip
    default: dict[str, Any] = {
        "backendRefs": [_backend(stable, 100 - weight), _backend(canary, weight)]
        if has_canary
        else [_backend(stable)]
    }
    if has_canary and config.mirror:
        default["filters"] = [{"type": "RequestMirror",
                               "requestMirror": {"backendRef": _backend(canary)}}]  # fmt: skip
    rules.append(default)
    parent_refs = []
    for ref in config.parent_refs:
        parent: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                  "name": ref.name}  # fmt: skip
        if ref.namespace:
            parent["namespace"] = ref.namespace
        if ref.section_name:
            parent["sectionName"] = ref.section_name
        parent_refs.append(parent)
    spec: dict[str, Any] = {"parentRefs": parent_refs, "rules": rules}
    if config.hostnames:
        spec["hostnames"] = list(config.hostnames)
    return {
        "apiVersion": HTTP_ROUTE.api_version,
        "kind": HTTP_ROUTE.kind,
        "metadata": owner.metadata(owner.name),
        "spec": spec,
    }


class GatewayApiRouter:
    kinds: ClassVar[tuple[ChildKind, ...]] = (HTTP_ROUTE,)

    def __init__(self, config: GatewayApi) -> None:
        self.config = config

    def split(
        self,
        owner: Owner,
        demand: int,
        weight: int,
        canary: str | None,
        match: list[MatchRule] | None,
        full_size: bool = False,
    ) -> Split:
        route = build_route(owner, self.config, weight, canary is not None, match)
        if not canary:
            return Split(demand, 0, 0.0, 0, [route])
        load = weight + (100 if self.config.mirror else 0)  # percent of the stable side's
        c = max(1, math.ceil(demand * load / 100))
        if full_size:
            c = max(c, demand)
        return Split(demand, c, float(weight), weight, [route])

    def entry_selector(
        self,
        owner: str,
        stable: str,
        weighted: str | None,  # noqa: ARG002
    ) -> dict[str, str]:
        """The stable revision's pods: clients that bypass the route reach stable only, and the
        route's stable backend is this Service."""
        return revision_selector(owner, stable)

    def scale_down_delay(self, configured: timedelta) -> timedelta:
        """As configured: the route sends the previous revision nothing, so it can stay up."""
        return configured
