"""Traffic providers: replica math and the HTTPRoute a Gateway API implementation would read."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from modeldeploy.api.spec import GatewayApi, MatchRule, TrafficRouting
from modeldeploy.core.children import HTTP_ROUTE
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.traffic import ROUTED_KINDS, router_for
from modeldeploy.core.traffic.gateway_api import GatewayApiRouter
from modeldeploy.core.traffic.replica_ratio import ReplicaRatio, canary_replicas

OWNER = Owner("fraud", "ml", "uid")


@given(st.integers(1, 50), st.integers(1, 99))
def test_replica_ratio_is_the_closest_pod_count(demand, weight):
    c = canary_replicas(demand, weight)
    share = lambda n: n / (demand + n)  # noqa: E731
    assert c >= 1
    best = min(range(1, 4 * demand + 100), key=lambda n: abs(share(n) - weight / 100))
    assert abs(share(c) - weight / 100) <= abs(share(best) - weight / 100) + 1 / (demand + c)


@given(st.integers(1, 50), st.integers(0, 98))
def test_more_weight_never_means_fewer_canary_pods(demand, weight):
    assert canary_replicas(demand, weight) <= canary_replicas(demand, weight + 1)


def test_replica_ratio_keeps_the_stable_side_whole():
    split = ReplicaRatio().split(OWNER, 10, 10, "fraud-new", None)
    assert (split.stable_replicas, split.canary_replicas) == (10, 1)
    assert round(split.effective_weight, 1) == 9.1
    assert split.objects == []


def gateway(**extra):
    return GatewayApi.model_validate(
        {"parentRefs": [{"name": "gw", "namespace": "infra"}], **extra}
    )


def test_route_weights_add_up_and_point_at_the_entry_and_canary_services():
    split = GatewayApiRouter(gateway()).split(OWNER, 4, 25, "fraud-new", None)
    (route,) = split.objects
    assert route["kind"] == "HTTPRoute"
    assert route["metadata"]["ownerReferences"] == [OWNER.reference()]
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "gw",
            "namespace": "infra",
        }
    ]
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [
        {"name": "fraud", "port": 80, "weight": 75},
        {"name": "fraud-canary", "port": 80, "weight": 25},
    ]
    assert (split.stable_replicas, split.canary_replicas, split.effective_weight) == (4, 1, 25.0)


def test_abtest_matches_go_to_the_canary_before_the_default_rule():
    match = [MatchRule.model_validate({"headers": [{"name": "x-variant", "value": "b"}]})]
    (route,) = GatewayApiRouter(gateway()).split(OWNER, 2, 0, "fraud-new", match).objects
    first, default = route["spec"]["rules"]
    assert first == {
        "matches": [{"headers": [{"name": "x-variant", "type": "Exact", "value": "b"}]}],
        "backendRefs": [{"name": "fraud-canary", "port": 80}],
    }
    assert default["backendRefs"][0] == {"name": "fraud", "port": 80, "weight": 100}


def test_mirror_copies_stable_traffic_to_the_canary():
    (route,) = GatewayApiRouter(gateway(mirror=True)).split(OWNER, 2, 0, "fraud-new", None).objects
    assert route["spec"]["rules"][0]["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": "fraud-canary", "port": 80}},
        }
    ]


def test_without_a_canary_the_route_sends_everything_to_stable():
    (route,) = GatewayApiRouter(gateway(mirror=True)).split(OWNER, 2, 0, None, None).objects
    assert route["spec"]["rules"] == [{"backendRefs": [{"name": "fraud", "port": 80}]}]
    # `fraud` is the entry Service, which under this router selects the stable revision alone,
    # with or without a weighted candidate: the route needs no NAME-stable at rest.
    router = GatewayApiRouter(gateway())
    for weighted in (None, "fraud-new"):
        assert router.entry_selector("fraud", "fraud-old", weighted) == {
            "modeldeploy.io/deployment": "fraud",
            "modeldeploy.io/revision": "fraud-old",
        }


def test_the_spec_picks_the_router():
    assert isinstance(router_for(TrafficRouting.model_validate({"replicaRatio": {}})), ReplicaRatio)
    routed = TrafficRouting.model_validate({"gatewayAPI": {"parentRefs": [{"name": "gw"}]}})
    assert isinstance(router_for(routed), GatewayApiRouter)


def test_each_router_says_what_it_owns_and_how_the_entry_service_selects():
    ratio, routed = ReplicaRatio(), GatewayApiRouter(gateway())
    assert (ratio.kinds, routed.kinds) == ((), (HTTP_ROUTE,))
    assert ROUTED_KINDS == (HTTP_ROUTE,)  # what a switch of router may leave behind
    for router in (ratio, routed):
        split = router.split(OWNER, 4, 25, "fraud-new", None)
        assert {o["kind"] for o in split.objects} <= {k.kind for k in router.kinds}
    # Behind one entry Service every revision's pods take traffic while a canary takes a
    # weighted share; behind a router, stable's only.
    assert ratio.entry_selector("fraud", "fraud-a", "fraud-b") == {
        "modeldeploy.io/deployment": "fraud"}  # fmt: skip
    assert routed.entry_selector("fraud", "fraud-a", "fraud-b") == {
        "modeldeploy.io/deployment": "fraud", "modeldeploy.io/revision": "fraud-a"}  # fmt: skip
    # Without a weighted canary (BlueGreen, a candidate growing for a switch), stable's only
    # under every router: the candidate is reached through the preview Service alone.
    for router in (ratio, routed):
        assert router.entry_selector("fraud", "fraud-a", None) == {
            "modeldeploy.io/deployment": "fraud", "modeldeploy.io/revision": "fraud-a"}  # fmt: skip
    # So only a router can keep the previous revision running, idle, after a promotion.
    delay = timedelta(seconds=30)
    assert ratio.scale_down_delay(delay) == timedelta(0)
    assert routed.scale_down_delay(delay) == delay
