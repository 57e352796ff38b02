"""`modeldeploy check-model`: the gate a CI job runs before it commits a new model version.

It loads the model with the serving image's own code (modelserve.model: the same ONNX Runtime
session options and the same reading of the signature), so what passes here is what a pod
loads. Then, in order:

- signature: compared with another model file or with what a ModelDeployment's stable revision
  serves now (its pods' OIP metadata, read through the API server); a breaking change fails
  and is named (the rules: modeldeploy.core.signature);
- samples: OIP v2 request bodies (`--sample`, the format of the server's `--warmup-file`,
  decoded by the server's own decoder), or without them the server's synthetic warm-up inputs;
  every output must be finite and of its declared datatype and shape;
- latency: p50 and p99 of N runs, the p99 against `--latency-budget`.

Exit codes: 0 every check passed, 1 a check failed, 2 an error (the model does not load, a bad
argument or sample file, the cluster cannot be read).

numpy and onnxruntime come from the `serving` extra and the Kubernetes client from the
`operator` extra: both are imported inside the command, so `modeldeploy validate` keeps
needing only pydantic and PyYAML.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO

from modeldeploy.api.durations import parse_duration
from modeldeploy.core.naming import HTTP_PORT
from modeldeploy.core.signature import Finding, Signature, breaking, compare, parse_metadata
from modeldeploy.core.signature import summary as finding_summary

if TYPE_CHECKING:
    from modelserve.model import Feeds, Model

Result = Literal["pass", "fail", "skip"]
EXIT_PASS: Final = 0
EXIT_FAIL: Final = 1
EXIT_ERROR: Final = 2
DEFAULT_RUNS: Final = 50
MD_PREFIXES: Final = ("md/", "modeldeployment/", "modeldeployments/",
                      "modeldeployment.modeldeploy.io/")  # fmt: skip

EPILOG: Final = """\
exit codes:
  0  every check passed (a check with nothing to check is skipped, not failed)
  1  a check failed: a breaking signature change, a sample failed or gave NaN/Inf or an output
     not of its declared datatype/shape, or the p99 latency is over --latency-budget
  2  error: the model (or --against-file) does not load, a bad argument or sample file, or the
     cluster cannot be read

examples:
  modeldeploy check-model v8.onnx --against-file v7.onnx --sample req.json --latency-budget 20ms
  modeldeploy check-model v8.onnx --against md/fraud -n ml -o json
"""


class CheckError(Exception):
    """Why the checks cannot run (exit 2): said to the user as it is."""


@dataclass
class Check:
    """One line of the report."""

    name: str
    result: Result
    detail: str


@dataclass
class SampleReport:
    """What one sample (or the synthetic input) gave."""

    source: str
    outputs: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "result": "fail" if self.problems else "pass",
            "outputs": self.outputs,
            "problems": self.problems,
        }


@dataclass
class Report:
    """Everything the command found; rendered as a table or as JSON."""

    model: dict[str, Any]
    against: dict[str, Any] | None = None
    checks: list[Check] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    samples: list[SampleReport] = field(default_factory=list)
    latency: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return all(check.result != "fail" for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "result": "pass" if self.passed else "fail",
            "model": self.model,
            "against": self.against,
            "checks": [vars(check) for check in self.checks],
            "signature": [finding.as_dict() for finding in self.findings],
            "samples": [sample.as_dict() for sample in self.samples],
            "latency": self.latency,
        }


def add_parser(sub: Any) -> None:
    """Register `check-model` on the CLI's subparsers."""
    parser = sub.add_parser(
        "check-model",
        help="check a model file before it ships: loads as served, signature against the "
        "serving one, warm-up samples, latency (exit 0 pass, 1 fail, 2 error)",
        description="Check an ONNX model as the serving image would load it, before a CI job "
        "commits it as a new model version.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="the candidate .onnx file")
    against = parser.add_mutually_exclusive_group()
    against.add_argument(
        "--against-file", metavar="PATH", help="compare the signature with this model file"
    )
    against.add_argument(
        "--against",
        metavar="md/NAME",
        help="compare the signature with what this ModelDeployment's stable revision serves "
        "(its pods' metadata, read through the API server)",
    )
    parser.add_argument("-n", "--namespace", help="with --against; default: the kubeconfig's")
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    parser.add_argument(
        "--sample",
        dest="samples",
        action="append",
        default=[],
        metavar="FILE",
        help="an OIP v2 request body, or a JSON array of them, as the server's --warmup-file "
        "(repeatable); default: the server's synthetic warm-up inputs",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=DEFAULT_RUNS,
        metavar="N",
        help=f"timed inferences for the latency figures (default {DEFAULT_RUNS})",
    )
    parser.add_argument(
        "--latency-budget",
        metavar="DURATION",
        help="fail when the p99 latency is over this (e.g. 20ms, 1.5s); default: report only",
    )
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        default=1,
        metavar="N",
        help="as the server's flag (default 1)",
    )
    parser.add_argument(
        "--inter-op-threads",
        type=int,
        default=1,
        metavar="N",
        help="as the server's flag (default 1)",
    )
    parser.add_argument(
        "--graph-optimization",
        choices=["disable", "basic", "extended", "all"],
        default="all",
        help="as the server's flag (default all)",
    )
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the checks the parsed arguments ask for; print the report; the exit code."""
    out = out or sys.stdout
    try:
        report = _run(args)
    except CheckError as exc:
        return _error(args, out, str(exc))
    except Exception as exc:  # a crash must not read as a failed check (Python exits 1)
        traceback.print_exc()
        return _error(args, out, f"check-model stopped on an unexpected error: {exc!r}")
    if args.output == "json":
        out.write(json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        out.write(render_table(report))
    return EXIT_PASS if report.passed else EXIT_FAIL


def _error(args: argparse.Namespace, out: TextIO, message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    if args.output == "json":
        out.write(json.dumps({"result": "error", "error": message}, indent=2) + "\n")
    return EXIT_ERROR


def _run(args: argparse.Namespace) -> Report:
    budget = _budget(args.latency_budget)
    if args.runs < 1:
        raise CheckError(f"--runs must be at least 1, not {args.runs}")
    for flag in ("intra_op_threads", "inter_op_threads"):
        if getattr(args, flag) < 0:
            raise CheckError(f"--{flag.replace('_', '-')} must be 0 (ONNX Runtime's choice) or "
                             "more")  # fmt: skip
    if args.namespace and not args.against:
        raise CheckError("-n/--namespace goes with --against md/NAME")
    try:
        from modelserve.errors import ModelLoadError
        from modelserve.warmup import read_samples
    except ImportError as exc:
        raise CheckError(f"check-model needs the serving image's dependencies ({exc.name} is "
                         "missing): pip install 'modeldeploy[serving]'") from None  # fmt: skip
    model = _load(Path(args.model), args)
    samples = []
    for name in args.samples:
        try:
            samples.append(read_samples(Path(name)))
        except ModelLoadError as exc:
            raise CheckError(str(exc)) from None
    report = Report(model=_describe(model, Path(args.model)))
    report.checks.append(Check("load", "pass", f"{Path(args.model).name}: "
                               f"{_count(model.inputs, 'input')}, "
                               f"{_count(model.outputs, 'output')}, loaded in "
                               f"{_ms(model.load_seconds)} (onnxruntime "
                               f"{report.model['onnxruntime']})"))  # fmt: skip
    _signature(report, model, args)
    feeds = _samples(report, model, samples)
    _latency(report, model, feeds, args.runs, budget, args.latency_budget)
    return report


def _budget(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CheckError(f"--latency-budget: {exc}") from None


def _load(path: Path, args: argparse.Namespace, flag: str = "model") -> Model:
    """The model as the server loads it; CheckError naming the file when it cannot."""
    from modelserve.errors import ModelLoadError
    from modelserve.model import Model, SessionOptions

    if not path.is_file():
        raise CheckError(f"{flag} {path}: no such file")
    options = SessionOptions(
        intra_op_threads=args.intra_op_threads,
        inter_op_threads=args.inter_op_threads,
        graph_optimization=args.graph_optimization,
    )
    try:
        return Model.load(path, name=path.stem, version="", sha256=_sha256(path), options=options)
    except ModelLoadError as exc:
        text = " ".join(str(exc).split()).replace(f": {path}:", ":")
        raise CheckError(f"cannot load {flag} {path}: {text}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe(model: Model, path: Path) -> dict[str, Any]:
    import onnxruntime  # type: ignore[import-untyped]

    metadata = model.metadata()
    return {
        "path": str(path),
        "sha256": model.sha256,
        "inputs": metadata["inputs"],
        "outputs": metadata["outputs"],
        "loadSeconds": round(model.load_seconds, 6),
        "onnxruntime": str(onnxruntime.__version__),
    }


def _signature(report: Report, model: Model, args: argparse.Namespace) -> None:
    if args.against_file:
        path = Path(args.against_file)
        before = _load(path, args, "--against-file")
        report.against = {"kind": "file", "path": str(path), "sha256": before.sha256}
        old, where = parse_metadata(before.metadata()), path.name
    elif args.against:
        old, report.against = against_cluster(args.against, args.namespace, args.kubeconfig)
        where = f"{report.against['modelDeployment']} (revision {report.against['revision']})"
    else:
        report.checks.append(Check("signature", "skip", "nothing to compare with (give "
                                   "--against-file or --against md/NAME)"))  # fmt: skip
        return
    report.findings = compare(old, parse_metadata(model.metadata()))
    broken = breaking(report.findings)
    if broken:
        names = "; ".join(finding_summary(f) for f in broken)
        detail = f"{len(broken)} breaking against {where}: {names}"
    elif report.findings:
        detail = f"compatible with {where}; {len(report.findings)} change(s), none breaking"
    else:
        detail = f"same inputs and outputs as {where}"
    report.checks.append(Check("signature", "fail" if broken else "pass", detail))


def md_name(ref: str) -> str:
    """NAME from `md/NAME` (or kubectl's longer spellings); CheckError otherwise.

    >>> md_name("md/fraud")
    'fraud'
    """
    for prefix in MD_PREFIXES:
        if ref.startswith(prefix) and len(ref) > len(prefix) and "/" not in ref[len(prefix) :]:
            return ref[len(prefix) :]
    raise CheckError(f"--against {ref!r}: give md/NAME (a ModelDeployment), or --against-file "
                     "PATH for a model file")  # fmt: skip


def against_cluster(
    ref: str, namespace: str | None, kubeconfig: str | None, *, port: int = HTTP_PORT
) -> tuple[Signature, dict[str, Any]]:
    """The signature the stable revision of the ModelDeployment `ref` serves, and what was
    read (for the report). CheckError when it cannot be read."""
    name = md_name(ref)
    try:
        from kubernetes.config import ConfigException
        from urllib3.exceptions import HTTPError

        from modeldeploy.runtime import readers
        from modeldeploy.runtime.errors import KubeError
        from modeldeploy.runtime.kube import Kube, current_namespace, load_config
        from modeldeploy.runtime.served import served_metadata
    except ImportError as exc:
        raise CheckError(f"--against needs the operator's dependencies ({exc.name} is missing): "
                         "pip install 'modeldeploy[operator]'") from None  # fmt: skip
    try:
        kube = Kube(load_config(kubeconfig))
    except (ConfigException, OSError) as exc:
        raise CheckError(f"no cluster to ask: {exc} (set KUBECONFIG or --kubeconfig)") from None
    namespace = namespace or current_namespace()
    try:
        obj = readers.read_modeldeployment(kube, namespace, name)
        stable = (obj.get("status") or {}).get("stableRevision") or {}
        revision = stable.get("name")
        if not revision:
            raise CheckError(f"modeldeployment {namespace}/{name} has no stable revision yet "
                             "(status.stableRevision is unset): nothing serves to compare with; "
                             "drop --against for a first version")  # fmt: skip
        answers = served_metadata(kube, namespace, name, str(revision), port=port)
    except KubeError as exc:
        raise CheckError(str(exc)) from None
    except (HTTPError, OSError) as exc:
        raise CheckError(f"cannot reach the API server: {exc}") from None
    signatures = {answer.pod: parse_metadata(answer.metadata) for answer in answers}
    first = answers[0]
    if len(set(signatures.values())) > 1:
        raise CheckError(f"the pods of revision {namespace}/{revision} serve different "
                         f"signatures ({', '.join(signatures)}): compare with a model file "
                         "(--against-file)")  # fmt: skip
    return signatures[first.pod], {
        "kind": "cluster",
        "modelDeployment": f"{namespace}/{name}",
        "revision": str(revision),
        "modelVersion": stable.get("modelVersion"),
        "model": first.model,
        "pods": sorted(signatures),
    }


def _samples(report: Report, model: Model, files: list[Any]) -> list[Feeds]:
    """Run every sample (or the synthetic input) and check its outputs; the inputs that ran
    (answered by ONNX Runtime, whatever their outputs: they are what latency is timed on)."""
    from modelserve.errors import ModelLoadError
    from modelserve.warmup import decode_samples, synthetic

    ran: list[Feeds] = []
    if files:
        for samples in files:
            try:
                decoded = decode_samples(model, samples)
            except ModelLoadError as exc:
                report.samples.append(SampleReport(str(samples.path), problems=[str(exc)]))
                continue
            for number, request in enumerate(decoded, 1):
                sample, answered = _run_one(model, request.feeds, f"{samples.path}#{number}")
                report.samples.append(sample)
                if answered:
                    ran.append(request.feeds)
        count = sum(len(s.bodies) for s in files)
        source = f"{count} sample{'s' * (count != 1)}"
    else:
        feeds, finding = synthetic(model)
        if feeds is None:
            report.checks.append(Check("samples", "skip", f"{finding.reason} (give --sample)"))
            return ran
        sample, answered = _run_one(model, feeds, "synthetic")
        report.samples.append(sample)
        if answered:
            ran.append(feeds)
        source = finding.reason
    problems = [f"{s.source}: {p}" for s in report.samples for p in s.problems]
    if problems:
        report.checks.append(Check("samples", "fail", "; ".join(problems)))
    else:
        report.checks.append(Check("samples", "pass", f"{source}: every output finite, of its "
                                   "declared datatype and shape"))  # fmt: skip
    return ran


def _run_one(model: Model, feeds: Feeds, source: str) -> tuple[SampleReport, bool]:
    """One inference, every output checked against the model's declaration; whether ONNX
    Runtime answered at all."""
    import numpy as np

    from modelserve.model import one_line

    report = SampleReport(source)
    try:
        results = model.run(feeds)
    except Exception as exc:  # ONNX Runtime raises its own types for a failed run
        report.problems.append(f"failed in ONNX Runtime: {one_line(exc)}")
        return report, False
    for name, array in results.items():
        spec = model.output_by_name[name]
        shape = [int(d) for d in np.shape(array)]
        nonfinite = 0
        if array.dtype.kind in "fc":
            nonfinite = int(array.size - np.count_nonzero(np.isfinite(array)))
        report.outputs.append({"name": name, "datatype": spec.datatype, "shape": shape,
                               "nonFinite": nonfinite})  # fmt: skip
        if nonfinite:
            nan = int(np.count_nonzero(np.isnan(array)))
            report.problems.append(f"output {name}: {nan} NaN and {nonfinite - nan} Inf of "
                                   f"{array.size} values")  # fmt: skip
        if array.dtype != spec.dtype:
            report.problems.append(f"output {name}: datatype {array.dtype} where the model "
                                   f"declares {spec.datatype}")  # fmt: skip
        if not spec.any_rank and not _fits(shape, spec.shape):
            declared = "[" + ",".join(str(d) for d in spec.shape) + "]"
            report.problems.append(f"output {name}: shape [{','.join(map(str, shape))}] where "
                                   f"the model declares {declared}")  # fmt: skip
    return report, True


def _fits(shape: list[int], declared: tuple[int, ...]) -> bool:
    """Whether an output's shape is one its declaration allows (-1: any size).

    >>> _fits([3, 4], (-1, 4)), _fits([3, 5], (-1, 4)), _fits([3], (-1, 4))
    (True, False, False)
    """
    return len(shape) == len(declared) and all(
        want in (-1, got) for got, want in zip(shape, declared, strict=True)
    )


def _latency(
    report: Report,
    model: Model,
    feeds: list[Feeds],
    runs: int,
    budget: float | None,
    budget_text: str | None,
) -> None:
    if not feeds:
        result: Result = "fail" if budget is not None else "skip"
        why = "no input ran, so there is nothing to time"
        if budget is not None:
            why += ": give a --sample the model answers, to check it against the budget"
        report.checks.append(Check("latency", result, why))
        return
    seconds = []
    for number in range(runs):
        started = time.perf_counter()
        model.run(feeds[number % len(feeds)])
        seconds.append(time.perf_counter() - started)
    p50, p99 = percentile(seconds, 50), percentile(seconds, 99)
    over = budget is not None and p99 > budget
    report.latency = {
        "runs": runs,
        "p50Ms": round(p50 * 1000, 4),
        "p99Ms": round(p99 * 1000, 4),
        "budgetMs": None if budget is None else round(budget * 1000, 4),
    }
    detail = f"p50 {_ms(p50)}, p99 {_ms(p99)} over {runs} runs"
    if budget is None:
        detail += " (no --latency-budget: not judged)"
    else:
        detail += f": {'over' if over else 'within'} the budget of {budget_text}"
    report.checks.append(Check("latency", "fail" if over else "pass", detail))


def percentile(values: list[float], percent: float) -> float:
    """The nearest-rank percentile: a value that was measured, never an interpolation.

    >>> percentile([4.0, 1.0, 3.0, 2.0], 50), percentile([4.0, 1.0, 3.0, 2.0], 99)
    (2.0, 4.0)
    """
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def _ms(seconds: float) -> str:
    """A duration as the table prints it.

    >>> _ms(0.0004), _ms(0.0123), _ms(1.5)
    ('0.400ms', '12.3ms', '1500ms')
    """
    ms = seconds * 1000
    if ms < 10:
        return f"{ms:.3f}ms"
    return f"{ms:.1f}ms" if ms < 100 else f"{ms:.0f}ms"


def _count(specs: tuple[Any, ...], noun: str) -> str:
    return f"{len(specs)} {noun}{'s' * (len(specs) != 1)}"


def _table(rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart, as kubectl prints."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


def render_table(report: Report) -> str:
    """The report for a terminal: one line per check, then the signature changes, if any."""
    text = _table([["CHECK", "RESULT", "DETAIL"]]
                  + [[c.name, c.result.upper(), c.detail] for c in report.checks])  # fmt: skip
    if report.findings:
        rows = [["CHANGE", "ROLE", "TENSOR", "BEFORE", "AFTER", "BREAKING"]]
        rows += [[f.kind, f.role, f.tensor, f.before or "-", f.after or "-",
                  "yes" if f.breaking else "no"] for f in report.findings]  # fmt: skip
        text += "\n" + _table(rows)
    failed = [c.name for c in report.checks if c.result == "fail"]
    verdict = f"FAIL ({', '.join(failed)})" if failed else "PASS"
    return text + f"\ncheck-model: {verdict}\n"
