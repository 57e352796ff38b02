"""Leader election decisions (modeldeploy.runtime.lease and LeaderConfig), as worked examples
on plain numbers: monotonic seconds for each replica's clock, Lease records as the API server
returns them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modeldeploy.runtime.leader import DEFAULT_LEASE_NAME, LeaderConfig
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

T = Timings(DEFAULT_DURATION, DEFAULT_RENEW_DEADLINE, DEFAULT_RETRY_PERIOD)
"""The worked examples' timings: the operator's defaults (their results, such as a takeover at
t=26, are worked out by hand from them)."""
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def held_by(holder: str | None, version: str, transitions: int = 0) -> Record:
    return Record(holder, int(T.duration), "2026-03-01T11:00:00.000000Z",
                  "2026-03-01T11:59:59.000000Z", transitions, version)  # fmt: skip


def test_no_lease_is_created_and_a_free_one_is_taken_at_once():
    assert next_move("a", None, now=0.0, timings=T) is Move.CREATE
    free = observe(None, held_by(None, "3"), now=0.0)
    assert next_move("a", free, now=0.0, timings=T) is Move.TAKE


def test_a_standby_waits_while_the_holder_renews_and_takes_over_once_it_stops():
    seen: Observed | None = None
    moves = []
    # The holder renews every 2 s until t=10 (each renewal a new resourceVersion), then dies.
    for t in range(0, 40, int(T.retry_period)):
        version = str(min(t, 10))
        seen = observe(seen, held_by("a", version), now=float(t))
        moves.append((t, next_move("b", seen, float(t), T)))
    taken = [t for t, move in moves if move is Move.TAKE]
    assert all(move is Move.WAIT for t, move in moves if t < 25)
    assert taken[0] == 26  # the record last changed at 10: 15 s on b's clock, next retry at 26


def test_the_holder_renews_its_own_lease_whatever_its_age():
    seen = observe(None, held_by("a", "7"), now=0.0)
    assert next_move("a", seen, now=1000.0, timings=T) is Move.RENEW


def test_a_leader_stops_before_any_standby_may_take_over():
    """The leader counts from when it *sent* its last good renewal; a standby from when it
    first *saw* the record that renewal wrote (which is later). renew_deadline < duration, so
    the leader's last moment comes first, whatever the delays in between."""
    for sent in (0.0, 3.5):
        for seen_after in (0.0, 0.1, 4.0):
            seen = observe(None, held_by("a", "9"), now=sent + seen_after)
            leader_stops = next(t / 10 for t in range(0, 1000) if not leading(sent, t / 10, T))
            taken = next(t / 10 for t in range(0, 1000)
                         if next_move("b", seen, t / 10, T) is Move.TAKE)  # fmt: skip
            assert leader_stops < taken
            assert taken - leader_stops >= T.duration - T.renew_deadline


def test_a_takeover_starts_a_new_term_and_a_renewal_keeps_it():
    took = claim(held_by("a", "7", transitions=2), "b", NOW, T)
    assert took == {"holderIdentity": "b", "leaseDurationSeconds": int(T.duration),
                    "acquireTime": "2026-03-01T12:00:00.000000Z",
                    "renewTime": "2026-03-01T12:00:00.000000Z", "leaseTransitions": 3}  # fmt: skip
    renewed = claim(held_by("b", "8", transitions=3), "b", NOW, T)
    assert renewed["acquireTime"] == "2026-03-01T11:00:00.000000Z"
    assert renewed["leaseTransitions"] == 3
    assert claim(None, "a", NOW, T)["leaseTransitions"] == 0


def test_a_released_lease_names_no_holder_and_is_taken_at_once():
    spec = released(held_by("a", "7", transitions=4), NOW)
    assert spec["holderIdentity"] is None
    assert spec["leaseTransitions"] == 4
    after = Record.from_wire({"metadata": {"resourceVersion": "8"}, "spec": spec})
    assert next_move("b", observe(None, after, 0.0), 0.0, T) is Move.TAKE


def test_config_defaults_are_controller_runtimes():
    config = LeaderConfig.from_env({}, namespace=lambda: "ops")
    assert config.enabled
    assert (config.name, config.namespace) == (DEFAULT_LEASE_NAME, "ops")
    assert config.timings == T
    # controller-runtime's LeaseDuration, RenewDeadline and RetryPeriod: the one place this
    # file states the numbers themselves.
    assert (DEFAULT_DURATION, DEFAULT_RENEW_DEADLINE, DEFAULT_RETRY_PERIOD) == (15, 10, 2)
    assert config.identity.endswith(f"_{__import__('os').getpid()}")


def test_config_from_the_environment():
    config = LeaderConfig.from_env({
        "MODELDEPLOY_LEASE_NAME": "md", "MODELDEPLOY_LEASE_NAMESPACE": "system",
        "MODELDEPLOY_LEADER_IDENTITY": "pod-1", "MODELDEPLOY_LEASE_DURATION_SECONDS": "6",
        "MODELDEPLOY_LEASE_RENEW_DEADLINE_SECONDS": "4",
        "MODELDEPLOY_LEASE_RETRY_PERIOD_SECONDS": "1",
    }, namespace=lambda: pytest.fail("the namespace was given"))  # fmt: skip
    assert (config.name, config.namespace, config.identity) == ("md", "system", "pod-1")
    assert config.timings == Timings(6, 4, 1)
    off = LeaderConfig.from_env({"MODELDEPLOY_LEADER_ELECTION": "false"}, namespace=lambda: "x")
    assert not off.enabled


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODELDEPLOY_LEASE_DURATION_SECONDS": "soon"},
         "MODELDEPLOY_LEASE_DURATION_SECONDS must be a number of seconds; got 'soon'"),
        ({"MODELDEPLOY_LEASE_RETRY_PERIOD_SECONDS": "0"},
         "MODELDEPLOY_LEASE_RETRY_PERIOD_SECONDS must be a positive number of seconds; got 0"),
        ({"MODELDEPLOY_LEASE_RENEW_DEADLINE_SECONDS": f"{DEFAULT_DURATION:g}"},
         f"MODELDEPLOY_LEASE_RENEW_DEADLINE_SECONDS ({DEFAULT_DURATION:g}) must be less than "
         f"MODELDEPLOY_LEASE_DURATION_SECONDS ({DEFAULT_DURATION:g})"),
        ({"MODELDEPLOY_LEASE_RETRY_PERIOD_SECONDS": f"{DEFAULT_RENEW_DEADLINE / 2 + 1:g}"},
         f"MODELDEPLOY_LEASE_RETRY_PERIOD_SECONDS ({DEFAULT_RENEW_DEADLINE / 2 + 1:g}) must be "
         f"at most half of MODELDEPLOY_LEASE_RENEW_DEADLINE_SECONDS ({DEFAULT_RENEW_DEADLINE:g})"),
        ({"MODELDEPLOY_LEADER_ELECTION": "on"},
         "MODELDEPLOY_LEADER_ELECTION must be true or false; got 'on'"),
    ],
)  # fmt: skip
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(LeaseConfigError) as caught:
        LeaderConfig.from_env(env, namespace=lambda: "x")
    assert str(caught.value).startswith(message)
