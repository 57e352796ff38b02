"""The owning ModelDeployment as builders need it, and the metadata every child shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeldeploy.api import API_VERSION, KIND
from modeldeploy.core.naming import common_labels


@dataclass(frozen=True)
class Owner:
    """Identity of the ModelDeployment that owns the children."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        """ownerReference: the garbage collector deletes the child with its owner."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(
        self, name: str, labels: dict[str, str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """metadata of a child: namespace, recommended labels, owner reference."""
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": {**common_labels(self.name), **(labels or {})},
            "ownerReferences": [self.reference()],
            **extra,
        }
