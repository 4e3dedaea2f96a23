"""A threaded HTTP server bound to 127.0.0.1, shared by `fake-upstream` and `serve`."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .model import InspectorError


class LoopbackServer:
    """`start()` runs it in a daemon thread, `serve_forever()` in the caller's."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int):
        try:
            self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as e:
            raise InspectorError(f"cannot listen on 127.0.0.1:{port}: {e.strerror}; pick another --port") from None
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self):
        threading.Thread(target=self.server.serve_forever, name=type(self).__name__, daemon=True).start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
