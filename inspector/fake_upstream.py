"""`inspector fake-upstream`: a small Anthropic-compatible server for demos, tests and dry runs.

No tokens are spent and no key leaves the machine. It can also play a gateway with a WAF in
front (`waf_max_body`): bodies over the limit get nginx's HTML 403, as AWS WAF's 8 KB default does.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from .loopback import LoopbackServer

AUTH_MODES = ("any", "bearer", "x-api-key", "none")
REPLY = "Hello from the inspector fake upstream."
NGINX_403 = (b"<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n"
             b"<center><h1>403 Forbidden</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


@dataclass
class UpstreamConfig:
    port: int = 0
    require_auth: str = "any"
    key: str | None = None
    waf_max_body: int | None = None
    pause_after_first_event: float = 0.0


def _error(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "inspector-fake-upstream"
    disable_nagle_algorithm = True  # SSE events go out one by one; without it each waits ~40 ms for an ACK
    sys_version = ""
    config: UpstreamConfig

    def log_message(self, format, *args):  # keep the terminal for the program under test
        pass

    # ------------------------------------------------------------ plumbing

    def _send(self, status: int, body: bytes, ctype: str, server: str | None = None) -> None:
        self.send_response_only(status)
        self.send_header("Server", server or self.server_version)
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("request-id", f"req_fake_{uuid.uuid4().hex[:24]}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: dict) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _credential_error(self) -> str | None:
        mode = self.config.require_auth
        bearer = self.headers.get("authorization", "")
        token = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
        api_key = self.headers.get("x-api-key")
        offered = {"any": [token, api_key], "bearer": [token], "x-api-key": [api_key], "none": []}[mode]
        if mode == "none":
            return None
        offered = [c for c in offered if c]
        if not offered:
            header = {"any": "x-api-key or Authorization: Bearer", "bearer": "Authorization: Bearer"}.get(mode, mode)
            return f"missing credential: send {header}"
        if self.config.key and self.config.key not in offered:
            return "invalid x-api-key" if mode == "x-api-key" else "invalid credential"
        return None

    # ------------------------------------------------------------ routes

    def do_HEAD(self):
        self._send(200, b"", "text/plain")

    def do_GET(self):
        path = urlsplit(self.path).path
        if path.rstrip("/").endswith("/v1/models"):
            if err := self._credential_error():
                return self._json(401, _error("authentication_error", err))
            return self._json(200, {"data": [{"type": "model", "id": "claude-fake-1", "display_name": "Fake",
                                              "created_at": "2026-01-01T00:00:00Z"}],
                                    "has_more": False, "first_id": "claude-fake-1", "last_id": "claude-fake-1"})
        if path in ("", "/"):
            return self._send(200, b"ok", "text/plain")
        self._json(404, _error("not_found_error", f"no route for GET {path}"))

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path.rstrip("/")
        if self.config.waf_max_body is not None and len(raw) > self.config.waf_max_body:
            return self._send(403, NGINX_403, "text/html", server="nginx")
        if not path.endswith(("/v1/messages", "/v1/messages/count_tokens")):
            return self._json(404, _error("not_found_error", f"no route for POST {path}"))
        if err := self._credential_error():
            return self._json(401, _error("authentication_error", err))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._json(400, _error("invalid_request_error", "body is not JSON"))
        input_tokens = max(1, len(raw) // 4)
        if path.endswith("count_tokens"):
            return self._json(200, {"input_tokens": input_tokens})
        message = {
            "id": f"msg_fake_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": body.get("model", "claude-fake-1"), "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        }
        if body.get("stream"):
            return self._stream(message)
        message.update(content=[{"type": "text", "text": REPLY}], stop_reason="end_turn",
                       usage={"input_tokens": input_tokens, "output_tokens": 9})
        self._json(200, message)

    def _stream(self, message: dict) -> None:
        self.send_response_only(200)
        self.send_header("Server", self.server_version)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [
            ("message_start", {"type": "message_start", "message": message}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
            *[("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": word}})
              for word in REPLY.replace(" ", " \0").split("\0")],
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": 9}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        for i, (name, data) in enumerate(events):
            chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
            if i == 0 and self.config.pause_after_first_event:
                time.sleep(self.config.pause_after_first_event)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class FakeUpstream(LoopbackServer):
    def __init__(self, config: UpstreamConfig):
        if config.require_auth not in AUTH_MODES:
            raise ValueError(f"require_auth must be one of {AUTH_MODES}")
        super().__init__(type("Handler", (_Handler,), {"config": config}), config.port)
