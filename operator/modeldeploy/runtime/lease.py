"""Leader election through a coordination.k8s.io/v1 Lease: the decisions, as pure functions.

Several operator replicas may run; exactly one acts (the leader), the others only watch. Who
leads is recorded in one Lease object: its holder renews it every `retry_period` seconds.
A replica that does not hold the Lease takes it over when the holder released it (no holder),
or when the record stayed the same for the holder's `leaseDurationSeconds` as measured on the
taker's own clock, from the moment it first saw that record: the `renewTime` in the record is
the holder's wall clock and is never compared with ours (clocks of two nodes disagree), the
same rule as client-go's leader election, which controller-runtime uses.

The leader counts itself the leader only while its last successful renewal was *sent* less
than `renew_deadline` seconds ago, by the monotonic clock. As renew_deadline < duration, a
leader that cannot renew (partitioned, its event loop stalled, the API server down) stops
acting before any other replica may take over, even though it never hears that it lost.

Everything here is a function of plain values (monotonic seconds, wall-clock datetimes, the
Lease as the API server returns it), so the tests are worked examples; runtime/leader.py does
the I/O.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

DEFAULT_DURATION: Final = 15.0
DEFAULT_RENEW_DEADLINE: Final = 10.0
DEFAULT_RETRY_PERIOD: Final = 2.0


class LeaseConfigError(ValueError):
    """A leader-election setting that cannot work; the message names the variable and the fix."""


@dataclass(frozen=True)
class Timings:
    """Leader-election timings in seconds (controller-runtime's defaults: 15, 10, 2).

    >>> Timings(duration=10, renew_deadline=12)
    Traceback (most recent call last):
    ...
    modeldeploy.runtime.lease.LeaseConfigError: MODELDEPLOY_LEASE_RENEW_DEADLINE_SECONDS (12) \
must be less than MODELDEPLOY_LEASE_DURATION_SECONDS (10): a leader must stop before another \
replica may take over
    """

    duration: float = DEFAULT_DURATION
    """How long a Lease record that does not change keeps others from taking it."""
    renew_deadline: float = DEFAULT_RENEW_DEADLINE
    """How long the leader keeps acting after its last successful renewal was sent."""
    retry_period: float = DEFAULT_RETRY_PERIOD
    """How often every replica reads the Lease, and the leader renews it."""

    def __post_init__(self) -> None:
        for name, value in (("DURATION", self.duration), ("RENEW_DEADLINE", self.renew_deadline),
                            ("RETRY_PERIOD", self.retry_period)):  # fmt: skip
            if not (math.isfinite(value) and value > 0):
                raise LeaseConfigError(
                    f"MODELDEPLOY_LEASE_{name}_SECONDS must be a positive number of seconds; "
                    f"got {value}"
                )
        if self.renew_deadline >= self.duration:
            raise LeaseConfigError(
                f"MODELDEPLOY_LEASE_RENEW_DEADLINE_SECONDS ({self.renew_deadline:g}) must be less "
                f"than MODELDEPLOY_LEASE_DURATION_SECONDS ({self.duration:g}): a leader must stop "
                "before another replica may take over"
            )
        if self.retry_period * 2 > self.renew_deadline:
            raise LeaseConfigError(
                f"MODELDEPLOY_LEASE_RETRY_PERIOD_SECONDS ({self.retry_period:g}) must be at most "
                f"half of MODELDEPLOY_LEASE_RENEW_DEADLINE_SECONDS ({self.renew_deadline:g}): the "
                "leader needs two tries to renew before it must stop"
            )


@dataclass(frozen=True)
class Record:
    """The parts of a Lease that election reads, from the API server's JSON."""

    holder: str | None
    duration_seconds: int | None
    acquire_time: str | None
    renew_time: str | None
    transitions: int
    resource_version: str | None

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> Record:
        """Read a Lease (an empty holderIdentity is no holder).

        >>> Record.from_wire({"metadata": {"resourceVersion": "7"},
        ...     "spec": {"holderIdentity": "op-1_12", "leaseDurationSeconds": 15}}).holder
        'op-1_12'
        """
        spec = obj.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or None,
            duration_seconds=spec.get("leaseDurationSeconds"),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=(obj.get("metadata") or {}).get("resourceVersion"),
        )


@dataclass(frozen=True)
class Observed:
    """A Lease record and the monotonic time this replica first saw it unchanged."""

    record: Record
    since: float


def observe(previous: Observed | None, record: Record, now: float) -> Observed:
    """The newest observation: the clock restarts only when the record changed (a renewal
    changes its resourceVersion).

    >>> r = Record("a", 15, None, None, 0, "7")
    >>> observe(observe(None, r, now=100.0), r, now=105.0).since
    100.0
    >>> observe(observe(None, r, now=100.0), Record("a", 15, None, None, 0, "8"), now=105.0).since
    105.0
    """
    if previous is not None and previous.record.resource_version == record.resource_version:
        return previous
    return Observed(record, now)


class Move(enum.Enum):
    """What a replica does after reading the Lease."""

    CREATE = "create"
    """There is no Lease: create it, holding it."""
    RENEW = "renew"
    """This replica holds it: write a new renewTime."""
    TAKE = "take"
    """Released or expired: write this replica as the holder."""
    WAIT = "wait"
    """Another replica holds it and it has not expired: write nothing."""


def next_move(identity: str, observed: Observed | None, now: float, timings: Timings) -> Move:
    """What to do with the Lease as last observed (None: there is none).

    >>> t = Timings()
    >>> held = Observed(Record("b", 15, None, None, 0, "7"), since=100.0)
    >>> next_move("a", held, now=114.9, timings=t), next_move("a", held, now=115.0, timings=t)
    (<Move.WAIT: 'wait'>, <Move.TAKE: 'take'>)
    >>> next_move("b", held, now=200.0, timings=t)
    <Move.RENEW: 'renew'>
    >>> next_move("a", Observed(Record(None, 1, None, None, 3, "9"), 100.0), 100.0, t)
    <Move.TAKE: 'take'>
    """
    if observed is None:
        return Move.CREATE
    record = observed.record
    if record.holder == identity:
        return Move.RENEW
    if record.holder is None:
        return Move.TAKE
    duration = record.duration_seconds if record.duration_seconds else timings.duration
    return Move.TAKE if now >= observed.since + duration else Move.WAIT


def leading(renewed_at: float | None, now: float, timings: Timings) -> bool:
    """Whether a replica whose last successful renewal was sent at `renewed_at` (monotonic)
    may still act: only within renew_deadline of it.

    >>> t = Timings()
    >>> leading(100.0, 109.9, t), leading(100.0, 110.0, t), leading(None, 1, t)
    (True, False, False)
    """
    return renewed_at is not None and now - renewed_at < timings.renew_deadline


def micro_time(at: datetime) -> str:
    """A Lease's MicroTime (RFC 3339 with microseconds, UTC).

    >>> micro_time(datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=UTC))
    '2026-03-01T12:00:00.000005Z'
    """
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim(
    record: Record | None, identity: str, wall_now: datetime, timings: Timings
) -> dict[str, Any]:
    """The Lease spec that makes (or keeps) `identity` the holder.

    A renewal keeps acquireTime and the transition count; a takeover starts a new term.

    >>> now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    >>> claim(Record("b", 15, "x", "y", 2, "7"), "a", now, Timings())["leaseTransitions"]
    3
    >>> claim(Record("a", 15, "x", "y", 2, "7"), "a", now, Timings())["acquireTime"]
    'x'
    """
    stamp = micro_time(wall_now)
    acquired, transitions = stamp, 0
    if record is not None and record.holder == identity:
        acquired, transitions = record.acquire_time or stamp, record.transitions
    elif record is not None:
        transitions = record.transitions + 1
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": math.ceil(timings.duration),
        "acquireTime": acquired,
        "renewTime": stamp,
        "leaseTransitions": transitions,
    }


def released(record: Record, wall_now: datetime) -> dict[str, Any]:
    """The Lease spec a leader writes as it stops: no holder, so another replica takes over
    at once instead of waiting out the duration.

    >>> spec = released(Record("a", 15, "x", "y", 2, "7"), datetime(2026, 3, 1, tzinfo=UTC))
    >>> spec["holderIdentity"], spec["leaseTransitions"]
    (None, 2)
    """
    stamp = micro_time(wall_now)
    return {
        "holderIdentity": None,
        "leaseDurationSeconds": 1,
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": record.transitions,
    }
