"""What `modeldeploy status NAME` prints: a ModelDeployment at a glance, as text.

A pure function of the object (as the API server returns it), its Events and the time, so
tests check what a user reads without a cluster, and `--watch` just calls it again. Like
`kubectl argo rollouts get rollout`: the phase and why, the strategy and the step in progress,
one line per revision (model, the digest of the bytes it serves, pods, traffic share), the last
analysis checks with their figures, the hooks, and the last Events.

It reads the status as plain data, not through the status model: a CLI older or newer than
the operator that wrote the object still shows what it understands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import ValidationError

from modeldeploy.api.durations import parse_duration
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.core.analysis.verdict import show

CHECKS_SHOWN: Final = 3
EVENTS_SHOWN: Final = 8
HISTORY_SHOWN: Final = 5
ROLES: Final = (
    ("stable", "stableRevision"),
    ("canary", "canaryRevision"),
    ("previous", "previousRevision"),
    ("rolled back", "rolledBackRevision"),
)

_RESET: Final = "\x1b[0m"
_STYLES: Final = {
    "green": "\x1b[32m",
    "red": "\x1b[31m",
    "yellow": "\x1b[33m",
    "blue": "\x1b[34m",
    "cyan": "\x1b[36m",
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
}
_PHASES: Final = {
    "Healthy": ("✔", "green"),
    "Progressing": ("◌", "yellow"),
    "Paused": ("॥", "cyan"),
    "RolledBack": ("✖", "red"),
    "Failed": ("✖", "red"),
}
_VERDICTS: Final = {
    "Passed": "green",
    "Failed": "red",
    "Inconclusive": "yellow",
    "Running": "yellow",
    "Warning": "yellow",
}

Cell = tuple[str, str | None]
"""Text and the style it is shown in (None: plain)."""
Paint = Callable[[str, str | None], str]


def render(
    obj: Mapping[str, Any], events: Iterable[Mapping[str, Any]], now: datetime, *, color: bool
) -> str:
    """The status view of one ModelDeployment; `color` adds ANSI colours (a terminal)."""
    paint = _painter(color)
    meta = obj.get("metadata") or {}
    status: Mapping[str, Any] = obj.get("status") or {}
    spec = _spec(obj.get("spec") or {})
    lines: list[str] = []

    def field(label: str, value: str) -> None:
        lines.append(f"{label + ':':<15}{value}")

    field("Name", paint(str(meta.get("name", "?")), "bold"))
    field("Namespace", str(meta.get("namespace", "?")))
    field("Phase", _phase(status, meta, paint))
    field("Strategy", spec.strategy)
    step = _step(spec, status, now)
    if step:
        field("  Step", step)
    if status.get("canaryRevision") or status.get("canaryWeight"):
        field("  Weight", f"{status.get('canaryWeight', 0)}% of live traffic to the canary")
    model = spec.model
    if model:
        field("Model", model)
    field("Replicas", f"{status.get('readyReplicas', 0)}/{status.get('replicas', 0)} ready")
    if status.get("url"):
        field("URL", str(status["url"]))
    if status.get("previewUrl"):
        field("Preview", str(status["previewUrl"]))
    conditions = _conditions(status, paint)
    if conditions:
        field("Conditions", conditions)

    lines += _section("Revisions", ["ROLE", "REVISION", "MODEL", "DIGEST", "PODS", "TRAFFIC"],
                      _revisions(status), paint)  # fmt: skip
    analysis = status.get("analysis") or {}
    checks = list(analysis.get("checks") or [])
    if checks:
        title = (
            f"Checks (last {min(len(checks), CHECKS_SHOWN)} of {len(checks)}; "
            f"{analysis.get('passedChecks', 0)} passed, "
            f"{analysis.get('consecutiveFailures', 0)} failed in a row)"
        )
        header = ["AGE", "STEP", "VERDICT", "METRIC", "CANARY", "STABLE", "LIMIT", "P", "REQ"]
        lines += _section(title, header, _checks(checks[-CHECKS_SHOWN:], now), paint)
    hooks = list(status.get("hooks") or [])
    if hooks:
        lines += _section("Hooks", ["PHASE", "NAME", "REVISION", "VERDICT", "AGE", "MESSAGE"],
                          _hooks(hooks, now), paint)  # fmt: skip
    history = list(status.get("history") or [])[-HISTORY_SHOWN:]
    if history:
        lines += _section("History", ["AGE", "EVENT", "REVISION", "MODEL", "DIGEST", "MESSAGE"],
                          _history(history, now), paint)  # fmt: skip
    shown = _events(events, meta.get("uid"))[-EVENTS_SHOWN:]
    if shown:
        lines += _section("Events", ["AGE", "TYPE", "REASON", "MESSAGE"],
                          _event_rows(shown, now), paint)  # fmt: skip
    return "\n".join(lines) + "\n"


class _Spec:
    """The few spec values the view shows, with the API's defaults."""

    def __init__(self, strategy: str, steps: Sequence[Mapping[str, Any]], model: str) -> None:
        self.strategy, self.steps, self.model = strategy, steps, model


def _spec(raw: Mapping[str, Any]) -> _Spec:
    model = raw.get("model") or {}
    version, uri = model.get("version"), model.get("uri")
    shown = f"{version} ({uri})" if version and uri else str(version or uri or "")
    if model.get("sha256"):
        shown += f", pinned sha256 {str(model['sha256'])[:12]}"
    try:
        spec = ModelDeploymentSpec.model_validate(raw)
    except ValidationError:  # written by a newer API: show what reads as it is
        rollout = raw.get("rollout") or {}
        return _Spec(str(rollout.get("strategy") or "Canary"), list(rollout.get("steps") or []),
                     shown)  # fmt: skip
    steps = [s.to_wire() for s in spec.rollout.steps]
    return _Spec(spec.rollout.strategy.value, steps, shown)


def _painter(color: bool) -> Paint:
    def paint(text: str, style: str | None) -> str:
        if not color or not style or not text:
            return text
        return "".join(_STYLES[s] for s in style.split("+")) + text + _RESET

    return paint


def _phase(status: Mapping[str, Any], meta: Mapping[str, Any], paint: Paint) -> str:
    phase = status.get("phase")
    if not phase:
        return paint("(no status yet: is the operator running?)", "yellow")
    symbol, style = _PHASES.get(str(phase), ("?", None))
    text = paint(f"{symbol} {phase}", style + "+bold" if style else "bold")
    why = _why(status)
    stale = ""
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        stale = paint(f" (status of generation {observed}; the spec is at {generation})", "dim")
    return text + (f"  {why}" if why else "") + stale


def _why(status: Mapping[str, Any]) -> str:
    """The message of the condition that explains the phase (Degraded, then Progressing)."""
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    for kind in ("Degraded", "Stalled", "Progressing", "Ready"):
        cond = conditions.get(kind)
        if cond and cond.get("status") == "True" and cond.get("message"):
            return str(cond["message"])
    return ""


def _conditions(status: Mapping[str, Any], paint: Paint) -> str:
    good = {"Ready": "True", "Degraded": "False", "Stalled": "False"}
    out = []
    for cond in status.get("conditions") or []:
        kind, value = str(cond.get("type")), str(cond.get("status"))
        reason = f"({cond['reason']})" if cond.get("reason") and value == "True" else ""
        style = None
        if kind in good:
            style = "green" if value == good[kind] else "red"
        out.append(paint(f"{kind}={value}{reason}", style))
    return " ".join(out)


def _step(spec: _Spec, status: Mapping[str, Any], now: datetime) -> str:
    index = status.get("currentStep")
    if index is None or not status.get("canaryRevision"):
        return ""
    if spec.strategy != "Canary" or not spec.steps:
        return f"{index + 1}"
    total = len(spec.steps)
    step = spec.steps[index] if index < total else {}
    text = f"{index + 1}/{total}"
    if "setWeight" in step:
        text += f" (setWeight {step['setWeight']}"
        pause = step.get("pause")
        if pause:
            text += f", pause {pause}"
            left = _pause_left(str(pause), status.get("stepStartedAt"), now)
            if left:
                text += f": {left}"
        text += ")"
    return text


def _pause_left(pause: str, started: Any, now: datetime) -> str:
    if pause == "indefinite":
        return "until `modeldeploy promote`"
    begun = _time(started)
    if begun is None:
        return ""
    try:
        seconds = parse_duration(pause) - (now - begun).total_seconds()
    except ValueError:
        return ""
    return f"{age(seconds)} left" if seconds > 0 else "done, waiting for a passing check"


def _revisions(status: Mapping[str, Any]) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    seen: set[str] = set()
    for role, key in ROLES:
        ref = status.get(key)
        if not ref or ref.get("name") in seen:
            continue
        seen.add(str(ref.get("name")))
        replicas, ready = ref.get("replicas"), ref.get("readyReplicas")
        pods = f"{ready or 0}/{replicas}" if replicas is not None else "-"
        pods_style = None
        if replicas:
            pods_style = "green" if (ready or 0) >= replicas else "yellow"
        weight = ref.get("weight")
        traffic = f"{weight}%" if weight is not None else "-"
        rows.append([
            (role, "bold" if role in ("stable", "canary") else "dim"),
            (str(ref.get("name", "?")), None),
            (str(ref.get("modelVersion") or "-"), None),
            _digest(ref),
            (pods, pods_style),
            (traffic, "blue" if weight else None),
        ])  # fmt: skip
    return rows


def _digest(ref: Mapping[str, Any]) -> Cell:
    """The served bytes' digest, short (12 hex), or the conflict the pods reported."""
    if ref.get("modelSha256"):
        return str(ref["modelSha256"])[:12], None
    conflict = ref.get("modelSha256Conflict") or []
    if conflict:
        return "MISMATCH " + ",".join(str(d)[:12] for d in conflict), "red+bold"
    return "-", "dim"


def _checks(checks: Sequence[Mapping[str, Any]], now: datetime) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for check in checks:
        first = True
        results = list(check.get("results") or []) or [{}]
        for result in results:
            verdict = str(result.get("verdict") or check.get("verdict") or "")
            metric = str(result.get("metric") or "")
            p_value = result.get("pValue")
            rows.append([
                (age_since(check.get("time"), now) if first else "", None),
                (str(int(check.get("step", 0)) + 1) if first else "", None),
                (verdict, _VERDICTS.get(verdict)),
                (metric or "-", None),
                (_figure(result.get("canaryValue"), metric), None),
                (_figure(result.get("stableValue"), metric), None),
                (str(result.get("limit") or "-"), None),
                (f"{p_value:.3g}" if isinstance(p_value, int | float) else "-", None),
                (str(result["requests"]) if result.get("requests") is not None else "-", None),
            ])  # fmt: skip
            first = False
    return rows


def _figure(value: Any, metric: str) -> str:
    return show(float(value), metric) if isinstance(value, int | float) else "-"


def _hooks(hooks: Sequence[Mapping[str, Any]], now: datetime) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for run in hooks:
        verdict = str(run.get("verdict") or "")
        message = str(run.get("message") or "")
        if run.get("durationSeconds") is not None:
            message = f"took {age(run['durationSeconds'])}" + (f"; {message}" if message else "")
        rows.append([
            (str(run.get("phase") or ""), None),
            (str(run.get("name") or ""), None),
            (str(run.get("revision") or ""), None),
            (verdict, _VERDICTS.get(verdict)),
            (age_since(run.get("startedAt"), now), None),
            (_clip(message), None),
        ])  # fmt: skip
    return rows


def _history(history: Sequence[Mapping[str, Any]], now: datetime) -> list[list[Cell]]:
    return [
        [
            (age_since(line.get("time"), now), None),
            (str(line.get("event") or ""), "red" if line.get("event") == "RolledBack" else None),
            (str(line.get("revision") or ""), None),
            (str(line.get("modelVersion") or "-"), None),
            (str(line["modelSha256"])[:12] if line.get("modelSha256") else "-", None),
            (_clip(str(line.get("message") or "")), None),
        ]
        for line in history
    ]


def _events(events: Iterable[Mapping[str, Any]], uid: Any) -> list[Mapping[str, Any]]:
    """This object's Events (not those of an earlier object of the same name), oldest first."""
    mine = [
        e for e in events
        if not uid or not (e.get("involvedObject") or {}).get("uid")
        or (e.get("involvedObject") or {}).get("uid") == uid
    ]  # fmt: skip
    return sorted(mine, key=lambda e: _event_time(e) or datetime.min.replace(tzinfo=UTC))


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    series = event.get("series") or {}
    created = (event.get("metadata") or {}).get("creationTimestamp")
    for value in (series.get("lastObservedTime"), event.get("lastTimestamp"),
                  event.get("eventTime"), created):  # fmt: skip
        when = _time(value)
        if when is not None:
            return when
    return None


def _event_rows(events: Sequence[Mapping[str, Any]], now: datetime) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for event in events:
        kind = str(event.get("type") or "")
        count = int((event.get("series") or {}).get("count") or event.get("count") or 1)
        when = _event_time(event)
        shown = age((now - when).total_seconds()) if when else "?"
        rows.append([
            (shown + (f" (x{count})" if count > 1 else ""), None),
            (kind, "yellow" if kind == "Warning" else None),
            (str(event.get("reason") or ""), None),
            (_clip(str(event.get("message") or "")), None),
        ])  # fmt: skip
    return rows


def _section(title: str, header: list[str], rows: list[list[Cell]], paint: Paint) -> list[str]:
    if not rows:
        return []
    table: list[list[Cell]] = [[(h, "dim") for h in header], *rows]
    widths = [max(len(row[i][0]) for row in table) for i in range(len(header))]
    out = ["", paint(title, "bold")]
    for row in table:
        cells = [
            paint(text.ljust(widths[i]) if i < len(row) - 1 else text, style)
            for i, (text, style) in enumerate(row)
        ]
        out.append(("  " + "  ".join(cells)).rstrip())
    return out


def _clip(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def age_since(value: Any, now: datetime) -> str:
    when = _time(value)
    return age((now - when).total_seconds()) if when else "?"


def age(seconds: float) -> str:
    """A duration as kubectl shows ages: coarser as it grows.

    >>> age(42), age(150), age(1500), age(3 * 3600 + 120), age(5 * 86400)
    ('42s', '2m30s', '25m', '3h2m', '5d')
    """
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"
