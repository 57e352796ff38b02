"""`modeldeploy run`: the operator process (kopf with this project's settings)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import kopf
from prometheus_client import start_http_server

from modeldeploy.core.children import CHILD_KINDS
from modeldeploy.core.settings import Settings
from modeldeploy.runtime import handlers, late_kinds
from modeldeploy.runtime.kube import Kube, load_config


def wire(settings: Settings, kube: Kube) -> late_kinds.LateKinds:
    """The operator's handlers on a new registry, with the kopf settings and insights kopf must
    run them with: late_kinds holds all three, since it changes what kopf watches through them.
    One place for `run` and the tests alike."""
    registry = kopf.OperatorRegistry()
    handlers.register(registry, settings, kube)
    return late_kinds.register(registry, kube, kopf.OperatorSettings(), late_kinds.Insights(),
                               CHILD_KINDS)  # fmt: skip


async def operate(
    wired: late_kinds.LateKinds,
    *,
    namespaces: Sequence[str],
    liveness_port: int = 0,
    peering: str | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:
    """Run kopf until `stop_flag` is set (or a signal, in the main thread)."""
    await kopf.operator(
        registry=wired.registry,
        settings=wired.settings,
        insights=wired.insights,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None,
        standalone=peering is None,
        peering_name=peering,
        # kopf pauses every replica that shares the highest priority: each replica gets its
        # own, so exactly one is active and the others take over when it goes away.
        priority=secrets.randbelow(2**30) + 1 if peering else 0,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def run_operator(
    *,
    namespaces: Sequence[str],
    liveness_port: int,
    metrics_port: int,
    json_logs: bool,
    peering: str | None,
    verbose: bool,
) -> None:
    """Run until SIGTERM/SIGINT. Two or more replicas need `peering` (one is active at a time)."""
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
    wired = wire(settings, Kube(load_config(connections=settings.workers)))
    if metrics_port:
        start_http_server(metrics_port)

    async def main() -> None:
        # Reconciles run the blocking kubernetes client in threads; the default pool (CPUs + 4)
        # leaves a 2-core operator waiting on the API server rather than working.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(settings.workers, thread_name_prefix="reconcile")
        )
        await operate(wired, namespaces=namespaces, liveness_port=liveness_port, peering=peering)

    asyncio.run(main())
