"""The user's action annotation: which one is pending, and which have nothing to act on.

`modeldeploy undo` with no previous revision already says `UndoImpossible` (the rollout decides
it); promote, abort and retry with nothing to act on say so the same way here, instead of being
recorded as handled in silence.
"""

from __future__ import annotations

from modeldeploy.api.action import ACTION_VERBS, action_problem
from modeldeploy.api.status import ModelDeploymentStatus, fit_handled_action
from modeldeploy.core.events import Event


def pending_action(requested: str | None, handled: str | None) -> str | None:
    """The annotation's value when it was not handled yet (as the status records it, shortened
    when long), else None.

    >>> pending_action("promote@2026-01-01T00:00:00Z", None)
    'promote@2026-01-01T00:00:00Z'
    >>> pending_action("promote@2026-01-01T00:00:00Z", "promote@2026-01-01T00:00:00Z") is None
    True
    """
    if not requested or fit_handled_action(requested) == handled:
        return None
    return requested


def verb(requested: str) -> str | None:
    """The verb of a well-formed action annotation; None for a malformed one.

    >>> verb("retry@2026-01-01T00:00:00Z"), verb("retry@" + "x" * 100)
    ('retry', None)
    """
    if action_problem(requested):
        return None
    found = requested.partition("@")[0]
    return found if found in ACTION_VERBS else None


def impossible_action(action: str, status: ModelDeploymentStatus, target: str) -> Event | None:
    """A Warning for promote, abort or retry when there is nothing for it to act on.

    promote and abort act on a candidate: the spec's revision when it is neither the stable one
    nor one rolled back. retry acts on a rolled-back revision. (undo: the rollout says.)
    """
    stable = status.stable_revision.name if status.stable_revision else None
    rolled_back = status.rolled_back_revision.name if status.rolled_back_revision else None
    if action in ("promote", "abort"):
        if stable is None or target == stable:
            why = f"no rollout in progress (revision {target} serves and the spec asks for it)"
        elif target == rolled_back:
            why = f"revision {target} was rolled back; run `modeldeploy retry` to roll it out again"
        else:
            return None
        return Event("Warning", f"{action.title()}Impossible", f"nothing to {action}: {why}")
    if action == "retry" and rolled_back is None:
        return Event("Warning", "RetryImpossible",
                     "nothing to retry: no revision was rolled back")  # fmt: skip
    return None
