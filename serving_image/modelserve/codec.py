"""Open Inference Protocol v2 (JSON and the binary tensor extension) and v1 :predict ↔ numpy.

Everything a client can get wrong is checked here against the model's inputs and raised as
BadRequestError naming the input and what was expected; nothing malformed reaches ONNX Runtime.
"""

from __future__ import annotations

import itertools
import math
import struct
import warnings
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import orjson

from .errors import BadRequestError
from .model import DATATYPES, Feeds, Model, TensorSpec

NUMPY: Final = orjson.OPT_SERIALIZE_NUMPY
# orjson serialises these numpy dtypes natively; anything else goes through tolist().
_ORJSON_KINDS: Final = frozenset("biuf")
_DECODE_ERRORS: Final = (ValueError, TypeError, OverflowError)
# The Python types orjson gives each JSON value, by what a datatype of each kind accepts: a bool
# is an int to Python and the string "1.5" a number to numpy, so both are checked by exact type.
_ACCEPTED: Final[dict[str, frozenset[type]]] = {
    "f": frozenset({int, float}),
    "i": frozenset({int}),
    "u": frozenset({int}),
    "b": frozenset({bool}),
    "O": frozenset({str}),
}
_JSON_NAMES: Final = {str: "strings", bool: "true/false", dict: "objects", list: "arrays",
                      type(None): "nulls", int: "integers", float: "numbers"}  # fmt: skip


@dataclass(slots=True)
class InferRequest:
    """A decoded, validated inference request."""

    feeds: Feeds
    rows: int
    id: str | None = None
    outputs: list[str] | None = None
    binary_outputs: set[str] = field(default_factory=set)


def _shape_text(shape: Any) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _check_shape(spec: TensorSpec, shape: Any, where: str) -> tuple[int, ...]:
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        raise BadRequestError(f"{where}: 'shape' must be a list of non-negative integers")
    if spec.any_rank:
        return tuple(shape)
    expected = spec.shape
    if len(shape) != len(expected) or any(
        want >= 0 and got != want for want, got in zip(expected, shape, strict=True)
    ):
        raise BadRequestError(
            f"{where}: expected shape {_shape_text(expected)}, got {_shape_text(shape)}"
        )
    return tuple(shape)


def _flatten(data: Any) -> tuple[list[Any], tuple[int, ...]] | None:
    """Row-major leaf values and shape of nested JSON lists; None when rows differ in length
    or mix lists and values. A flat list, the common case, returns at once, as it is."""
    if type(data) is not list:
        return [data], ()
    shape = [len(data)]
    level: list[Any] = data
    while level and type(level[0]) is list:
        if set(map(type, level)) != {list}:
            return None
        lengths = set(map(len, level))
        if len(lengths) != 1:
            return None
        shape.append(lengths.pop())
        level = list(itertools.chain.from_iterable(level))
    return level, tuple(shape)


def _json_tensor(spec: TensorSpec, data: Any, where: str) -> np.ndarray[Any, Any]:
    """JSON values (flat or nested, row-major) → an array of the model's dtype, strictly.

    Every value must be of a JSON type the datatype takes (numbers for floats, integers for
    integers, true/false for BOOL, strings for BYTES), however deep the lists: numpy alone would
    turn "nan", "1.5" and true into floats. The type check is one pass over the values in C
    (`set(map(type, ...))`), about what numpy's own conversion costs.
    """
    # A flat list of values, the common case, needs no walk: _flatten only for nested lists.
    if type(data) is list and (not data or type(data[0]) is not list):
        flat: tuple[list[Any], tuple[int, ...]] | None = data, (len(data),)
    else:
        flat = _flatten(data)
    if flat is None:
        raise BadRequestError(
            f"{where}: 'data' does not hold {spec.datatype} values: nested lists of different "
            "lengths, or lists mixed with values"
        )
    values, shape = flat
    kind = spec.dtype.kind
    found = set(map(type, values)) - _ACCEPTED[kind]
    if found:
        raise _wrong_values(spec, found, where)
    try:
        if kind == "f":
            array = np.fromiter(values, dtype=spec.dtype, count=len(values))
            # JSON carries no NaN or infinity, so a non-finite value overflowed the datatype.
            if not _all_finite(array):
                raise BadRequestError(f"{where}: values out of range for {spec.datatype}")
        elif kind in "iu":
            array = np.asarray(values)
            if array.size and array.dtype.kind not in "iu":  # beyond 64 bits: object
                raise BadRequestError(f"{where}: datatype {spec.datatype} needs integers in 'data'")
            _check_range(array, spec.dtype, where)
            array = array.astype(spec.dtype)
        elif kind == "b":
            array = np.array(values, dtype=np.bool_)
        else:
            array = np.array(values, dtype=np.object_)
        return array if len(shape) == 1 else array.reshape(shape)  # a flat list: 1-D already
    except _DECODE_ERRORS as exc:
        raise BadRequestError(
            f"{where}: 'data' does not hold {spec.datatype} values: {exc}"
        ) from None


# _all_finite's fast path overflows by design on large finite values, then checks exactly.
warnings.filterwarnings(
    "ignore", "overflow encountered in dot", RuntimeWarning, module=r"modelserve\.codec"
)


def _all_finite(array: np.ndarray[Any, Any]) -> bool:
    """No NaN or infinity in a float array. It runs for every JSON float tensor, so for float32
    and float64 the common case is one BLAS dot product: NaN and ±Inf carry into the sum of
    squares, so a finite one proves every value finite (three times cheaper than
    `np.isfinite(a).all()`, which builds a temporary). A sum that overflows on large finite
    values (beyond about 1e18 in float32) falls back to the exact check, so no valid tensor is
    refused. float16 overflows its squares from 256 up: always the exact check."""
    flat = array if array.ndim == 1 else array.reshape(-1)
    if flat.dtype.itemsize >= 4 and math.isfinite(flat.dot(flat)):
        return True
    return bool(np.isfinite(flat).all())


def _wrong_values(spec: TensorSpec, found: set[type], where: str) -> BadRequestError:
    """The 400 for values of a JSON type the datatype does not take, naming what was found."""
    names = ", ".join(sorted(_JSON_NAMES.get(t, t.__name__) for t in found))
    kind = spec.dtype.kind
    if kind == "f":
        if type(None) in found:
            return BadRequestError(f"{where}: data must be numbers, found null or non-numbers")
        return BadRequestError(f"{where}: 'data' does not hold {spec.datatype} values: {names}")
    if kind in "iu":
        return BadRequestError(
            f"{where}: datatype {spec.datatype} needs integers in 'data', found {names}"
        )
    if kind == "b":
        return BadRequestError(
            f"{where}: datatype BOOL needs true/false values in 'data', found {names}"
        )
    return BadRequestError(f"{where}: datatype BYTES needs strings in 'data', found {names}")


def _check_range(array: np.ndarray[Any, Any], dtype: np.dtype[Any], where: str) -> None:
    if array.size:
        info = np.iinfo(dtype)
        if int(array.min()) < info.min or int(array.max()) > info.max:
            raise BadRequestError(f"{where}: values out of range for {dtype.name}")


def _binary_tensor(
    spec: TensorSpec, raw: memoryview, shape: tuple[int, ...], where: str
) -> np.ndarray[Any, Any]:
    count = math.prod(shape)
    if spec.datatype == "BYTES":
        return _binary_strings(raw, count, shape, where)
    expected = count * spec.dtype.itemsize
    if len(raw) != expected:
        raise BadRequestError(
            f"{where}: binary_data_size {len(raw)} does not match shape and datatype "
            f"({count} x {spec.dtype.itemsize} bytes = {expected})"
        )
    return np.frombuffer(raw, dtype=spec.dtype).copy()


def _binary_strings(
    raw: memoryview, count: int, shape: tuple[int, ...], where: str
) -> np.ndarray[Any, Any]:
    """BYTES elements (a 4-byte little-endian length, then the bytes) → UTF-8 strings.

    Parsing runs on the event loop, element by element, so what a body cannot hold is refused
    first: every element takes at least its 4-byte length. The loop keeps to slicing one bytes
    object, then decodes; a 16 MB body of empty elements takes about a second.
    """
    if count * 4 > len(raw):
        raise BadRequestError(
            f"{where}: shape {_shape_text(shape)} needs {count} BYTES elements, at least "
            f"{count * 4} bytes, and binary_data_size is {len(raw)}"
        )
    data = bytes(raw)
    end = len(data)
    unpack = struct.unpack_from
    parts: list[bytes] = []
    append = parts.append
    offset = 0
    while offset < end:
        if offset + 4 > end:
            raise BadRequestError(f"{where}: truncated BYTES element length")
        start = offset + 4
        offset = start + unpack("<I", data, offset)[0]
        if offset > end:
            raise BadRequestError(f"{where}: BYTES element overruns binary_data_size")
        append(data[start:offset])
    if len(parts) != count:
        raise BadRequestError(f"{where}: shape needs {count} BYTES elements, got {len(parts)}")
    try:
        # ONNX Runtime's Python strings are text: it cannot take arbitrary bytes.
        items = [str(part, "utf-8") for part in parts]
    except UnicodeDecodeError:
        raise BadRequestError(f"{where}: BYTES element is not valid UTF-8") from None
    return np.array(items, dtype=np.object_)


def decode_v2(
    body: bytes,
    model: Model,
    *,
    header_length: int | None = None,
    reject_nonfinite: bool = False,
) -> InferRequest:
    """An OIP v2 infer request (JSON, or JSON header + binary tensors) → validated arrays."""
    if header_length is not None and not 0 <= header_length <= len(body):
        raise BadRequestError(
            f"Inference-Header-Content-Length {header_length} is outside the body "
            f"({len(body)} bytes)"
        )
    view = memoryview(body)
    header = view[:header_length] if header_length is not None else body
    try:
        request = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise BadRequestError("request body must be a JSON object")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequestError("'inputs' must be a non-empty list")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequestError("'id' must be a string")
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequestError("'parameters' must be an object")

    feeds: Feeds = {}
    offset = header_length if header_length is not None else len(body)
    rows = -1
    named: dict[str, tuple[int, str]] = {}  # symbolic dimension → (size, the input that set it)
    for index, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise BadRequestError(f"inputs[{index}] must be an object")
        name = item.get("name")
        if not isinstance(name, str):
            raise BadRequestError(f"inputs[{index}]: 'name' must be a string")
        spec = model.input_by_name.get(name)
        where = f"input '{name}'"
        if spec is None:
            known = ", ".join(s.name for s in model.inputs)
            raise BadRequestError(
                f"{where} is not an input of model '{model.name}' (inputs: {known})"
            )
        if name in feeds:
            raise BadRequestError(f"{where} is given twice")
        datatype = item.get("datatype")
        if datatype != spec.datatype:
            if datatype not in DATATYPES and datatype != "BF16":
                raise BadRequestError(f"{where}: unknown datatype {datatype!r}")
            raise BadRequestError(f"{where}: expected datatype {spec.datatype}, got {datatype}")
        shape = _check_shape(spec, item.get("shape"), where)
        count = math.prod(shape)
        item_parameters = item.get("parameters") or {}
        if not isinstance(item_parameters, dict):
            raise BadRequestError(f"{where}: 'parameters' must be an object")
        binary_size = item_parameters.get("binary_data_size")
        if binary_size is not None:
            if not isinstance(binary_size, int) or isinstance(binary_size, bool) or binary_size < 0:
                raise BadRequestError(f"{where}: binary_data_size must be a non-negative integer")
            if header_length is None:
                raise BadRequestError(
                    f"{where}: binary_data_size needs the Inference-Header-Content-Length header"
                )
            if offset + binary_size > len(body):
                raise BadRequestError(f"{where}: binary_data_size {binary_size} overruns the body")
            array = _binary_tensor(spec, view[offset : offset + binary_size], shape, where)
            offset += binary_size
        else:
            if "data" not in item:
                raise BadRequestError(f"{where}: needs 'data' or parameters.binary_data_size")
            array = _json_tensor(spec, item["data"], where)
            if array.size != count:
                raise BadRequestError(
                    f"{where}: shape {_shape_text(shape)} needs {count} values, got {array.size}"
                )
        array = _reshape(array, shape, where)
        if reject_nonfinite and array.dtype.kind == "f" and not _all_finite(array):
            raise BadRequestError(f"{where}: NaN or Inf values are not accepted by this model")
        if model.batchable:
            if shape[0] < 1:
                raise BadRequestError(f"{where}: the batch dimension must be at least 1")
            if rows not in (-1, shape[0]):
                raise BadRequestError(
                    f"{where}: batch size {shape[0]} differs from the other inputs' {rows}"
                )
            rows = shape[0]
        _check_named_dims(spec, shape, named, where)
        feeds[name] = array
    if offset != len(body):
        raise BadRequestError(
            f"{len(body) - offset} bytes after the tensors that no binary_data_size accounts for"
        )
    missing = [s.name for s in model.inputs if s.name not in feeds]
    if missing:
        raise BadRequestError(f"missing input(s): {', '.join(missing)}")

    outputs, binary = _requested_outputs(request.get("outputs"), model)
    if parameters.get("binary_data_output") is True:
        binary = set(outputs or model.output_names)
    return InferRequest(
        feeds=feeds, rows=max(rows, 0), id=request_id, outputs=outputs, binary_outputs=binary
    )


def _reshape(array: np.ndarray[Any, Any], shape: tuple[int, ...], where: str) -> Any:
    try:
        return array.reshape(shape)
    except ValueError:  # e.g. [1, 0, 2**62]: no values, yet a shape numpy cannot represent
        raise BadRequestError(f"{where}: shape {_shape_text(shape)} is too large") from None


def _check_named_dims(
    spec: TensorSpec, shape: tuple[int, ...], named: dict[str, tuple[int, str]], where: str
) -> None:
    """Dynamic dimensions the model names alike (x [batch, seq], mask [batch, seq]) must agree;
    otherwise ONNX Runtime would fail mid-graph, which is the client's mistake, not a 500."""
    for dim, size in zip(spec.dim_names, shape, strict=False):
        if dim is None:
            continue
        seen = named.setdefault(dim, (size, spec.name))
        if seen[0] != size:
            raise BadRequestError(
                f"{where}: dimension '{dim}' is {size}, but input '{seen[1]}' has {seen[0]}"
            )


def _requested_outputs(items: Any, model: Model) -> tuple[list[str] | None, set[str]]:
    if items is None:
        return None, set()
    if not isinstance(items, list):
        raise BadRequestError("'outputs' must be a list")
    names: list[str] = []
    binary: set[str] = set()
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise BadRequestError(f"outputs[{index}]: 'name' must be a string")
        if name in model.unserved:
            raise BadRequestError(
                f"output '{name}' has type {model.unserved[name]}, which no OIP tensor carries; "
                f"served outputs: {', '.join(model.output_names)}"
            )
        if name not in model.output_by_name:
            known = ", ".join(model.output_names)
            raise BadRequestError(
                f"output '{name}' is not an output of model '{model.name}' ({known})"
            )
        parameters = item.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise BadRequestError(f"output '{name}': 'parameters' must be an object")
        if parameters.get("binary_data") is True:
            binary.add(name)
        names.append(name)
    return names or None, binary


def _json_data(array: np.ndarray[Any, Any]) -> Any:
    flat = array.reshape(-1)
    if flat.dtype.kind in _ORJSON_KINDS:
        return np.ascontiguousarray(flat)
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in flat.tolist()]


def _binary_data(array: np.ndarray[Any, Any]) -> bytes:
    if array.dtype.kind == "O":
        parts = []
        for value in array.reshape(-1).tolist():
            raw = value if isinstance(value, bytes) else str(value).encode()
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    return np.ascontiguousarray(array).tobytes()


def encode_v2(
    model: Model, request: InferRequest, results: Feeds
) -> tuple[bytes, int | None, bytes]:
    """Results → (body, Inference-Header-Content-Length or None, content type)."""
    names = request.outputs or model.output_names
    outputs = []
    blobs: list[bytes] = []
    for name in names:
        array = results[name]
        entry: dict[str, Any] = {
            "name": name,
            "datatype": model.output_by_name[name].datatype,
            "shape": list(array.shape),
        }
        if name in request.binary_outputs:
            blob = _binary_data(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(array)
        outputs.append(entry)
    response: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = outputs
    header = orjson.dumps(response, option=NUMPY)
    if not blobs:
        return header, None, b"application/json"
    return b"".join([header, *blobs]), len(header), b"application/octet-stream"


def decode_v1(body: bytes, model: Model, *, reject_nonfinite: bool = False) -> InferRequest:
    """`{"instances": [...]}` (rows; dicts per row for several inputs) → validated arrays."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(request, dict) or "instances" not in request:
        raise BadRequestError('request body must be a JSON object with "instances": [...]')
    instances = request["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequestError("'instances' must be a non-empty list")
    feeds: Feeds = {}
    named: dict[str, tuple[int, str]] = {}
    by_name = all(isinstance(row, dict) for row in instances)
    if not by_name and len(model.inputs) != 1:
        names = ", ".join(s.name for s in model.inputs)
        raise BadRequestError(
            f"model '{model.name}' has several inputs: give each row as {{{names}}}"
        )
    for spec in model.inputs:
        where = f"input '{spec.name}'"
        if by_name:
            try:
                column = [row[spec.name] for row in instances]
            except KeyError:
                raise BadRequestError(f"every instance needs {where}") from None
        else:
            column = instances
        array = _json_tensor(spec, column, where)
        shape = _check_shape(spec, list(array.shape), where)
        _check_named_dims(spec, shape, named, where)
        if reject_nonfinite and array.dtype.kind == "f" and not _all_finite(array):
            raise BadRequestError(f"{where}: NaN or Inf values are not accepted by this model")
        feeds[spec.name] = array
    return InferRequest(feeds=feeds, rows=len(instances) if model.batchable else 0)


def encode_v1(model: Model, results: Feeds) -> bytes:
    """`{"predictions": [...]}`: one value per row, or one object per row for several outputs."""
    if len(model.outputs) == 1:
        predictions: Any = results[model.output_names[0]]
        if predictions.dtype.kind not in _ORJSON_KINDS:
            predictions = predictions.tolist()
    else:
        columns = {name: results[name].tolist() for name in model.output_names}
        rows = len(next(iter(columns.values())))
        predictions = [{name: columns[name][i] for name in columns} for i in range(rows)]
    return orjson.dumps({"predictions": predictions}, option=NUMPY)
