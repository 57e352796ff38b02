"""The pure half of the prometheus provider: PromQL for one revision, and reading the answers.

The shell sends each query to `GET /api/v1/query?query=...` and passes the decoded JSON back
here. Series are selected by namespace and revision labels; how those labels get onto the
series depends on the user's scrape configuration (pod-label relabeling usually maps
`modeldeploy.io/revision` to `revision`), so both label names are parameters.

Two ways to read the built-in metrics, for the two judges:

- `window_queries`: request counts by code and latency buckets by `le` over the interval,
  read back into a `Window` by `window_from_results`. The judges then compute every built-in
  metric, and the statistical judge its tests, exactly as for the pods provider.
- `builtin_query`: one PromQL expression per built-in metric (histogram_quantile and friends),
  for dashboards, `modeldeploy status`, or users who want to see what is being judged.

`increase()` needs two samples inside the range: keep the analysis interval at least twice the
scrape interval, or the counts come back empty (Inconclusive, never Failed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from modeldeploy.core.analysis.builtin import ERROR_RATE, LATENCY_QUANTILES, REQUEST_RATE
from modeldeploy.core.analysis.samples import LATENCY_BUCKET, LATENCY_SUM, REQUESTS_TOTAL
from modeldeploy.core.analysis.window import Window

ERROR_CODES_RE: Final = "5..|429"
"""The codes `builtin.is_error` counts, as a PromQL regular expression (fully anchored)."""
_PLACEHOLDER: Final = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")


class QueryError(ValueError):
    """Prometheus refused a query or answered in a shape a metric cannot use."""


def quote(value: str) -> str:
    """A PromQL double-quoted string literal.

    >>> print(quote('a"b\\\\c'))
    "a\\"b\\\\c"
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


@dataclass(frozen=True)
class Target:
    """Which series belong to one revision, and over what range.

    >>> Target("ml", "fraud-a41e02", "30s").selector()
    '{namespace="ml", revision="fraud-a41e02"}'
    """

    namespace: str
    revision: str
    interval: str
    """A PromQL duration (the spec's interval, e.g. 30s or 1m30s)."""
    namespace_label: str = "namespace"
    revision_label: str = "revision"

    def selector(self, extra: str = "") -> str:
        """The label matchers, plus any extra matcher (e.g. code=~"5..")."""
        parts = [
            f"{self.namespace_label}={quote(self.namespace)}",
            f"{self.revision_label}={quote(self.revision)}",
        ]
        if extra:
            parts.append(extra)
        return "{" + ", ".join(parts) + "}"

    def increase(self, series: str, extra: str = "") -> str:
        return f"increase({series}{self.selector(extra)}[{self.interval}])"


@dataclass(frozen=True)
class WindowQueries:
    """The three queries whose answers make a `Window`."""

    requests: str
    buckets: str
    latency_sum: str


def window_queries(target: Target) -> WindowQueries:
    """Requests by code, cumulative latency buckets by le, and the latency sum, over the interval.

    >>> print(window_queries(Target("ml", "r1", "30s")).requests)
    sum by (code) (increase(modelserve_requests_total{namespace="ml", revision="r1"}[30s]))
    """
    return WindowQueries(
        requests=f"sum by (code) ({target.increase(REQUESTS_TOTAL)})",
        buckets=f"sum by (le) ({target.increase(LATENCY_BUCKET)})",
        latency_sum=f"sum({target.increase(LATENCY_SUM)})",
    )


def builtin_query(name: str, target: Target) -> str:
    """One PromQL expression for a built-in metric, in the units of its limits.

    The error rate's numerator falls back to 0 (`or vector(0)`) so that an interval with
    requests and no errors reads 0, not "no data"; with no requests at all the division is
    empty or NaN, which `scalar_result` reads as no data.

    >>> print(builtin_query("latency-p99", Target("ml", "r1", "1m")))
    histogram_quantile(0.99, sum by (le) (rate(modelserve_request_duration_seconds_bucket\
{namespace="ml", revision="r1"}[1m]))) * 1000
    """
    sel, rng = target.selector(), target.interval
    if name == ERROR_RATE:
        errors = target.increase(REQUESTS_TOTAL, f"code=~{quote(ERROR_CODES_RE)}")
        return f"(sum({errors}) or vector(0)) / sum({target.increase(REQUESTS_TOTAL)})"
    if name == REQUEST_RATE:
        return f"sum(rate({REQUESTS_TOTAL}{sel}[{rng}]))"
    if name in LATENCY_QUANTILES:
        q = LATENCY_QUANTILES[name]
        return f"histogram_quantile({q}, sum by (le) (rate({LATENCY_BUCKET}{sel}[{rng}]))) * 1000"
    raise ValueError(f"{name!r} is not a built-in metric")


def custom_query(template: str, target: Target) -> str:
    """A user's query with {{namespace}}, {{revision}} and {{interval}} filled in.

    Values are substituted as they are (the user writes the quotes), and an unknown
    placeholder is an error that names it, rather than a query Prometheus rejects obscurely.

    >>> custom_query('sum(x{ns="{{namespace}}", rev="{{ revision }}"}[{{interval}}])',
    ...              Target("ml", "r1", "30s"))
    'sum(x{ns="ml", rev="r1"}[30s])'
    """
    values = {
        "namespace": target.namespace,
        "revision": target.revision,
        "interval": target.interval,
    }

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise QueryError(
                f"unknown placeholder {{{{{key}}}}} in query; use {{{{namespace}}}}, "
                "{{revision}} or {{interval}}"
            )
        return values[key]

    return _PLACEHOLDER.sub(fill, template)


def _data(response: Mapping[str, Any]) -> tuple[str, Any]:
    """resultType and result of a /api/v1/query answer; QueryError for an error answer."""
    if response.get("status") != "success":
        kind = response.get("errorType", "error")
        raise QueryError(f"prometheus answered {kind}: {response.get('error', 'no reason given')}")
    data = response.get("data")
    if not isinstance(data, Mapping) or "result" not in data:
        raise QueryError("prometheus answer has no data.result")
    return str(data.get("resultType", "")), data["result"]


def _number(pair: Any) -> float:
    """A [timestamp, "value"] pair's value ("NaN", "+Inf" included)."""
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise QueryError(f"not a [time, value] pair: {pair!r}")
    try:
        return float(pair[1])
    except (TypeError, ValueError):
        raise QueryError(f"not a number: {pair[1]!r}") from None


def vector_result(response: Mapping[str, Any]) -> list[tuple[dict[str, str], float]]:
    """Every series of an instant-vector answer as (labels, value)."""
    kind, result = _data(response)
    if kind == "scalar":
        return [({}, _number(result))]
    if kind != "vector" or not isinstance(result, list):
        raise QueryError(f"expected an instant vector, got {kind or 'nothing'}")
    rows = []
    for item in result:
        if not isinstance(item, Mapping):
            raise QueryError(f"not a sample: {item!r}")
        labels = item.get("metric", {})
        rows.append(({str(k): str(v) for k, v in labels.items()}, _number(item.get("value"))))
    return rows


def scalar_result(response: Mapping[str, Any]) -> float | None:
    """The one value of a metric query; None when there is no data (empty vector or NaN).

    More than one series is an error: a metric must be a single number (wrap it in sum()).

    >>> scalar_result({"status": "success", "data": {"resultType": "vector",
    ...     "result": [{"metric": {}, "value": [1700000000.1, "0.25"]}]}})
    0.25
    >>> scalar_result({"status": "success", "data": {"resultType": "vector", "result": []}})
    """
    rows = vector_result(response)
    if len(rows) > 1:
        raise QueryError(f"query returned {len(rows)} series; a metric needs one (use sum)")
    if not rows or math.isnan(rows[0][1]):
        return None
    return rows[0][1]


def window_from_results(
    seconds: float,
    requests: Mapping[str, Any],
    buckets: Mapping[str, Any],
    latency_sum: Mapping[str, Any],
) -> Window:
    """A `Window` from the answers to `window_queries` (NaN samples count as 0)."""

    def clean(value: float) -> float:
        return 0.0 if math.isnan(value) else value

    by_code = {labels.get("code", ""): clean(v) for labels, v in vector_result(requests)}
    cumulative = {
        float(labels["le"]): clean(v) for labels, v in vector_result(buckets) if "le" in labels
    }
    total = scalar_result(latency_sum)
    return Window.from_cumulative(seconds, by_code, cumulative, clean(total or 0.0))
