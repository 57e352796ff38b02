"""Flux's and Argo CD's own health code, run on ModelDeployments as the API server returns them.

Two small Go programs in hack/health/ wrap the real thing: kstatus's Compute()
(sigs.k8s.io/cli-utils, the library Flux's `wait: true` uses) and gopher-lua (the interpreter Argo
CD embeds) running the Lua health check the chart ships. They are built here through the Go
module proxy, once per pin set and Go version, and cached under ~/.cache/modeldeploy, so the
integration tier and the e2e tiers judge objects with the same binaries.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEALTH = ROOT / "hack" / "health"
LUA_SCRIPT = ROOT / "charts" / "modeldeploy" / "health" / "modeldeployment.lua"
CACHE = Path(
    os.environ.get("MODELDEPLOY_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modeldeploy"
)
Health = Callable[[dict[str, Any]], dict[str, str]]

# What each phase must read as, to kstatus and to Argo CD. "stale" is an object whose status
# was written for an older generation: both tools must wait rather than trust it.
EXPECTED: dict[str, tuple[str, str]] = {
    "stale": ("InProgress", "Progressing"),
    "Progressing": ("InProgress", "Progressing"),
    "Paused": ("InProgress", "Suspended"),
    "Healthy": ("Current", "Healthy"),
    "RolledBack": ("Failed", "Degraded"),
    "Failed": ("Failed", "Degraded"),
}


def go_build(module: str, name: str) -> Path:
    """hack/health/MODULE built once per pin set and Go version (a later run is a cache hit)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip(f"`go` is not on PATH: cannot build {name} from hack/health/{module}")
    src = HEALTH / module
    version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True)
    digest = hashlib.sha256(version.stdout.encode())
    for part in ("go.mod", "go.sum", "main.go"):
        digest.update((src / part).read_bytes())
    binary = CACHE / "health" / f"{name}-{digest.hexdigest()[:12]}" / name
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".partial")
        subprocess.run(
            [go, "build", "-trimpath", "-o", str(partial), "."],
            cwd=src, check=True, env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"},
        )  # fmt: skip
        partial.rename(binary)
    return binary


def run_json(args: list[str], obj: dict[str, Any]) -> dict[str, str]:
    out = subprocess.run(args, input=json.dumps(obj), capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def kstatus_health() -> Health:
    """kstatus's Compute() on one object: {"status": "Current"|"InProgress"|..., "message"}."""
    binary = go_build("kstatus", "kstatus-check")
    return lambda obj: run_json([str(binary)], obj)


def argocd_health() -> Health:
    """The shipped Argo CD health script's answer on one object: {"status", "message"}."""
    binary = go_build("argocd-lua", "argocd-lua-health")
    return lambda obj: run_json([str(binary), str(LUA_SCRIPT)], obj)


def phase_of(md: dict[str, Any]) -> str:
    """The phase an object's status claims, or "stale" when it describes an older spec."""
    status = md.get("status") or {}
    if status.get("observedGeneration") != md["metadata"].get("generation"):
        return "stale"
    return str(status.get("phase") or "stale")


@dataclass
class HealthLog:
    """What both tools said of an object each time its phase (or canary weight) changed, so a
    test watching a real rollout can assert every reading, not only the last one."""

    kstatus: Health
    argocd: Health
    readings: list[tuple[str, int, dict[str, str], dict[str, str]]] = field(default_factory=list)
    _last: tuple[str, int] | None = None

    def see(self, md: dict[str, Any]) -> None:
        key = (phase_of(md), int((md.get("status") or {}).get("canaryWeight") or 0))
        if key != self._last:
            self._last = key
            self.readings.append((*key, self.kstatus(md), self.argocd(md)))

    @property
    def phases(self) -> set[str]:
        return {phase for phase, *_ in self.readings}

    def wrong(self) -> list[str]:
        """Readings that do not match EXPECTED, one line each (empty when all are right)."""
        return [
            f"{phase} (weight {weight}): kstatus {flux['status']}, argocd {argo['status']}; "
            f"want {EXPECTED.get(phase)}"
            for phase, weight, flux, argo in self.readings
            if (flux["status"], argo["status"]) != EXPECTED.get(phase)
        ]

    def table(self) -> str:
        return "\n".join(
            f"{phase:12} weight {weight:3}  kstatus {flux['status']:10} argocd {argo['status']:11}"
            f" | {flux.get('message', '')[:60]}"
            for phase, weight, flux, argo in self.readings
        )
