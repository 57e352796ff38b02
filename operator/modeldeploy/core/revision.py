"""Revisions: which spec changes make a new Deployment, and its name.

A revision is the hash of the serving template: everything that changes what a pod runs (model
uri/sha/version/name, image, env, resources, batching, threads, auth, TLS, placement). Replicas,
autoscaling and rollout settings are left out, so scaling never starts a rollout. The default
image is resolved before hashing: an operator upgrade that changes it rolls out like any other
new revision, through analysis, instead of restarting every pod at once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.core.settings import Settings

HASH_LENGTH = 10
# No vowels, so a hash never spells a word (as in pod-template-hash).
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def serving_template(spec: ModelDeploymentSpec, settings: Settings) -> dict[str, Any]:
    """The part of the spec that defines what a pod runs, with defaults resolved."""
    serving = spec.serving.to_wire()
    serving.pop("replicas", None)
    serving["image"] = spec.serving.image or settings.serving_image
    return {"model": spec.model.to_wire(), "serving": serving}


def template_hash(template: dict[str, Any]) -> str:
    """A short, stable hash of a template: independent of key order, sensitive to any value.

    >>> template_hash({"a": 1, "b": 2}) == template_hash({"b": 2, "a": 1})
    True
    """
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    number = int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")
    out = []
    for _ in range(HASH_LENGTH):
        number, digit = divmod(number, len(_ALPHABET))
        out.append(_ALPHABET[digit])
    return "".join(out)
