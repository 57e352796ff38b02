"""Which replica acts: leader election through a coordination.k8s.io/v1 Lease.

Every replica runs kopf's watches and keeps its indexes warm, so a standby can take over at
once; only the leader reconciles. The Lease decisions are pure (runtime/lease.py); this module
reads and writes the Lease every `retry_period` and answers `leading()`, which the scheduler
asks before each reconcile and Kube asks before each write (its fence). `leading()` is a
function of the clock, not a flag this loop must clear in time: a leader whose renewals stop
(API server unreachable, event loop stalled) stops writing renew_deadline seconds after the
last renewal it sent, before any standby may take over (after `duration`).

A leader that stops cleanly (SIGTERM) stops writing first and then releases the Lease, so a
standby takes over within one retry period instead of waiting out the duration.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

from modeldeploy.runtime import operator_metrics
from modeldeploy.runtime.errors import KubeError
from modeldeploy.runtime.kube import ConflictError, Kube, current_namespace
from modeldeploy.runtime.lease import (
    DEFAULT_DURATION,
    DEFAULT_RENEW_DEADLINE,
    DEFAULT_RETRY_PERIOD,
    LeaseConfigError,
    Move,
    Observed,
    Record,
    Timings,
    claim,
    leading,
    next_move,
    observe,
    released,
)

log = logging.getLogger(__name__)
DEFAULT_LEASE_NAME: Final = "modeldeploy-operator"
SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""The pod's own namespace, where the chart puts the Lease (and grants access to it)."""


class Leadership(Protocol):
    """What the scheduler and handlers ask of leader election."""

    def leading(self) -> bool: ...

    def on_lead(self, callback: Callable[[], None]) -> None: ...


class Alone:
    """No election: the only replica (leader election off, and tests of one process)."""

    def leading(self) -> bool:
        return True

    def on_lead(self, callback: Callable[[], None]) -> None:  # noqa: ARG002
        return None


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise LeaseConfigError(f"{name} must be a number of seconds; got {raw!r}") from None


def default_namespace() -> str:
    """The pod's namespace in a cluster, else the kubeconfig context's (what kubectl uses)."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or current_namespace()
    except OSError:
        return current_namespace()


@dataclass(frozen=True)
class LeaderConfig:
    """Leader election settings, from the environment (the chart sets each one)."""

    enabled: bool = True
    name: str = DEFAULT_LEASE_NAME
    namespace: str = "default"
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}_{os.getpid()}")
    """Who holds the Lease: the pod name (its hostname) and the process id."""
    timings: Timings = field(default_factory=Timings)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, namespace: Callable[[], str] = default_namespace
    ) -> LeaderConfig:
        """MODELDEPLOY_LEADER_ELECTION (true/false), MODELDEPLOY_LEASE_NAME,
        MODELDEPLOY_LEASE_NAMESPACE, MODELDEPLOY_LEADER_IDENTITY and
        MODELDEPLOY_LEASE_{DURATION,RENEW_DEADLINE,RETRY_PERIOD}_SECONDS.

        >>> LeaderConfig.from_env({"MODELDEPLOY_LEADER_ELECTION": "maybe"}, lambda: "ns")
        Traceback (most recent call last):
        ...
        modeldeploy.runtime.lease.LeaseConfigError: MODELDEPLOY_LEADER_ELECTION must be true \
or false; got 'maybe'
        """
        env = os.environ if env is None else env
        switch = env.get("MODELDEPLOY_LEADER_ELECTION", "true").strip().lower()
        if switch not in ("true", "false", "1", "0", "yes", "no"):
            raise LeaseConfigError(f"MODELDEPLOY_LEADER_ELECTION must be true or false; got "
                                   f"{env['MODELDEPLOY_LEADER_ELECTION']!r}")  # fmt: skip
        timings = Timings(
            duration=_seconds(env, "MODELDEPLOY_LEASE_DURATION_SECONDS", DEFAULT_DURATION),
            renew_deadline=_seconds(
                env, "MODELDEPLOY_LEASE_RENEW_DEADLINE_SECONDS", DEFAULT_RENEW_DEADLINE
            ),
            retry_period=_seconds(
                env, "MODELDEPLOY_LEASE_RETRY_PERIOD_SECONDS", DEFAULT_RETRY_PERIOD
            ),
        )
        enabled = switch in ("true", "1", "yes")
        return cls(
            enabled=enabled,
            name=env.get("MODELDEPLOY_LEASE_NAME") or DEFAULT_LEASE_NAME,
            namespace=env.get("MODELDEPLOY_LEASE_NAMESPACE") or (namespace() if enabled else ""),
            identity=env.get("MODELDEPLOY_LEADER_IDENTITY")
            or f"{socket.gethostname()}_{os.getpid()}",
            timings=timings,
        )


def _wall() -> datetime:
    return datetime.now(UTC)


@dataclass
class Elector:
    """Holds, renews and releases the Lease; `leading()` says whether this replica may act."""

    kube: Kube
    config: LeaderConfig
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] = _wall
    _observed: Observed | None = field(default=None, init=False)
    _renewed_at: float | None = field(default=None, init=False)
    """Monotonic time the last successful claim was sent (before its read)."""
    _stopped: bool = field(default=False, init=False)
    _was_leading: bool = field(default=False, init=False)
    _callbacks: list[Callable[[], None]] = field(default_factory=list, init=False)

    @property
    def where(self) -> str:
        return f"Lease {self.config.namespace}/{self.config.name}"

    def leading(self) -> bool:
        """Whether this replica may write now (called from reconcile threads too)."""
        return not self._stopped and leading(self._renewed_at, self.clock(), self.config.timings)

    def on_lead(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the event loop) each time this replica starts leading."""
        self._callbacks.append(callback)

    async def run(self) -> None:
        """Try to take or renew the Lease every retry period until stopped. A standby waits a
        little longer at random, so that standbys do not all ask at the same instant."""
        timings = self.config.timings
        log.info("leader election: %s, identity %s (duration %gs, renew deadline %gs, retry "
                 "%gs)", self.where, self.config.identity, timings.duration,
                 timings.renew_deadline, timings.retry_period)  # fmt: skip
        while not self._stopped:
            await self.try_once()
            pause = timings.retry_period
            if not self.leading():
                pause *= 1 + 0.2 * random.random()  # jitter, not secrecy
            await asyncio.sleep(pause)

    async def try_once(self) -> None:
        """One read of the Lease and, when due, one write; then report a change of role."""
        sent = self.clock()
        try:
            await asyncio.to_thread(self._step, sent)
        except ConflictError as exc:
            # Another replica wrote the Lease between our read and our write: it holds it now.
            log.info("%s changed under us (%s): standing by", self.where, exc.answer)
            self._renewed_at = None
            self._observed = None
        except KubeError as exc:
            if exc.status in (401, 403, 404):
                # Refused, not a blip (no RBAC for the Lease, or it was deleted): a leader that
                # cannot renew stops now rather than at its deadline.
                self._renewed_at = None
                log.error("leader election: %s", exc)
            else:  # still the leader until the renew deadline, if it was: a blip is survived
                log.warning("leader election: %s", exc)
        except Exception:  # a bug here must not end the loop (nor the leadership's fence)
            log.exception("leader election: reading or writing %s failed", self.where)
        self._report()

    def _step(self, sent: float) -> None:
        """Blocking: read the Lease, decide, write if due (runs in a worker thread)."""
        ns, name, me = self.config.namespace, self.config.name, self.config.identity
        found = self.kube.read_lease(ns, name)
        now = self.clock()
        self._observed = None if found is None else observe(
            self._observed, Record.from_wire(found), now
        )  # fmt: skip
        move = next_move(me, self._observed, now, self.config.timings)
        if move is Move.WAIT:
            if self._renewed_at is not None and self._observed is not None:
                holder = self._observed.record.holder
                log.warning("%s is held by %s now: stopping all writes", self.where, holder)
            self._renewed_at = None
            return
        record = self._observed.record if self._observed else None
        spec = claim(record, me, self.wall(), self.config.timings)
        if move is Move.CREATE:
            reply = self.kube.create_lease(ns, name, spec)
        else:
            assert record is not None
            reply = self.kube.replace_lease(ns, name, spec, record.resource_version)
        self._observed = Observed(Record.from_wire(reply), self.clock())
        self._renewed_at = sent

    def _report(self) -> None:
        now_leading = self.leading()
        operator_metrics.LEADER.set(1 if now_leading else 0)
        if now_leading == self._was_leading:
            return
        self._was_leading = now_leading
        if now_leading:
            log.info("leading: %s is held by %s; reconciling", self.where, self.config.identity)
            operator_metrics.LEADER_CHANGES.labels(change="started").inc()
            for callback in self._callbacks:
                callback()
        else:
            log.warning("not leading any more (%s): writes stopped", self.where)
            operator_metrics.LEADER_CHANGES.labels(change="stopped").inc()

    async def release(self) -> None:
        """Stop writing, then hand the Lease back if this replica held it (shutdown)."""
        held = self.leading()
        self._stopped = True
        self._report()
        observed = self._observed
        if not held or observed is None or observed.record.holder != self.config.identity:
            return
        spec = released(observed.record, self.wall())
        try:
            await asyncio.to_thread(
                self.kube.replace_lease,
                self.config.namespace,
                self.config.name,
                spec,
                observed.record.resource_version,
            )
        except KubeError as exc:
            log.warning("releasing %s: %s (another replica takes over once it expires)",
                        self.where, exc)  # fmt: skip
            return
        log.info("released %s", self.where)
