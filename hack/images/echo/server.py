"""Answer every GET with JSON naming the pod that answered (its hostname) and the path asked for.

python3 server.py [PORT]    # default 8080; SIGTERM stops it at once
"""

import json
import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {"host": socket.gethostname(), "path": self.path, "client": self.client_address[0]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.client_address[0]} {format % args}", flush=True)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("PORT", "8080"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer(("", port), Handler)
    print(f"echo: listening on :{port} as {socket.gethostname()}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
