"""HTTP webhooks: the POST both hooks and notifications make, and webhook hooks' calls.

A webhook hook's verdict is I/O, so it never runs in a reconcile: the plan lists the calls its
running hooks owe (core/hooks.py), reconcile hands them to `WebhookRunner.submit`, which makes
each one once (whatever how often it is listed) on a small pool of daemon threads, and the next
reconciles read the results back (`results`) and pass them to the plan, as analysis checks are.
A result is kept until the stored status records its verdict (`forget`), so a refused status
write loses nothing; an hour at most.

The rule for a verdict (also in docs/api.md, HookWebhook): a 2xx answer passes. A timeout, a
connection error, 408, 425, 429 or any 5xx is transient and retried `retries` times, after 1s,
2s, 4s... (capped at 10s), as long as the hook's timeout allows; any other answer (a 3xx: no
redirect is followed; a 4xx: the receiver said no) fails at once. Only http and https URLs are
called, a URL read from a Secret included.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from modeldeploy.api.hooks import HTTP_URL_HINT, HTTP_URL_PATTERN, ValueFromSecret, WebhookHeader
from modeldeploy.core.hooks import HookKey, WebhookCall, WebhookResult
from modeldeploy.runtime.errors import KubeError
from modeldeploy.runtime.singleton import process_singleton

log = logging.getLogger(__name__)
SecretValue = Callable[[str, str, str], str]
"""(namespace, Secret name, key) → the value (Kube.secret_value)."""
TRANSIENT: Final = frozenset({408, 425, 429})
BACKOFF_CAP_SECONDS: Final = 10.0
RESULT_TTL_SECONDS: Final = 3600.0
WORKERS: Final = 8
ANSWER_SNIPPET: Final = 200
"""Characters of a failing answer's body quoted in the verdict (what the receiver said)."""


class WebhookConfigError(Exception):
    """A webhook that cannot be called as configured (a Secret missing, a URL not http(s))."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a pass: following it could lead anywhere (another host, a
    cluster-internal address), so it fails the call like any other non-2xx."""

    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


_OPENER: Final = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True)
class Answer:
    """What one POST came to: the HTTP status (None: no answer at all) and why, in words."""

    status: int | None
    reason: str

    @property
    def passed(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        return self.status is None or self.status in TRANSIENT or self.status >= 500


def post_json(url: str, body: Any, headers: dict[str, str], timeout: float) -> Answer:
    """POST `body` as JSON; never raises for what the network or the receiver does."""
    data = json.dumps(body).encode()
    sent = {"Content-Type": "application/json", "User-Agent": "modeldeploy", **headers}
    request = urllib.request.Request(url, data=data, headers=sent, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(65536)
            return Answer(int(response.status), f"HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        said = _snippet(exc)
        return Answer(exc.code, f"HTTP {exc.code}{': ' + said if said else ''}")
    except TimeoutError:
        return Answer(None, f"no answer within {timeout:g}s")
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            return Answer(None, f"no answer within {timeout:g}s")
        return Answer(None, f"connection failed: {exc.reason}")
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, f"connection failed: {exc!r}")


def _snippet(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(ANSWER_SNIPPET * 4).decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return ""
    return " ".join(text.split())[:ANSWER_SNIPPET]


def resolve(
    namespace: str,
    url: str | None,
    url_from: ValueFromSecret | None,
    headers: Iterable[WebhookHeader],
    secret: SecretValue,
    field: str,
) -> tuple[str, dict[str, str]]:
    """The URL and headers to send, Secrets read now (never stored, logged or reported)."""
    if url_from is not None:
        ref = url_from.secret_key_ref
        try:
            url = secret(namespace, ref.name, ref.key)
        except KubeError as exc:
            raise WebhookConfigError(f"{field}.urlFrom: {exc}; create it or fix the "
                                     "reference") from exc  # fmt: skip
        if not re.fullmatch(HTTP_URL_PATTERN, url):
            raise WebhookConfigError(f"{field}.urlFrom: the value of key {ref.key!r} in Secret "
                                     f"{ref.name} {HTTP_URL_HINT}")  # fmt: skip
    assert url is not None
    sent: dict[str, str] = {}
    for i, header in enumerate(headers):
        if header.value_from is not None:
            ref = header.value_from.secret_key_ref
            try:
                sent[header.name] = secret(namespace, ref.name, ref.key)
            except KubeError as exc:
                raise WebhookConfigError(f"{field}.headers[{i}].valueFrom: {exc}") from exc
        else:
            sent[header.name] = header.value or ""
    return url, sent


def call_webhook(
    call: WebhookCall,
    namespace: str,
    secret: SecretValue,
    sleep: Callable[[float], None] = time.sleep,
) -> WebhookResult:
    """Make one webhook hook's call, retries included, to its verdict (see the module doc)."""
    started = time.monotonic()
    hook = call.webhook
    try:
        url, headers = resolve(namespace, hook.url, hook.url_from, hook.headers or [], secret,
                               call.field)  # fmt: skip
    except WebhookConfigError as exc:
        return WebhookResult(False, str(exc), time.monotonic() - started, 0)
    attempts, delay = 0, 1.0
    answer = Answer(None, "not called")
    while True:
        left = (call.deadline - datetime.now(UTC)).total_seconds()
        if left <= 0:
            said = f"; last attempt: {answer.reason}" if attempts else ""
            return WebhookResult(False, f"DeadlineExceeded: the hook's timeout passed{said}",
                                 time.monotonic() - started, attempts)  # fmt: skip
        attempts += 1
        answer = post_json(url, call.payload, headers, min(hook.timeout.seconds, left))
        took = time.monotonic() - started
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if answer.passed:
            return WebhookResult(True, f"{answer.reason} in {took:.2f}s{tries}", took, attempts)
        if not answer.transient or attempts > hook.retries or delay >= left:
            final = "" if answer.transient else " (final: not retried)"
            return WebhookResult(False, f"{answer.reason}{tries}{final}", took, attempts)
        sleep(delay)
        delay = min(delay * 2, BACKOFF_CAP_SECONDS)


@dataclass
class _Pending:
    uid: str
    namespace: str
    call: WebhookCall
    secret: SecretValue


class WebhookRunner:
    """Makes webhook hooks' calls on daemon threads and keeps their results for reconcile.

    Thread-safe: reconciles of different objects run in different threads. Daemon threads, so
    a stopping operator never waits for a receiver; a call lost that way is made again by the
    next operator (the run is still Running in the status), within the hook's timeout."""

    def __init__(self, workers: int = WORKERS) -> None:
        self._workers = workers
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._lock = threading.Lock()
        self._started = False
        self._owed: set[tuple[str, HookKey]] = set()
        self._results: dict[tuple[str, HookKey], tuple[WebhookResult, float]] = {}

    def submit(self, uid: str, namespace: str, calls: Iterable[WebhookCall],
               secret: SecretValue) -> int:  # fmt: skip
        """Queue the calls not made or in flight yet; returns how many were queued."""
        queued = 0
        with self._lock:
            for call in calls:
                key = (uid, call.key)
                if key in self._owed or key in self._results:
                    continue
                self._owed.add(key)
                self._queue.put(_Pending(uid, namespace, call, secret))
                queued += 1
            if queued and not self._started:
                self._started = True
                for i in range(self._workers):
                    threading.Thread(target=self._work, name=f"webhook-{i}", daemon=True).start()
        return queued

    def results(self, uid: str) -> dict[HookKey, WebhookResult]:
        """The finished calls of one ModelDeployment, by run."""
        with self._lock:
            return {key: result for (owner, key), (result, _) in self._results.items()
                    if owner == uid}  # fmt: skip

    def forget(self, uid: str, recorded: Iterable[HookKey]) -> None:
        """Drop the results the stored status has recorded (and any older than an hour)."""
        done = {(uid, key) for key in recorded}
        expired = time.monotonic() - RESULT_TTL_SECONDS
        with self._lock:
            for key in [k for k, (_, at) in self._results.items() if k in done or at < expired]:
                del self._results[key]

    def _work(self) -> None:
        while True:
            pending = self._queue.get()
            try:
                result = call_webhook(pending.call, pending.namespace, pending.secret)
            except Exception as exc:  # a bug must not kill the worker or lose the verdict
                log.exception("webhook hook %s of %s", pending.call.key, pending.namespace)
                result = WebhookResult(False, f"the operator failed to call it: {exc!r}", 0, 0)
            phase, name, revision = pending.call.key
            log.info("webhook hook %s/%s for %s in %s: %s", phase, name, revision,
                     pending.namespace, result.message)  # fmt: skip
            with self._lock:
                key = (pending.uid, pending.call.key)
                self._owed.discard(key)
                self._results[key] = (result, time.monotonic())


@process_singleton
def shared_runner() -> WebhookRunner:
    """The operator process's runner (one per process: results outlive a reconcile)."""
    return WebhookRunner()
