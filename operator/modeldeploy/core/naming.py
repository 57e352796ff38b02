"""Names, labels and selectors of every child of a ModelDeployment, in one place.

Labels follow the Kubernetes recommended set (app.kubernetes.io/*), plus two of our own that
selectors use: `modeldeploy.io/deployment` (every pod of one ModelDeployment) and
`modeldeploy.io/revision` (the pods of one revision).
"""

from __future__ import annotations

from typing import Final

from modeldeploy.api import GROUP

FIELD_MANAGER: Final = "modeldeploy"
MANAGED_BY: Final = "modeldeploy"
DEPLOYMENT_LABEL: Final = f"{GROUP}/deployment"
REVISION_LABEL: Final = f"{GROUP}/revision"
ROLE_ANNOTATION: Final = f"{GROUP}/role"
ACTION_ANNOTATION: Final = f"{GROUP}/action"
"""`VERB@TIME`, set by `modeldeploy promote|abort|retry|undo`; acted on once."""
APPLIED_ANNOTATION: Final = f"{GROUP}/applied-hash"
"""Hash of what was last applied: tells a hand edit (same hash, different fields) from a
change of our own (new hash)."""
MODEL_URI_ANNOTATION: Final = f"{GROUP}/model-uri"
MODEL_VERSION_ANNOTATION: Final = f"{GROUP}/model-version"
HTTP_PORT: Final = 8080
SERVICE_PORT: Final = 80


def revision_name(owner: str, template_hash: str) -> str:
    """The Deployment of one revision: NAME-<hash>, like a ReplicaSet's pod-template hash."""
    return f"{owner}-{template_hash}"


def entry_service(owner: str) -> str:
    """The Service clients call."""
    return owner


def stable_service(owner: str) -> str:
    return f"{owner}-stable"


def canary_service(owner: str) -> str:
    return f"{owner}-canary"


def common_labels(owner: str) -> dict[str, str]:
    """Labels on every child; `managed-by` lets the operator watch only its own objects."""
    return {
        "app.kubernetes.io/name": "modelserve",
        "app.kubernetes.io/instance": owner,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        DEPLOYMENT_LABEL: owner,
    }


def owner_selector(owner: str) -> dict[str, str]:
    """Every serving pod of one ModelDeployment, whatever its revision."""
    return {DEPLOYMENT_LABEL: owner}


def revision_selector(owner: str, revision: str) -> dict[str, str]:
    """The pods of one revision."""
    return {DEPLOYMENT_LABEL: owner, REVISION_LABEL: revision}


def label_selector(labels: dict[str, str]) -> str:
    """A selector as kubectl and the API's labelSelector parameter write it."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
