"""What the plan writes: only children that differ from the live ones, each under its field
manager, and the repairs it reports (a child edited or deleted by hand)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ModelDeploymentStatus
from modeldeploy.core.desired.owner import Owner
from modeldeploy.core.live import LiveChildren, LiveRevision
from modeldeploy.core.naming import APPLIED_ANNOTATION
from modeldeploy.core.plan import Plan, plan, target_revision
from modeldeploy.core.settings import Settings

OWNER = Owner("fraud", "ml", "uid-1")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def spec_of(version: str = "v1") -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {"model": {"uri": f"https://m/{version}.onnx", "version": version}}
    )


def live_after(*plans: Plan) -> dict:
    """The children as the API server keeps them once these plans were applied."""
    children: dict = {}
    for p in plans:
        for w in p.writes:
            key = (w.obj["kind"], w.obj["metadata"]["name"])
            children[key] = merged(children.get(key, {}), copy.deepcopy(w.obj))
    return children


def merged(live: dict, applied: dict) -> dict:
    out = dict(live)
    for key, value in applied.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def run(spec, status, revisions, children) -> Plan:
    live = LiveChildren({r.name: r for r in revisions}, children)
    return plan(OWNER, spec, 2, status, live, Settings(), T0)


def settled():
    """A healthy ModelDeployment whose children are all in place."""
    spec = spec_of()
    rev = target_revision(OWNER, spec, Settings())
    first = plan(OWNER, spec, 1, ModelDeploymentStatus(), LiveChildren(), Settings(), T0)
    status = ModelDeploymentStatus.model_validate(first.status.to_wire())
    revisions = [LiveRevision(rev, 2, ready_replicas=2, created=T0)]
    return spec, status, revisions, live_after(first)


def test_children_in_place_are_not_written_again():
    spec, status, revisions, children = settled()
    assert run(spec, status, revisions, children).writes == []


def test_each_full_write_carries_the_hash_of_what_was_applied():
    spec, status, revisions, _ = settled()
    writes = run(spec, status, revisions, {}).writes
    assert writes
    for w in writes:
        assert not w.scale_only
        assert len(w.obj["metadata"]["annotations"][APPLIED_ANNOTATION]) == 16


def test_a_child_edited_by_hand_is_restored_and_reported():
    spec, status, revisions, children = settled()
    children[("Service", "fraud")]["spec"]["selector"] = {"app": "someone-else"}
    (w,) = run(spec, status, revisions, children).writes
    assert w.obj["metadata"]["name"] == "fraud"
    assert w.repair == "Service fraud was changed by hand; restored"


def test_a_child_deleted_by_hand_is_recreated_and_reported():
    spec, status, revisions, children = settled()
    del children[("Service", "fraud")]
    (w,) = run(spec, status, revisions, children).writes
    assert w.repair == "Service fraud was missing; recreated"
    # Before the first status was written, nothing missing was ever ours.
    fresh = run(spec, ModelDeploymentStatus(), revisions, {}).writes
    assert [w.repair for w in fresh if w.repair] == []


def test_our_own_change_is_no_repair():
    _, status, revisions, children = settled()
    new = spec_of("v2")  # a new serving template: the Services' selectors and more change
    writes = run(new, status, revisions, children).writes
    assert writes
    assert [w.repair for w in writes if w.repair] == []


def test_an_old_revision_gets_a_scale_only_write_under_its_own_manager():
    _, status, revisions, children = settled()
    old = revisions[0].name
    new = spec_of("v2")
    target = target_revision(OWNER, new, Settings())
    promoted = ModelDeploymentStatus.model_validate({
        **status.to_wire(), "stableRevision": {"name": target}, "previousRevision": {"name": old},
        "lastPromotionTime": "2026-03-01T11:00:00Z",
    })  # fmt: skip
    both = [*revisions, LiveRevision(target, 2, ready_replicas=2, created=T0)]
    (scale,) = [w for w in run(new, promoted, both, children).writes if w.scale_only]
    assert scale.obj == {"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"name": old, "namespace": "ml"},
                         "spec": {"replicas": 0}}  # fmt: skip
    assert scale.repair is None
    # Already at zero in the cluster: nothing to write.
    children[("Deployment", old)]["spec"]["replicas"] = 0
    assert [w for w in run(new, promoted, both, children).writes if w.scale_only] == []


def test_an_old_revision_wanted_again_is_no_hand_edit():
    """Scaled to zero by the scale manager, then serving again (undo): only its replica count
    differs from what the main manager applied, which is our own change."""
    spec, status, revisions, children = settled()
    rev = revisions[0].name
    children[("Deployment", rev)]["spec"]["replicas"] = 0
    (w,) = run(spec, status, revisions, children).writes
    assert w.obj["metadata"]["name"] == rev
    assert w.repair is None
