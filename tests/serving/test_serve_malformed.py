"""Bad requests, each answered with the right 4xx and a message that says what was wrong.

None of them may produce a 500 or take the server down: the last test checks both.
"""

from __future__ import annotations

import gzip
import socket
import struct
from typing import Any

import orjson
import pytest
import servekit

INFER = "/v2/models/mlp/infer"
PREDICT = "/v1/models/mlp:predict"


def tensor(**overrides: Any) -> dict[str, Any]:
    """A valid MLP input tensor with some fields replaced (None removes the field)."""
    item: dict[str, Any] = {"name": "input", "shape": [1, 4], "datatype": "FP32",
                            "data": [1, 2, 3, 4]}  # fmt: skip
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not None}


def infer(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


def binary(header: dict[str, Any], blob: bytes, length: int | None = None) -> tuple[bytes, dict]:
    head = orjson.dumps(header)
    size = len(head) if length is None else length
    return head + blob, {"Inference-Header-Content-Length": str(size)}


ONE_ROW = struct.pack("<4f", 1, 2, 3, 4)
BIN_INPUT = {"name": "input", "shape": [1, 4], "datatype": "FP32",
             "parameters": {"binary_data_size": 16}}  # fmt: skip

# (id, method, path, body, headers, expected status, expected message fragment)
CASES: list[tuple[str, str, str, bytes, dict[str, str], int, str]] = [
    ("invalid-json", "POST", INFER, b"{nope", {}, 400, "not valid JSON"),
    ("nan-literal", "POST", INFER, b'{"inputs": [NaN]}', {}, 400, "not valid JSON"),
    ("json-array", "POST", INFER, b"[1, 2]", {}, 400, "must be a JSON object"),
    ("no-inputs", "POST", INFER, b"{}", {}, 400, "'inputs' must be a non-empty list"),
    ("empty-inputs", "POST", INFER, infer(), {}, 400, "'inputs' must be a non-empty list"),
    ("input-not-object", "POST", INFER, b'{"inputs": [1]}', {}, 400,
     "inputs[0] must be an object"),
    ("input-no-name", "POST", INFER, infer(tensor(name=None)), {}, 400,
     "'name' must be a string"),
    ("unknown-input", "POST", INFER, infer(tensor(name="nope")), {}, 400,
     "input 'nope' is not an input of model 'mlp' (inputs: input)"),
    ("wrong-datatype", "POST", INFER, infer(tensor(datatype="INT32")), {}, 400,
     "input 'input': expected datatype FP32, got INT32"),
    ("unknown-datatype", "POST", INFER, infer(tensor(datatype="FLOAT")), {}, 400,
     "input 'input': unknown datatype 'FLOAT'"),
    ("shape-not-list", "POST", INFER, infer(tensor(shape="1x4")), {}, 400,
     "'shape' must be a list of non-negative integers"),
    ("negative-dim", "POST", INFER, infer(tensor(shape=[-1, 4])), {}, 400,
     "'shape' must be a list of non-negative integers"),
    ("wrong-rank", "POST", INFER, infer(tensor(shape=[4])), {}, 400,
     "input 'input': expected shape [-1, 4], got [4]"),
    ("wrong-width", "POST", INFER, infer(tensor(shape=[1, 5], data=[0] * 5)), {}, 400,
     "input 'input': expected shape [-1, 4], got [1, 5]"),
    ("zero-rows", "POST", INFER, infer(tensor(shape=[0, 4], data=[])), {}, 400,
     "the batch dimension must be at least 1"),
    ("too-few-values", "POST", INFER, infer(tensor(shape=[2, 4])), {}, 400,
     "shape [2, 4] needs 8 values, got 4"),
    ("string-values", "POST", INFER, infer(tensor(data=["a", "b", "c", "d"])), {}, 400,
     "'data' does not hold FP32 values"),
    ("null-values", "POST", INFER, infer(tensor(data=[1, None, 3, 4])), {}, 400,
     "data must be numbers, found null or non-numbers"),
    ("ragged-data", "POST", INFER, infer(tensor(shape=[2, 4], data=[[1, 2, 3, 4], [1]])), {},
     400, "'data' does not hold FP32 values"),
    ("object-values", "POST", INFER, infer(tensor(data=[{"a": 1}, 2, 3, 4])), {}, 400,
     "'data' does not hold FP32 values"),
    ("no-data", "POST", INFER, infer(tensor(data=None)), {}, 400,
     "needs 'data' or parameters.binary_data_size"),
    ("input-twice", "POST", INFER, infer(tensor(), tensor()), {}, 400,
     "input 'input' is given twice"),
    ("unknown-output", "POST", INFER, infer(tensor(), outputs=[{"name": "nope"}]), {}, 400,
     "output 'nope' is not an output of model 'mlp'"),
    ("outputs-not-list", "POST", INFER, infer(tensor(), outputs={"name": "output"}), {}, 400,
     "'outputs' must be a list"),
    ("id-not-string", "POST", INFER, infer(tensor(), id=7), {}, 400, "'id' must be a string"),
    ("parameters-not-object", "POST", INFER, infer(tensor(), parameters=[1]), {}, 400,
     "'parameters' must be an object"),
    ("binary-without-header", "POST", INFER, infer(BIN_INPUT) + ONE_ROW, {}, 400,
     "not valid JSON"),
    ("binary-size-no-length-header", "POST", INFER, infer(BIN_INPUT), {}, 400,
     "needs the Inference-Header-Content-Length header"),
    ("header-length-beyond-body", "POST", INFER,
     *binary({"inputs": [BIN_INPUT]}, ONE_ROW, length=9999), 400,
     "Inference-Header-Content-Length 9999 is outside the body"),
    ("header-length-not-int", "POST", INFER, infer(tensor()),
     {"Inference-Header-Content-Length": "ten"}, 400,
     "Inference-Header-Content-Length must be an integer"),
    ("binary-size-vs-shape", "POST", INFER,
     *binary({"inputs": [{**BIN_INPUT, "parameters": {"binary_data_size": 12}}]}, ONE_ROW[:12]),
     400, "binary_data_size 12 does not match shape and datatype (4 x 4 bytes = 16)"),
    ("binary-overrun", "POST", INFER, *binary({"inputs": [BIN_INPUT]}, ONE_ROW[:8]), 400,
     "binary_data_size 16 overruns the body"),
    ("binary-trailing-bytes", "POST", INFER, *binary({"inputs": [BIN_INPUT]}, ONE_ROW + b"xx"),
     400, "2 bytes after the tensors"),
    ("v1-no-instances", "POST", PREDICT, b'{"rows": []}', {}, 400,
     'a JSON object with "instances"'),
    ("v1-empty-instances", "POST", PREDICT, b'{"instances": []}', {}, 400,
     "'instances' must be a non-empty list"),
    ("v1-wrong-width", "POST", PREDICT, b'{"instances": [[1, 2, 3]]}', {}, 400,
     "input 'input': expected shape [-1, 4], got [1, 3]"),
    ("v1-not-numbers", "POST", PREDICT, b'{"instances": [["a", 2, 3, 4]]}', {}, 400,
     "'data' does not hold FP32 values"),
    ("get-on-infer", "GET", INFER, b"", {}, 405, "GET is not allowed on /v2/models/mlp/infer"),
    ("post-on-metadata", "POST", "/v2/models/mlp", b"{}", {}, 405, "POST is not allowed"),
    ("unknown-model", "POST", "/v2/models/other/infer", infer(tensor()), {}, 404,
     "model 'other' is not served here (this server serves 'mlp')"),
    ("unknown-version", "GET", "/v2/models/mlp/versions/9", b"", {}, 404,
     "model 'mlp' has no version '9'"),
    ("unknown-route", "GET", "/v3/anything", b"", {}, 404, "no route for /v3/anything"),
    ("unknown-model-action", "GET", "/v2/models/mlp/stats", b"", {}, 404, "no route for"),
    ("bad-encoding", "POST", INFER, infer(tensor()), {"Content-Encoding": "br"}, 415,
     "unsupported Content-Encoding 'br'"),
    ("corrupt-gzip", "POST", INFER, b"\x1f\x8bnot gzip", {"Content-Encoding": "gzip"}, 400,
     "cannot decompress the gzip body"),
    # A flat list is held to the same rule as a nested one: numbers only, nothing numpy would
    # coerce (the string "nan" became NaN, "1.5" became 1.5, true became 1.0).
    ("flat-nan-string", "POST", INFER, infer(tensor(data=["nan", 2, 3, 4])), {}, 400,
     "input 'input': 'data' does not hold FP32 values"),
    ("flat-numeric-string", "POST", INFER, infer(tensor(data=["1.5", 2, 3, 4])), {}, 400,
     "input 'input': 'data' does not hold FP32 values"),
    ("flat-bool", "POST", INFER, infer(tensor(data=[True, 2, 3, 4])), {}, 400,
     "input 'input': 'data' does not hold FP32 values"),
    ("nested-numeric-string", "POST", INFER, infer(tensor(data=[["1.5", 2, 3, 4]])), {}, 400,
     "input 'input': 'data' does not hold FP32 values"),
    ("nested-bool", "POST", INFER, infer(tensor(data=[[1, 2, 3, False]])), {}, 400,
     "input 'input': 'data' does not hold FP32 values"),
    ("v1-bool", "POST", PREDICT, b'{"instances": [[1, true, 3, 4]]}', {}, 400,
     "input 'input': 'data' does not hold FP32 values"),
    # Beyond the dtype's range a value became an infinity the client never sent.
    ("fp32-overflow", "POST", INFER, infer(tensor(data=[1e39, 2, 3, 4])), {}, 400,
     "input 'input': values out of range for FP32"),
    ("fp32-overflow-nested", "POST", INFER, infer(tensor(data=[[1, 2, 3, -1e39]])), {}, 400,
     "input 'input': values out of range for FP32"),
    ("v1-fp32-overflow", "POST", PREDICT, b'{"instances": [[1, 2, 3e38, 4e38]]}', {}, 400,
     "input 'input': values out of range for FP32"),
]  # fmt: skip

MULTI_CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("int-given-floats",
     {"name": "a", "shape": [1, 3], "datatype": "INT64", "data": [1.5, 2, 3]}, 400,
     "datatype INT64 needs integers"),
    ("int-overflow",
     {"name": "a", "shape": [1, 3], "datatype": "INT64", "data": [2**70, 2, 3]}, 400,
     "INT64 needs integers"),
    ("bool-given-numbers",
     {"name": "flag", "shape": [1, 1], "datatype": "BOOL", "data": [1]}, 400,
     "datatype BOOL needs true/false values"),
    ("int-given-bool",
     {"name": "a", "shape": [1, 3], "datatype": "INT64", "data": [1, True, 3]}, 400,
     "input 'a': datatype INT64 needs integers"),
    ("fp16-overflow",
     {"name": "h", "shape": [1, 2], "datatype": "FP16", "data": [70000.0, 1]}, 400,
     "input 'h': values out of range for FP16"),
    ("fp64-given-string",
     {"name": "x", "shape": [1, 2], "datatype": "FP64", "data": ["1e3", 1]}, 400,
     "input 'x': 'data' does not hold FP64 values"),
]  # fmt: skip
GOOD_MULTI = {
    "a": {"name": "a", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]},
    "flag": {"name": "flag", "shape": [1, 1], "datatype": "BOOL", "data": [True]},
    "x": {"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]},
    "h": {"name": "h", "shape": [1, 2], "datatype": "FP16", "data": [1.0, 2.0]},
}


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_request_is_refused_with_a_reason(
    mlp_server: servekit.Server,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    with mlp_server.client() as client:
        response = client.request(method, path, content=body or None, headers=headers)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_values_near_the_datatype_limit_are_accepted(mlp_server: servekit.Server) -> None:
    """The overflow check's fast path (a sum of squares) overflows on large finite values and
    must fall back to the exact check: 3e38 fits FP32, and a valid value is never refused."""
    with mlp_server.client() as client:
        response = client.post(INFER, content=infer(tensor(data=[3e38, -3e38, 1e30, 4])))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("bad", "status", "message"), [pytest.param(*c[1:], id=c[0]) for c in MULTI_CASES]
)
def test_bad_datatype_values(
    multi_server: servekit.Server, bad: dict[str, Any], status: int, message: str
) -> None:
    inputs = {**GOOD_MULTI, bad["name"]: bad}
    with multi_server.client() as client:
        response = client.post("/v2/models/multi/infer", json={"inputs": list(inputs.values())})
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_batch_sizes_must_agree(multi_server: servekit.Server) -> None:
    inputs = {**GOOD_MULTI, "x": {"name": "x", "shape": [2, 2], "datatype": "FP64",
                                  "data": [1, 2, 3, 4]}}  # fmt: skip
    with multi_server.client() as client:
        response = client.post("/v2/models/multi/infer", json={"inputs": list(inputs.values())})
        missing = client.post("/v2/models/multi/infer", json={"inputs": [GOOD_MULTI["a"]]})
        v1 = client.post("/v1/models/multi:predict", json={"instances": [[1, 2, 3]]})
    assert response.status_code == 400
    assert "batch size 2 differs from the other inputs' 1" in response.json()["error"]
    assert missing.status_code == 400
    assert missing.json()["error"] == "missing input(s): flag, x, h"
    assert v1.status_code == 400
    assert "has several inputs" in v1.json()["error"]


def test_bytes_must_be_strings_and_utf8(strings_server: servekit.Server) -> None:
    raw = struct.pack("<I", 2) + b"\xff\xfe"
    header = orjson.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                       "parameters": {"binary_data_size": len(raw)}}]})  # fmt: skip
    with strings_server.client() as client:
        numbers = client.post(
            "/v2/models/strings/infer",
            json={"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [1]}]},
        )
        not_utf8 = client.post(
            "/v2/models/strings/infer",
            content=header + raw,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
    assert numbers.status_code == 400
    assert "datatype BYTES needs strings" in numbers.json()["error"]
    assert not_utf8.status_code == 400
    assert "BYTES element is not valid UTF-8" in not_utf8.json()["error"]


def test_malformed_http_gets_400_and_close(mlp_server: servekit.Server) -> None:
    with socket.create_connection(("127.0.0.1", mlp_server.port), timeout=5) as sock:
        sock.sendall(b"GARBAGE / HTTP/1.1\r\n\r\n")
        data = sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"malformed HTTP request" in data
    assert b"connection: close" in data


def test_server_survives_and_never_answered_500(mlp_server: servekit.Server) -> None:
    """Runs after the tables above (same session server): still correct, no 5xx counted."""
    with mlp_server.client() as client:
        assert client.post(INFER, content=gzip.compress(infer(tensor())),
                           headers={"Content-Encoding": "gzip"}).status_code == 200  # fmt: skip
        metrics = client.get("/metrics").text
    assert 'code="400"' in metrics
    assert 'code="5' not in metrics
    assert mlp_server.process.poll() is None


def test_bytes_elements_the_body_cannot_hold_are_refused_unparsed(
    strings_server: servekit.Server,
) -> None:
    """A shape of 10**9 BYTES elements over 4 MB of empty ones: every element takes at least
    its 4-byte length, so the body cannot hold the shape. It used to be parsed element by
    element first (about 3 s of the event loop, every other client waiting) before the count
    was compared; it is refused before parsing, and a body that fits is parsed whole."""
    raw = struct.pack("<I", 0) * 1_000_000
    header = orjson.dumps({"inputs": [{"name": "text", "shape": [10**9], "datatype": "BYTES",
                                       "parameters": {"binary_data_size": len(raw)}}]})  # fmt: skip
    fits = (
        struct.pack("<I", 1) + b"a" + struct.pack("<I", 0) + struct.pack("<I", 3) + b"\xe2\x82\xac"
    )
    sized = {"binary_data_size": len(fits)}
    fits_header = orjson.dumps(
        {"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "parameters": sized}]}
    )
    with strings_server.client() as client:
        refused = client.post(
            "/v2/models/strings/infer",
            content=header + raw,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        served = client.post(
            "/v2/models/strings/infer",
            content=fits_header + fits,
            headers={"Inference-Header-Content-Length": str(len(fits_header))},
        )
    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "input 'text': shape [1000000000] needs 1000000000 BYTES elements, at least 4000000000 "
        "bytes, and binary_data_size is 4000000"
    )
    assert served.status_code == 200, served.text
    assert served.json()["outputs"][0]["data"] == ["a", "", "€"]
