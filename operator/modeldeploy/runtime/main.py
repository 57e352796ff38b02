"""`modeldeploy run`: the operator process (kopf with this project's settings).

Several replicas may run: they elect a leader through a Lease (runtime/leader.py), and only the
leader acts. kopf runs standalone in each (its own peering is not used: see docs/design-notes.md,
"One active operator").
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import kopf
from prometheus_client import start_http_server

from modeldeploy.core.children import CHILD_KINDS
from modeldeploy.core.settings import Settings
from modeldeploy.runtime import handlers, late_kinds
from modeldeploy.runtime.kube import Kube, load_config
from modeldeploy.runtime.leader import Elector, LeaderConfig, Leadership
from modeldeploy.runtime.lease import LeaseConfigError


def wire(settings: Settings, kube: Kube, leader: Leadership | None = None) -> late_kinds.LateKinds:
    """The operator's handlers on a new registry, with the kopf settings and insights kopf must
    run them with: late_kinds holds all three, since it changes what kopf watches through them.
    One place for `run` and the tests alike. `leader`: who may act (default: this process)."""
    registry = kopf.OperatorRegistry()
    handlers.register(registry, settings, kube, leader)
    return late_kinds.register(registry, kube, kopf.OperatorSettings(), late_kinds.Insights(),
                               CHILD_KINDS)  # fmt: skip


async def operate(
    wired: late_kinds.LateKinds,
    *,
    namespaces: Sequence[str],
    liveness_port: int = 0,
    elector: Elector | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:
    """Run kopf until `stop_flag` is set (or a signal, in the main thread), and the leader
    election beside it when given; on the way out, writes stop first, then the Lease is
    handed back, so that a standby takes over at once."""
    electing = asyncio.create_task(elector.run(), name="leader election") if elector else None
    try:
        await kopf.operator(
            registry=wired.registry,
            settings=wired.settings,
            insights=wired.insights,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None,
            # Every replica watches (warm indexes); the Lease, not kopf peering, says who acts.
            standalone=True,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        if electing and elector:
            electing.cancel()
            await elector.release()


def run_operator(
    *,
    namespaces: Sequence[str],
    liveness_port: int,
    metrics_port: int,
    json_logs: bool,
    peering: str | None,
    verbose: bool,
) -> None:
    """Run until SIGTERM/SIGINT. Replicas elect a leader through a Lease (on unless
    MODELDEPLOY_LEADER_ELECTION=false); `peering` (kopf peering) is no longer supported."""
    if peering:
        sys.exit(
            f"modeldeploy run: --peering={peering}: kopf peering is no longer used; replicas "
            "elect a leader through a Lease instead (on by default; set MODELDEPLOY_LEASE_NAME "
            "and MODELDEPLOY_LEASE_NAMESPACE to choose it). Drop --peering."
        )
    try:
        leader_config = LeaderConfig.from_env()
    except LeaseConfigError as exc:
        sys.exit(f"modeldeploy run: {exc}")
    settings = Settings.from_env()
    namespaces = tuple(namespaces) or settings.namespaces
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if json_logs else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    if not verbose:
        # kopf reports every timer tick per object at INFO; the operator's own log lines
        # (what it created, configured, scaled) are what a user reads.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kube = Kube(load_config(connections=settings.workers))
    elector = Elector(kube, leader_config) if leader_config.enabled else None
    if elector:
        kube.fence = elector.leading  # no write leaves a replica that does not lead
    wired = wire(settings, kube, elector)
    if metrics_port:
        start_http_server(metrics_port)

    async def main() -> None:
        # Reconciles run the blocking kubernetes client in threads; the default pool (CPUs + 4)
        # leaves a 2-core operator waiting on the API server rather than working.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(settings.workers, thread_name_prefix="reconcile")
        )
        await operate(wired, namespaces=namespaces, liveness_port=liveness_port, elector=elector)

    asyncio.run(main())
