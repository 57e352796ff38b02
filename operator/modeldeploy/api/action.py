"""The form of the action annotation, `modeldeploy.io/action: VERB@TIME`.

`modeldeploy promote|abort|retry|undo` writes it; a user may write it by hand. The API server
cannot check an annotation (a CRD's schema reaches only metadata.name), so the offline
validator and the operator both check it here: the operator reports a malformed one and never
copies more than the status holds.
"""

from __future__ import annotations

import re
from typing import Final

ACTION_VERBS: Final = ("promote", "abort", "retry", "undo")
"""The verbs the rollout acts on (core.rollout.ACTIONS; a unit test keeps the two equal)."""
STAMP_LIMIT: Final = 64
_FORM: Final = re.compile(rf"({'|'.join(ACTION_VERBS)})@[-0-9A-Za-z:.+_]{{1,{STAMP_LIMIT}}}")
ACTION_HINT: Final = (
    f"modeldeploy.io/action must be VERB@TIME: VERB one of {', '.join(ACTION_VERBS)}, TIME up "
    f"to {STAMP_LIMIT} letters, digits or -:.+_ (as `modeldeploy promote NAME` writes it, "
    "e.g. promote@2026-01-01T00:00:00Z)"
)


def action_problem(text: str) -> str | None:
    """What is wrong with an action annotation's value, or None when it has the form.

    >>> action_problem("retry@2026-01-01T00:00:00Z") is None
    True
    >>> action_problem("deploy@now").startswith("modeldeploy.io/action must be VERB@TIME")
    True
    """
    return None if _FORM.fullmatch(text) else ACTION_HINT
