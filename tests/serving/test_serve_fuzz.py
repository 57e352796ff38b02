"""Generated bad requests: whatever a client sends, the answer is never a 5xx and the server
never falls over.

The table in test_serve_malformed.py pins the message for requests we thought of; this file
lets hypothesis think of the rest: a valid OIP v2 request with any part replaced by arbitrary
JSON, odd shapes and datatypes, binary-extension bodies with lying header lengths, and plain
garbage. Integers beyond 64 bits are in range on purpose (the stdlib encodes them, which the
server's parser may refuse). Every answer must be a success or a 4xx with an `error` message,
and afterwards the server must still be live with no traceback in its log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import servekit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BF16", "BYTES"]  # fmt: skip
EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=24,
)
dims = st.integers(min_value=-3, max_value=2**40) | st.sampled_from([0, 1, 4, 16])
shapes = st.lists(dims, max_size=4) | json_values
datatypes = st.sampled_from(DATATYPES) | st.text(max_size=6)
data = (
    st.lists(
        st.floats(allow_nan=False, width=32) | st.integers(-300, 300) | st.booleans(), max_size=20
    )
    | st.lists(st.lists(st.floats(allow_nan=False, width=32), max_size=5), max_size=5)
    | json_values
)


@st.composite
def v2_tensor(draw: st.DrawFn, name: str = "input") -> dict[str, Any]:
    """An input tensor whose fields are each either right, wrong in kind, or absent."""
    tensor: dict[str, Any] = {}
    for key, good, bad in (
        ("name", st.just(name), st.text(max_size=8) | json_values),
        ("shape", st.just([1, 4]), shapes),
        ("datatype", st.just("FP32"), datatypes),
        ("data", st.just([1.0, 2.0, 3.0, 4.0]), data),
        ("parameters", st.just({}), json_values),
    ):
        # Mostly right, so requests get past the first check and reach the deeper ones.
        choice = draw(st.sampled_from(["good", "good", "good", "bad", "absent"]))
        if choice != "absent":
            tensor[key] = draw(good if choice == "good" else bad)
    return tensor


@st.composite
def v2_request(draw: st.DrawFn) -> dict[str, Any]:
    well_formed = draw(st.sampled_from([True, True, True, False]))
    inputs = st.lists(v2_tensor(), min_size=1, max_size=3) if well_formed else json_values
    request: dict[str, Any] = {"inputs": draw(inputs)}
    if draw(st.booleans()):
        request["outputs"] = draw(
            st.lists(
                st.fixed_dictionaries({"name": st.sampled_from(["output", "nope"])}), max_size=2
            )
            | json_values
        )
    if draw(st.booleans()):
        request["id"] = draw(st.text(max_size=8) | json_values)
    if draw(st.booleans()):
        request["parameters"] = draw(json_values)
    return request


@pytest.fixture(scope="module")
def client(mlp_server: servekit.Server) -> Iterator[httpx.Client]:
    with mlp_server.client() as http:
        yield http


def assert_client_error_or_success(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        message = response.json()["error"]
        assert isinstance(message, str)
        assert message


@EXAMPLES
@given(request=v2_request())
def test_generated_v2_json_requests(client: httpx.Client, request: dict[str, Any]) -> None:
    body = json.dumps(request).encode()
    assert_client_error_or_success(client.post("/v2/models/mlp/infer", content=body))


@EXAMPLES
@given(
    header=v2_request(),
    blob=st.binary(max_size=64),
    length=st.none()
    | st.integers(min_value=-5, max_value=400)
    | st.from_regex(r"[!-~]{0,5}", fullmatch=True),
)
def test_generated_binary_extension_requests(
    client: httpx.Client, header: dict[str, Any], blob: bytes, length: int | str | None
) -> None:
    """A header that may lie about its own length (None: the true one), then arbitrary bytes."""
    for tensor in header["inputs"] if isinstance(header["inputs"], list) else []:
        if isinstance(tensor, dict) and tensor.pop("data", None) is not None:
            tensor["parameters"] = {"binary_data_size": len(blob)}
    head = json.dumps(header).encode()
    headers = {"Inference-Header-Content-Length": str(len(head) if length is None else length)}
    response = client.post("/v2/models/mlp/infer", content=head + blob, headers=headers)
    assert_client_error_or_success(response)


@EXAMPLES
@given(instances=json_values, extra=st.dictionaries(st.text(max_size=6), json_values,
                                                     max_size=2))  # fmt: skip
def test_generated_v1_requests(client: httpx.Client, instances: Any, extra: dict[str, Any]) -> None:
    body = json.dumps({"instances": instances, **extra}).encode()
    assert_client_error_or_success(client.post("/v1/models/mlp:predict", content=body))


@EXAMPLES
@given(body=st.binary(max_size=200), content_type=st.sampled_from(
    ["application/json", "application/octet-stream", "text/plain", ""]))  # fmt: skip
def test_generated_garbage_bodies(client: httpx.Client, body: bytes, content_type: str) -> None:
    for path in ("/v2/models/mlp/infer", "/v1/models/mlp:predict"):
        response = client.post(path, content=body, headers={"Content-Type": content_type})
        assert_client_error_or_success(response)


def test_the_server_survived_every_generated_request(
    client: httpx.Client, mlp_server: servekit.Server
) -> None:
    """Runs after the generated tests (file order): still live, still right, no traceback."""
    assert mlp_server.process.poll() is None
    assert client.get("/v2/health/live").status_code == 200
    good = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                        "data": [1, 2, 3, 4]}]}  # fmt: skip
    assert client.post("/v2/models/mlp/infer", json=good).status_code == 200
    assert "Traceback" not in mlp_server.logs()
