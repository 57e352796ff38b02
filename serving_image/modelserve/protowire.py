"""Which graph inputs and outputs of an ONNX file state no shape at all, read from the protobuf
wire format.

ONNX Runtime reports such an input's shape as [], exactly as it reports a scalar's, and it does
not check ranks for either, so the server cannot tell them apart from the session: a model that
carries no shape for its input would be served as taking only scalars. The `onnx` package, which
could say, is not in the image; the few fields needed are read here from the file directly
(memory-mapped, so a large model's weights are skipped over, not read).

Fields read: ModelProto.graph (7) → GraphProto.input (11) and .output (12) →
ValueInfoProto.name (1) and .type (2) → TypeProto.tensor_type (1) → TypeProto.Tensor.shape (2),
present or not.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import Final

_VARINT: Final = 0
_FIXED64: Final = 1
_LENGTH: Final = 2
_FIXED32: Final = 5

Span = tuple[int, int]  # [start, end) of a length-delimited field in the file


class _MalformedError(Exception):
    """Not the protobuf this reader expects: nothing is concluded from it."""


def _varint(data: mmap.mmap, offset: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= end or shift > 63:
            raise _MalformedError
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7


def _fields(data: mmap.mmap, span: Span, number: int) -> Iterator[Span]:
    """The spans of the length-delimited fields numbered `number` within `span`."""
    offset, end = span
    while offset < end:
        key, offset = _varint(data, offset, end)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, offset = _varint(data, offset, end)
        elif wire == _LENGTH:
            size, offset = _varint(data, offset, end)
            if offset + size > end:
                raise _MalformedError
            if field == number:
                yield offset, offset + size
            offset += size
        elif wire in (_FIXED64, _FIXED32):
            offset += 8 if wire == _FIXED64 else 4
        else:  # groups: not used by ONNX
            raise _MalformedError


def _input(data: mmap.mmap, value_info: Span) -> tuple[str, bool]:
    """(name, whether its tensor type has no shape field) of a ValueInfoProto."""
    name = next((data[a:b].decode("utf-8", "replace") for a, b in _fields(data, value_info, 1)),
                "")  # fmt: skip
    shapeless = False
    for kind in _fields(data, value_info, 2):
        for tensor in _fields(data, kind, 1):
            shapeless = next(_fields(data, tensor, 2), None) is None
    return name, shapeless


def shapeless_tensors(path: Path) -> frozenset[str]:
    """Names of the graph inputs and outputs whose tensor type has no shape; empty when the
    file cannot be read this way (ONNX Runtime, which loaded it, is the judge of the file)."""
    try:
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            names = set()
            for graph in _fields(data, (0, len(data)), 7):
                for field in (11, 12):  # GraphProto.input, GraphProto.output
                    for value_info in _fields(data, graph, field):
                        name, shapeless = _input(data, value_info)
                        if shapeless:
                            names.add(name)
            return frozenset(names)
    except (OSError, ValueError, _MalformedError):
        return frozenset()
