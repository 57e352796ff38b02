"""The ONNX Runtime session: loading, metadata in OIP terms and inference.

`run` is called from a worker thread (ONNX Runtime releases the GIL while it computes), never on
the event loop, so one slow inference does not stall every other connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]

from .accelerators import Accelerator, Placement, choose, confirm
from .errors import ModelLoadError
from .protowire import shapeless_tensors

log = logging.getLogger("modelserve.model")

# ONNX tensor type → (OIP datatype, numpy dtype). BF16 has no numpy dtype and is not served.
ONNX_TYPES: Final[dict[str, tuple[str, np.dtype[Any]]]] = {
    "tensor(bool)": ("BOOL", np.dtype(np.bool_)),
    "tensor(uint8)": ("UINT8", np.dtype(np.uint8)),
    "tensor(uint16)": ("UINT16", np.dtype(np.uint16)),
    "tensor(uint32)": ("UINT32", np.dtype(np.uint32)),
    "tensor(uint64)": ("UINT64", np.dtype(np.uint64)),
    "tensor(int8)": ("INT8", np.dtype(np.int8)),
    "tensor(int16)": ("INT16", np.dtype(np.int16)),
    "tensor(int32)": ("INT32", np.dtype(np.int32)),
    "tensor(int64)": ("INT64", np.dtype(np.int64)),
    "tensor(float16)": ("FP16", np.dtype(np.float16)),
    "tensor(float)": ("FP32", np.dtype(np.float32)),
    "tensor(double)": ("FP64", np.dtype(np.float64)),
    "tensor(string)": ("BYTES", np.dtype(np.object_)),
}
# OIP datatype → numpy dtype, for decoding what a client sends.
DATATYPES: Final[dict[str, np.dtype[Any]]] = dict(ONNX_TYPES.values())
OPTIMIZATION: Final = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

Feeds = dict[str, np.ndarray[Any, Any]]

# Every failure is reported by its caller: at start-up per size tried, while serving in the
# answer. ONNX Runtime's own error line would add one per size, and while serving it quotes
# the request's values ("idx=99999"), which a log reader must not get.
_QUIET: Final = ort.RunOptions()
_QUIET.log_severity_level = 4


# The bound the process's shared CPU arena was created with (ONNX Runtime keeps one per process).
_ARENA_BOUND: list[int] = []


def _bound_memory(max_bytes: int) -> None:
    """Give ONNX Runtime one CPU arena that never grows past `max_bytes`, shared by the
    sessions that ask for it: an allocation beyond fails that inference (MEMORY_LIMIT), where
    an unbounded one would let a small input with large dynamic sizes take the pod down."""
    if _ARENA_BOUND:
        if _ARENA_BOUND[0] != max_bytes:
            raise ModelLoadError(f"ONNX Runtime's memory is already bounded at {_ARENA_BOUND[0]} "
                                 "bytes in this process")  # fmt: skip
        return
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                             ort.OrtMemType.DEFAULT)  # fmt: skip
    # -1: ONNX Runtime's defaults for the growth strategy and chunk sizes.
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(max_bytes, -1, -1, -1))
    _ARENA_BOUND.append(max_bytes)


def memory_bound() -> int:
    """The bound of ONNX Runtime's CPU arena in this process, in bytes; 0 when unbounded."""
    return _ARENA_BOUND[0] if _ARENA_BOUND else 0


def memory_exhausted(exc: BaseException) -> bool:
    """Whether an inference failed because the arena bound was reached (its error names the
    arena that refused the allocation)."""
    text = str(exc)
    return "BFCArena" in text or "Failed to allocate memory" in text


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: OIP name, datatype and shape (-1 for a dynamic dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    # The model's symbolic name for each dynamic dimension ("batch", "seq"), else None:
    # inputs sharing a name must agree on its size, which the codec checks.
    dim_names: tuple[str | None, ...] = ()
    # The model states no shape at all (not even a rank): any shape is taken. ONNX Runtime
    # reports such a tensor's shape as [], a scalar's, so `Model` tells the two apart.
    any_rank: bool = False

    def metadata(self) -> dict[str, Any]:
        """The OIP tensor metadata object ([-1] for a tensor of unknown rank)."""
        shape = [-1] if self.any_rank else list(self.shape)
        return {"name": self.name, "datatype": self.datatype, "shape": shape}

    @property
    def features(self) -> int:
        """Values per row (the product of the non-batch dimensions; 1 when any is dynamic)."""
        fixed = [d for d in self.shape[1:] if d > 0]
        if len(fixed) != len(self.shape) - 1:
            return 1
        return int(np.prod(fixed)) if fixed else 1


def _meaningful(dim: Any) -> bool:
    """A symbolic dimension name that states a constraint, not a placeholder: exporters write
    "?" or "unk__12" for unrelated unknown sizes, which ONNX Runtime does not tie together."""
    return (
        isinstance(dim, str)
        and bool(dim.strip())
        and dim != "?"
        and not dim.startswith("unk__")
        and not dim.isdigit()
    )


def _spec(arg: Any, kind: str = "input") -> TensorSpec:
    if arg.type not in ONNX_TYPES:
        raise ModelLoadError(f"{kind} {arg.name!r} has type {arg.type}, which is not served")
    datatype, dtype = ONNX_TYPES[arg.type]
    dims = arg.shape or []
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in dims)
    names = tuple(d if _meaningful(d) else None for d in dims)
    return TensorSpec(name=arg.name, datatype=datatype, shape=shape, dtype=dtype, dim_names=names)


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An error (ONNX Runtime's run over several lines) as one log-friendly line."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Finding:
    """What a start-up step concluded about the model, and why, in words an operator reads in
    the model's metadata and config: the warm-up ("ok", "skipped" or "off") and batching ("on"
    or "off")."""

    state: str
    reason: str


@dataclass(frozen=True)
class SessionOptions:
    """The ONNX Runtime knobs the server exposes as flags."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization: str = "all"
    # Bytes ONNX Runtime's CPU allocations may reach (0: unbounded): see _bound_memory.
    max_memory: int = 0
    # The execution providers asked for (accelerators.py); the CPU is always the last resort.
    accelerator: Accelerator = "cpu"


class Model:
    """A loaded ONNX model and what the protocol needs to know about it."""

    def __init__(
        self,
        session: ort.InferenceSession,
        *,
        name: str,
        version: str,
        sha256: str,
        load_seconds: float,
        shapeless: frozenset[str] = frozenset(),
        placement: Placement | None = None,
    ) -> None:
        self.session = session
        self.placement = placement or Placement("cpu", tuple(session.get_providers()))
        self.name = name
        self.version = version
        self.sha256 = sha256
        self.load_seconds = load_seconds
        self.inputs: tuple[TensorSpec, ...] = tuple(
            replace(spec, any_rank=True) if spec.name in shapeless else spec
            for spec in (_spec(a) for a in session.get_inputs())
        )
        # Outputs no OIP tensor can carry (skl2onnx's default ZipMap: a sequence of maps) are
        # left out, by name and type, rather than refuse the tensors beside them (the label).
        outputs = session.get_outputs()
        self.unserved: dict[str, str] = {
            a.name: a.type for a in outputs if a.type not in ONNX_TYPES
        }
        served = [a for a in outputs if a.type in ONNX_TYPES]
        if not served:
            first = outputs[0]
            raise ModelLoadError(f"output {first.name!r} has type {first.type}, which is not "
                                 "served, and the model has no tensor output to serve")  # fmt: skip
        self.outputs: tuple[TensorSpec, ...] = tuple(
            replace(spec, any_rank=True) if spec.name in shapeless else spec
            for spec in (_spec(a, "output") for a in served)
        )
        self.input_by_name = {spec.name: spec for spec in self.inputs}
        self.output_by_name = {spec.name: spec for spec in self.outputs}
        self.output_names = [spec.name for spec in self.outputs]
        # Batching concatenates requests along the first dimension: only possible when every
        # input and output has a dynamic first dimension, and only sound when the start-up
        # check (batching.check) saw the model answer rows batched as it does alone.
        self.batchable = all(s.shape and s.shape[0] == -1 for s in self.inputs + self.outputs)
        # Set by the start-up steps (warmup.prepare) before the model is served; the batcher
        # turns batching off here if a batch ever shows an output without the batch dimension.
        self.warmup = Finding("off", "no warm-up has run")
        self.batching = Finding("off", "batching was not asked for (--batching)")

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        name: str,
        version: str,
        sha256: str,
        options: SessionOptions,
    ) -> Model:
        """Create the session; a file ONNX Runtime cannot parse raises ModelLoadError."""
        started = time.perf_counter()
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.intra_op_threads
        so.inter_op_num_threads = options.inter_op_threads
        so.graph_optimization_level = OPTIMIZATION[options.graph_optimization]
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        if options.max_memory:
            _bound_memory(options.max_memory)
            so.add_session_config_entry("session.use_env_allocators", "1")
        asked = choose(options.accelerator, ort.get_available_providers())
        if asked.provider != "CPUExecutionProvider" and hasattr(ort, "preload_dlls"):
            # onnxruntime-gpu[cuda,cudnn] installs CUDA and cuDNN as Python packages, which
            # ONNX Runtime finds only once loaded (it logs what it cannot find, and the
            # session then falls back, which `confirm` reports).
            ort.preload_dlls()
        try:
            session = ort.InferenceSession(str(path), so, providers=list(asked.providers))
        except Exception as exc:
            raise ModelLoadError(f"not a valid ONNX model: {path}: {exc}") from exc
        placement = confirm(asked, session.get_providers())
        if placement.fallback:
            log.warning("model %r: --accelerator %s is not in use: %s", name,
                        placement.requested, placement.fallback)  # fmt: skip
        model = cls(
            session,
            name=name,
            version=version,
            sha256=sha256,
            load_seconds=time.perf_counter() - started,
            shapeless=shapeless_tensors(path),
            placement=placement,
        )
        if model.unserved:
            log.warning(
                "model %r: output(s) %s not served: no OIP tensor carries a sequence or a map "
                "(skl2onnx's default ZipMap: export the classifier with options={'zipmap': "
                "False} to serve its probabilities as a tensor)",
                name,
                model.unserved_text(),
            )
        return model

    def metadata(self) -> dict[str, Any]:
        """The OIP model metadata response.

        A model served without a warm-up inference, or off the accelerator it asked for, says so
        under `parameters` (extra keys that OIP clients ignore); a healthy start keeps the plain
        OIP object.
        """
        metadata: dict[str, Any] = {
            "name": self.name,
            "versions": [self.version],
            "platform": "onnxruntime_onnx",
            "inputs": [s.metadata() for s in self.inputs],
            "outputs": [s.metadata() for s in self.outputs],
        }
        if self.warmup.state != "ok" or self.unserved or self.placement.fallback:
            metadata["parameters"] = self.parameters()
        return metadata

    def parameters(self) -> dict[str, str]:
        """What start-up found: warm-up and batching, each with the reason, the execution
        provider in use (and why not the one asked for), and the outputs left out because no
        tensor carries them."""
        found = {
            "warmup": self.warmup.state,
            "warmup_reason": self.warmup.reason,
            "batching": self.batching.state,
            "batching_reason": self.batching.reason,
            "execution_provider": self.placement.provider,
        }
        if self.placement.fallback:
            found["accelerator_fallback"] = self.placement.fallback
        if self.unserved:
            found["unserved_outputs"] = self.unserved_text()
        return found

    def unserved_text(self) -> str:
        """The outputs left out, with their types: "probabilities (seq(map(...)))"."""
        return ", ".join(f"{name} ({kind})" for name, kind in self.unserved.items())

    def run(
        self, feeds: Mapping[str, np.ndarray[Any, Any]], outputs: Sequence[str] | None = None
    ) -> Feeds:
        """Run the session; blocking, so call it from a worker thread."""
        names = list(outputs) if outputs else self.output_names
        return dict(zip(names, self.session.run(names, feeds, _QUIET), strict=True))

    def probe(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> Feeds:
        """Run the session without ONNX Runtime's own error log: for start-up inferences that
        may fail by design (a size the model rejects), whose failure the caller reports."""
        names = self.output_names
        return dict(zip(names, self.session.run(names, feeds, _QUIET), strict=True))
