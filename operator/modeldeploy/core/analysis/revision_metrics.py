"""What a metrics provider hands the judges for one revision and one interval."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from modeldeploy.api.spec import MetricCheck
from modeldeploy.core.analysis.builtin import BUILTIN_NAMES, builtin_value
from modeldeploy.core.analysis.window import Window


@dataclass(frozen=True)
class RevisionMetrics:
    """One revision over one interval, from either provider.

    `window` holds request counts and the latency histogram (the pods provider's deltas, or the
    prometheus provider's `increase()` queries); None when nothing could be read. `custom` holds
    the value of each custom (PromQL) metric by name; None or NaN means the query returned no
    data.
    """

    window: Window | None = None
    custom: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def requests(self) -> int | None:
        """Requests answered in the interval; None when unknown."""
        return None if self.window is None else round(self.window.total)

    def value(self, check: MetricCheck) -> float | None:
        """The metric a check names, in the units of its limits; None for no data.

        A check with a `query` is custom even when it reuses a built-in name.
        """
        if check.query is not None or check.name not in BUILTIN_NAMES:
            value = self.custom.get(check.name)
        elif self.window is None:
            value = None
        else:
            value = builtin_value(check.name, self.window)
        return None if value is None or math.isnan(value) else value
