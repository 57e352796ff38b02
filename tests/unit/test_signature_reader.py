"""The signature gate's reader (runtime/providers/signatures.py) when nothing answers: it never
raises, asks again only after RETRY_AFTER, and gives up after GIVE_UP so that the gate skips the
check instead of holding a rollout forever. The API server here is a real client aimed at a
port nothing listens on (refused at once)."""

from __future__ import annotations

import socket

from kubernetes import client

from modeldeploy.core.gate import Unreadable, judge
from modeldeploy.runtime.kube import Kube
from modeldeploy.runtime.providers.signatures import GIVE_UP, RETRY_AFTER, SignatureReader


def unreachable() -> Kube:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connections are refused
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{port}"
    config.retries = 0
    return Kube(client.ApiClient(config))


def test_failed_reads_wait_then_give_up_and_the_gate_skips_the_check() -> None:
    now = [1000.0]
    reader = SignatureReader(clock=lambda: now[0])
    kube = unreachable()
    first = reader.read(kube, "ml", "iris", "iris-a", "iris-b")
    assert isinstance(first.before, Unreadable)
    assert not first.before.final
    assert not first.new
    assert judge(first, allow=False).outcome == "wait"
    # Within RETRY_AFTER nothing is asked again (the same answer, from memory).
    now[0] += RETRY_AFTER / 2
    assert reader.read(kube, "ml", "iris", "iris-a", "iris-b").before == first.before
    now[0] += GIVE_UP
    given_up = reader.read(kube, "ml", "iris", "iris-a", "iris-b")
    assert isinstance(given_up.before, Unreadable)
    assert given_up.before.final
    assert given_up.new
    verdict = judge(given_up, allow=False)
    assert verdict.outcome == "pass"
    assert [e.reason for e in verdict.events] == ["SignatureCheckSkipped"]
    # Settled: later reads say the same without asking, and post nothing again.
    assert not reader.read(kube, "ml", "iris", "iris-a", "iris-b").new
    reader.forget_owner("ml", "iris")
    assert reader.known == {}
