"""Which ONNX Runtime execution providers serve the model, and what to say when the asked-for
accelerator is not there.

A pod asks for an accelerator (`--accelerator cuda`); whether it gets one depends on the image
(onnxruntime-gpu, or the CPU-only onnxruntime), the node (a GPU, a driver, the CUDA and cuDNN
libraries) and ONNX Runtime itself, which drops a provider it cannot initialise with nothing
more than a log line. A server that then quietly runs on the CPU is slower than its owner thinks
and costs a GPU node for nothing, so the choice is made here, in two steps, and any fallback is
said in the model's metadata, in a metric and in the log:

1. `choose`: the providers to ask ONNX Runtime for, among those this build has
   (`onnxruntime.get_available_providers()`), always ending with the CPU;
2. `confirm`: what the session really registered (`InferenceSession.get_providers()`).

Falling back rather than refusing to start is deliberate: the model is served correctly either
way, and an alert on `modelserve_accelerator_fallback` tells the owner, where a crash loop on a
node whose driver is broken would take the model down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

Accelerator = Literal["cpu", "cuda", "tensorrt"]
ACCELERATORS: Final[tuple[Accelerator, ...]] = ("cpu", "cuda", "tensorrt")
CPU: Final = "CPUExecutionProvider"
CUDA: Final = "CUDAExecutionProvider"
TENSORRT: Final = "TensorrtExecutionProvider"
# ONNX Runtime tries providers in order and places each node on the first that supports it:
# TensorRT's engine where it can build one, CUDA kernels for the rest, the CPU last of all.
CHAINS: Final[dict[Accelerator, tuple[str, ...]]] = {
    "cpu": (CPU,),
    "cuda": (CUDA, CPU),
    "tensorrt": (TENSORRT, CUDA, CPU),
}


@dataclass(frozen=True)
class Placement:
    """Where the model runs: the accelerator asked for, the providers in use (most preferred
    first), and why the asked-for one is not in use ("" when it is)."""

    requested: Accelerator
    providers: tuple[str, ...]
    fallback: str = ""

    @property
    def provider(self) -> str:
        """The provider the model mainly runs on: the first of those in use."""
        return self.providers[0]


def choose(requested: Accelerator, available: Sequence[str]) -> Placement:
    """The providers to create the session with, from those this ONNX Runtime build has.

    >>> choose("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]).providers
    ('CUDAExecutionProvider', 'CPUExecutionProvider')
    >>> p = choose("tensorrt", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    >>> p.providers, p.fallback
    (('CUDAExecutionProvider', 'CPUExecutionProvider'), 'TensorrtExecutionProvider is not in this onnxruntime build (it has CUDAExecutionProvider, CPUExecutionProvider)')
    >>> choose("cuda", ["CPUExecutionProvider"]).provider
    'CPUExecutionProvider'
    """  # noqa: E501 - a doctest's expected line is as long as the value
    chain = CHAINS[requested]
    kept = tuple(p for p in chain if p in available or p == CPU)
    missing = [p for p in chain if p not in kept]
    fallback = ""
    if missing and missing[0] == chain[0]:
        fallback = (f"{missing[0]} is not in this onnxruntime build (it has "
                    f"{', '.join(available) or 'no provider'})")  # fmt: skip
    return Placement(requested, kept, fallback)


def confirm(placement: Placement, registered: Sequence[str]) -> Placement:
    """What the session really runs on. ONNX Runtime drops a provider it has but cannot start
    (no GPU on the node, a missing CUDA or cuDNN library) and logs it only.

    >>> asked = choose("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    >>> confirm(asked, ["CPUExecutionProvider"]).fallback
    'CUDAExecutionProvider could not be started on this node (no usable GPU, driver or CUDA libraries); running on CPUExecutionProvider'
    >>> confirm(asked, ["CUDAExecutionProvider", "CPUExecutionProvider"]).fallback
    ''
    """  # noqa: E501 - a doctest's expected line is as long as the value
    used = tuple(p for p in placement.providers if p in registered) or (CPU,)
    fallback = placement.fallback
    if not fallback and used[0] != placement.providers[0]:
        fallback = (f"{placement.providers[0]} could not be started on this node (no usable GPU, "
                    f"driver or CUDA libraries); running on {used[0]}")  # fmt: skip
    return Placement(placement.requested, used, fallback)
