"""Memory and descriptors under hostile clients: a closed connection's buffers are freed at
close, bodies held at once are bounded, and connections are capped with a clear refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import struct
import threading
import time
import weakref
from pathlib import Path

import httpx
import orjson
import pytest
import servekit

from modelserve.server import (
    Request,
    Respond,
    Response,
    ServerState,
    fit_descriptor_limit,
    serve,
)

INFER = b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
UPLOAD = 15_000_000


def rss_mb(pid: int) -> float:
    """The process's resident set size, from the kernel's own accounting."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def aborted_upload(port: int) -> None:
    """Declare 15 MB, send all but the last bytes, then reset the connection (SO_LINGER 0)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(INFER + b"Content-Length: " + str(UPLOAD).encode() + b"\r\n\r\n{")
        piece = b" " * (1 << 20)
        try:
            for _ in range(UPLOAD // len(piece) - 1):
                sock.sendall(piece)
        except OSError:
            pass  # refused (503, buffered bytes full) and closed under us: fine too


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_closed_connection_is_freed_at_close_without_the_gc(loop: str) -> None:
    """The protocol and its parser refer to each other; unless the server breaks that cycle
    when the connection closes, its half-received body waits for a full garbage collection.
    Checked on both event loops: the image runs uvloop, whose transports hold on differently."""
    run = asyncio.run if loop == "asyncio" else pytest.importorskip("uvloop").run

    def handler(request: Request, respond: Respond) -> Response:  # noqa: ARG001
        return Response(200, b"{}")

    async def scenario() -> bool:
        state = ServerState(handler, max_body_bytes=1 << 24, keepalive_timeout=5,
                            request_timeout=5)  # fmt: skip
        server = await serve(state, host="127.0.0.1", port=0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(INFER + b"Content-Length: 4000000\r\n\r\n" + b" " * 2_000_000)
        await writer.drain()
        while not state.connections:
            await asyncio.sleep(0.01)
        (conn,) = state.connections
        ref = weakref.ref(conn)
        del conn
        await asyncio.sleep(0.2)  # let the server read what was sent
        writer.close()
        await writer.wait_closed()
        while state.connections:
            await asyncio.sleep(0.01)
        for _ in range(5):
            await asyncio.sleep(0)
        alive = ref() is not None
        server.close()
        await server.wait_closed()
        return alive

    gc.disable()
    try:
        alive = run(scenario())
    finally:
        gc.enable()
    assert not alive, "the closed connection (and the body it had buffered) is still alive"


def test_aborted_uploads_do_not_grow_memory(model_dir: Path, log_dir: Path) -> None:
    """20 clients x 15 MB uploads reset before their end, 6 rounds: RSS stays bounded (before
    the fix it climbed from about 95 MB to over 1 GB, freed only by a full GC)."""
    server = servekit.start(model_dir / "mlp.onnx", log_dir=log_dir)
    try:
        pid = server.process.pid
        before = rss_mb(pid)
        after_each = []
        for _ in range(6):
            clients = [threading.Thread(target=aborted_upload, args=(server.port,))
                       for _ in range(20)]  # fmt: skip
            for client in clients:
                client.start()
            for client in clients:
                client.join(60)
            time.sleep(0.5)
            after_each.append(rss_mb(pid))
        assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    finally:
        server.stop()
    print(f"RSS before {before:.0f} MB, after each round {[round(m) for m in after_each]} MB")
    assert max(after_each) < before + 200, (before, after_each)
    assert after_each[-1] < after_each[0] + 100, (before, after_each)


def test_connections_over_the_cap_get_a_clear_503(model_dir: Path, log_dir: Path) -> None:
    server = servekit.start(model_dir / "mlp.onnx", "--max-connections", "4", log_dir=log_dir)
    live = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    held: list[socket.socket] = []
    try:
        for _ in range(4):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(live)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")  # accepted and counted
            held.append(sock)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
            extra.sendall(live)
            refused = b""
            while chunk := extra.recv(65536):
                refused += chunk
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:  # the freed slot serves the next client
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(live)
                if sock.recv(65536).startswith(b"HTTP/1.1 200 OK"):
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()
        server.stop()
    assert refused.startswith(b"HTTP/1.1 503 "), refused
    assert b"connection: close" in refused
    assert b"retry-after: 1" in refused
    assert b"too many connections" in refused
    assert "--max-connections" in server.logs()


def test_silent_connections_make_room_at_the_cap(model_dir: Path, log_dir: Path) -> None:
    """A slowloris that opens connections and sends nothing used to hold every slot until the
    keep-alive timeout (75 s by default), each real client refused 503 meanwhile. At the cap, a
    connection silent for a second since it opened is closed to make room for the new one."""
    server = servekit.start(model_dir / "mlp.onnx", "--max-connections", "4", log_dir=log_dir)
    live = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
    try:
        time.sleep(1.5)
        answers = []
        for _ in range(2):  # each kept open: each took a silent one's slot
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            silent.append(sock)  # closed with them
            sock.sendall(live)
            answers.append(sock.recv(65536))
        closed = 0
        for sock in silent[:4]:
            sock.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                closed += sock.recv(1) == b""
    finally:
        for sock in silent:
            sock.close()
        server.stop()
    assert all(answer.startswith(b"HTTP/1.1 200 OK") for answer in answers), answers
    assert closed == 2


def _budget_of_one_upload(model_dir: Path, log_dir: Path) -> tuple[servekit.Server, bytes, bytes]:
    """A server whose 1 MB buffer budget holds one 700 kB upload but not two, with the head and
    body of such an upload."""
    server = servekit.start(
        model_dir / "mlp.onnx", "--max-buffered-bytes", "1000000",
        "--max-body-bytes", "800000", log_dir=log_dir,
    )  # fmt: skip
    body = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                     "data": [1, 2, 3, 4]}], "id": "x" * 700_000})  # fmt: skip
    head = INFER + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    return server, head, body


def test_bodies_held_at_once_are_bounded(model_dir: Path, log_dir: Path) -> None:
    """Two uploads of 700 kB do not fit in 1 MB of buffers: the second is refused at its head
    with a 503 (retry shortly), and served once the first is done."""
    server, head, body = _budget_of_one_upload(model_dir, log_dir)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as first:
            first.sendall(head + body[:1000])
            time.sleep(0.3)
            second = httpx.post(f"{server.url}/v2/models/mlp/infer", content=body)
            first.sendall(body[1000:])
            answer = first.recv(65536)
        third = httpx.post(f"{server.url}/v2/models/mlp/infer", content=body)
    finally:
        server.stop()
    assert second.status_code == 503, second.text
    assert second.headers["retry-after"] == "1"
    assert "buffered" in second.json()["error"]
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]
    assert third.status_code == 200


def test_stalled_uploads_give_their_buffer_room_back(model_dir: Path, log_dir: Path) -> None:
    """Room in the buffer budget is taken at the head, by Content-Length. Sixteen connections
    that each sent a 100-byte head declaring 16 MB, and nothing more, used to hold all 256 MB
    of it: every inference request, even of 100 bytes, got 503 until --request-timeout (60 s),
    and again as the heads were renewed. When room is short, an upload arriving slower than
    64 KiB/s for over a second now gives its room back (answered 408)."""
    server, head, body = _budget_of_one_upload(model_dir, log_dir)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as stalled:
            stalled.sendall(head + body[:1000])
            time.sleep(1.5)
            served = httpx.post(f"{server.url}/v2/models/mlp/infer", content=body)
            evicted = stalled.recv(65536)
    finally:
        server.stop()
    assert served.status_code == 200, served.text
    assert evicted.startswith(b"HTTP/1.1 408 "), evicted[:200]
    assert b"too slowly" in evicted


def test_the_connection_cap_fits_the_descriptor_limit() -> None:
    """A cap the descriptor limit cannot hold (a connection and a lingering refusal each take a
    descriptor) is lowered to one it can; a small one stays as given."""
    import resource

    assert fit_descriptor_limit(4) == 4
    huge = 10**9
    fitted = fit_descriptor_limit(huge)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        assert fitted == huge
    else:
        assert 2 * fitted + 64 <= soft < huge
