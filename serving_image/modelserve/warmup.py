"""Before Ready: prove the model runs (the warm-up), and decide whether requests may be batched.

Warm-up samples are what a user knows runs: OIP v2 inference request bodies from
`--warmup-file` (one JSON object, or an array of them), decoded exactly as a client's request
is and answered before Ready. A sample that does not decode or run is a start-up error naming
the file, since the user said it is a valid request.

Without samples the warm-up is synthetic: zeros in the model's concrete dimensions, and a short
list of sizes for the symbolic ones, because real exports reject size 1 (a reflect Pad needs
two samples, a detector's strided branches need multiples of 32, a bidirectional state two
directions). Axes that lead an input (batch-like) are tried at 1 first, then every symbolic axis
at the same size. If none runs within a bounded time, the model is still served: a model the
server cannot guess inputs for is not a broken model, and refusing it crash-loops the pod. Its
metadata, its config and a gauge then say the warm-up was skipped, and why.

Batching (`--batching`) is then checked on the samples, or on distinct synthetic rows of the
shape that ran (batching.check).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson

from .batching import batch_key, check, distinct_rows
from .codec import InferRequest, decode_v2, encode_v2
from .errors import ModelLoadError, ServeError
from .model import Feeds, Finding, Model, one_line

log = logging.getLogger("modelserve.warmup")

# Sizes tried for symbolic dimensions, in order: 1, then lengths a reflect Pad accepts, then
# multiples of 32 (strided detectors), up to a common image side.
SIZES: Final = (1, 2, 8, 32, 64, 224)
# The synthetic search starts no new try after this long (a try already running finishes).
SEARCH_SECONDS: Final = 20.0
# A synthetic try larger than this many values (all inputs together) is not attempted.
MAX_VALUES: Final = 1 << 24
# Distinct requests the batching check merges when it makes its own.
CHECK_REQUESTS: Final = 4


# What a sample is, said wherever a file holds something else (a binary-extension body).
JSON_ONLY: Final = ("warm-up samples are JSON request bodies with tensor values in 'data'; the "
                    "binary tensor extension is not read from a file")  # fmt: skip


@dataclass(frozen=True)
class Samples:
    """Warm-up request bodies, each one JSON object, and the file they came from."""

    path: Path
    bodies: tuple[bytes, ...]


def read_samples(path: Path) -> Samples:
    """Read `--warmup-file`: checked as JSON before the model is fetched, so a typo fails fast
    with a message naming the file (decoding against the model comes later, in `prepare`)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ModelLoadError(f"warm-up file {path}: cannot read it: {reason}") from None
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ModelLoadError(
            f"warm-up file {path} is not valid JSON: {exc} ({JSON_ONLY})"
        ) from None
    if isinstance(data, dict):
        items = [data]
    elif isinstance(data, list):
        if not data:
            raise ModelLoadError(f"warm-up file {path} holds an empty array: give at least one "
                                 "inference request")  # fmt: skip
        items = data
    else:
        raise ModelLoadError(f"warm-up file {path} must hold an OIP v2 inference request (a JSON "
                             f"object) or an array of them, not {type(data).__name__}")  # fmt: skip
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ModelLoadError(f"warm-up file {path}: item {number} is not a JSON object")
    return Samples(path, tuple(orjson.dumps(item) for item in items))


def prepare(
    model: Model,
    *,
    warmup: bool = True,
    samples: Samples | None = None,
    batching: bool = False,
    max_batch_size: int = 32,
    reject_nonfinite: bool = False,
) -> None:
    """Warm `model` up and decide batching; the findings go to `model.warmup` and
    `model.batching`. Blocking: call it off the event loop, before the model is served.

    Raises ModelLoadError only for bad samples; a model that no synthetic input runs is served.
    """
    decoded = decode_samples(model, samples, reject_nonfinite) if samples is not None else []
    ran: Feeds | None = None  # the synthetic input that ran, if any
    if not warmup:
        model.warmup = Finding("off", "turned off by --warmup false")
        log.info("model %r: warm-up off", model.name)
    elif samples is not None:
        _answer_samples(model, samples, decoded)
        count = len(decoded)
        model.warmup = Finding("ok", f"{count} sample{'s' * (count != 1)} from {samples.path} "
                                     "answered")  # fmt: skip
        log.info("model %r: warm-up: %s", model.name, model.warmup.reason)
    else:
        ran, model.warmup = synthetic(model)
        if ran is None:
            log.warning("model %r: warm-up skipped: %s", model.name, model.warmup.reason)
        else:
            log.info("model %r: warm-up: %s", model.name, model.warmup.reason)
    if not batching:
        model.batching = Finding("off", "batching was not asked for (--batching)")
        return
    if decoded:
        requests = _sample_requests(model, decoded)
        source = "the warm-up samples"
    else:
        if ran is None and not warmup:
            ran, _ = synthetic(model)
        requests = _variants(model, ran, randomize_all=True) if ran is not None else []
        source = "synthetic inputs"
    if ran is None and not decoded and model.batchable:
        model.batching = Finding("off", "the batching check had nothing to run: no synthetic "
                                        "input ran (give --warmup-file samples)")  # fmt: skip
    else:
        model.batching = check(model, requests, max_rows=max_batch_size, source=source)
    if model.batching.state == "on":
        log.info("model %r: batching on, up to %d rows: %s", model.name, max_batch_size,
                 model.batching.reason)  # fmt: skip
    else:
        log.warning("model %r: batching stays off: %s", model.name, model.batching.reason)


def decode_samples(
    model: Model, samples: Samples, reject_nonfinite: bool = False
) -> list[InferRequest]:
    """Each sample through the decoder a client's request goes through (also what
    `modeldeploy check-model` runs, so a sample means the same to the gate as to the server)."""
    decoded = []
    for number, body in enumerate(samples.bodies, 1):
        try:
            decoded.append(decode_v2(body, model, reject_nonfinite=reject_nonfinite))
        except ServeError as exc:
            hint = f" ({JSON_ONLY})" if "binary_data_size" in exc.message else ""
            raise ModelLoadError(
                f"warm-up file {samples.path}: sample {number}: {exc.message}{hint}"
            ) from None
    return decoded


def _answer_samples(model: Model, samples: Samples, decoded: list[InferRequest]) -> None:
    """Run and encode every sample as a request would be; any failure is the file's."""
    for number, request in enumerate(decoded, 1):
        try:
            results = model.probe(request.feeds)
        except Exception as exc:
            raise ModelLoadError(f"warm-up file {samples.path}: sample {number} failed in ONNX "
                                 f"Runtime: {one_line(exc)}") from None  # fmt: skip
        if request.outputs:
            results = {name: results[name] for name in request.outputs}
        try:
            encode_v2(model, request, results)
        except ServeError as exc:
            raise ModelLoadError(f"warm-up file {samples.path}: sample {number}: its answer "
                                 f"cannot be encoded: {exc.message}") from None  # fmt: skip


def synthetic(model: Model) -> tuple[Feeds | None, Finding]:
    """Zeros at each candidate size until one runs: (the input that ran, the finding).
    Public for `modeldeploy check-model`, which warms a model up as the server would."""
    started = time.monotonic()
    tried: set[tuple[tuple[int, ...], ...]] = set()
    first_error = ""
    stopped = ""
    smallest = 0  # values in the smallest input passed over for size, when none was tried
    for leading, other in _candidates():
        if time.monotonic() - started > SEARCH_SECONDS:
            stopped = f"; stopped after {SEARCH_SECONDS:.0f}s"
            break
        feeds = _zeros(model, leading, other)
        shapes = tuple(array.shape for array in feeds.values())
        values = sum(array.size for array in feeds.values())
        if values > MAX_VALUES:
            smallest = min(smallest or values, values)
            continue
        if shapes in tried:
            continue
        tried.add(shapes)
        try:
            model.probe(feeds)
        except Exception as exc:
            first_error = first_error or one_line(exc)
            continue
        sizes = f"{leading}" if leading == other else f"{other}, leading axes at {leading}"
        return feeds, Finding("ok", f"synthetic inputs answered (symbolic dimensions at {sizes})")
    listed = ", ".join(str(size) for size in SIZES)
    if tried:
        why = f"symbolic dimensions tried at {listed}{stopped}; the first try failed with: "
        why += first_error
    else:
        why = f"its inputs need at least {smallest} values, over the {MAX_VALUES} a synthetic "
        why += "warm-up allocates"
    return None, Finding(
        "skipped",
        f"no synthetic input ran ({why}); the model is served unwarmed: give real requests "
        "with --warmup-file to warm it up",
    )


def _candidates() -> Iterator[tuple[int, int]]:
    """(size of leading symbolic axes, size of the other symbolic axes), smallest first."""
    for size in SIZES:
        yield 1, size
        if size > 1:
            yield size, size


def _zeros(model: Model, leading: int, other: int) -> Feeds:
    """An input of zeros (empty strings) per model input at the given symbolic sizes. An axis
    is leading when its symbolic name leads some input (or, unnamed, when it is axis 0)."""
    leaders = {spec.dim_names[0] for spec in model.inputs if spec.dim_names}
    feeds: Feeds = {}
    for spec in model.inputs:
        names = spec.dim_names or (None,) * len(spec.shape)
        shape = []
        for axis, (dim, name) in enumerate(zip(spec.shape, names, strict=True)):
            lead = name in leaders if name is not None else axis == 0
            shape.append(dim if dim >= 0 else leading if lead else other)
        if spec.datatype == "BYTES":
            feeds[spec.name] = np.full(shape, "", dtype=np.object_)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return feeds


def _sample_requests(model: Model, decoded: Sequence[InferRequest]) -> list[tuple[Feeds, int]]:
    """The samples as the check's requests. A lone sample, or samples whose rows are all
    alike, get variants with other values (floats moved, the sample's own integers, booleans
    and strings shuffled: token ids stay valid ids), so rows differ: copies of one row cannot
    show a model that mixes rows."""
    requests = [(request.feeds, request.rows) for request in decoded]
    if decoded and not _checkable(requests):
        requests += _variants(model, decoded[0].feeds, randomize_all=False)
    return requests


def _checkable(requests: Sequence[tuple[Feeds, int]]) -> bool:
    """Whether some two requests share a shape (the batcher would merge them) and hold distinct
    rows between them; samples of different lengths, or copies of one row, are not."""
    groups: dict[object, list[Feeds]] = {}
    for feeds, _ in requests:
        groups.setdefault(batch_key(feeds), []).append(feeds)
    for members in groups.values():
        if len(members) < 2:
            continue
        merged = {name: np.concatenate([feeds[name] for feeds in members]) for name in members[0]}
        if distinct_rows(merged) >= 2:
            return True
    return False


def _variants(model: Model, feeds: Feeds, *, randomize_all: bool) -> list[tuple[Feeds, int]]:
    """Requests shaped like `feeds` with distinct values (floats from a normal distribution
    around the original's values; with `randomize_all`, small integers, booleans and strings
    too), keeping only those that run alone."""
    rng = np.random.default_rng(20240601)
    variants = []
    for _ in range(CHECK_REQUESTS):
        variant = {name: _distinct(array, rng, randomize_all) for name, array in feeds.items()}
        try:
            model.probe(variant)
        except Exception:  # e.g. an input that must be an index: fewer requests to check with
            continue
        variants.append((variant, _rows(variant)))
    return variants


def _distinct(array: np.ndarray[Any, Any], rng: np.random.Generator, everything: bool) -> Any:
    kind = array.dtype.kind
    if kind == "f":
        spread = float(np.std(array)) or 1.0
        return (array + rng.standard_normal(array.shape) * spread).astype(array.dtype)
    if not everything:
        # The sample's own values in another order: what was a valid id or flag still is.
        return rng.permutation(array.reshape(-1)).reshape(array.shape)
    if kind in "iu":
        return rng.integers(0, 3, size=array.shape).astype(array.dtype)
    if kind == "b":
        return rng.integers(0, 2, size=array.shape).astype(np.bool_)
    if kind == "O":
        return np.array([f"s{n}" for n in rng.integers(0, 1000, size=array.size)],
                        dtype=np.object_).reshape(array.shape)  # fmt: skip
    return array


def _rows(feeds: Feeds) -> int:
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 0
