"""`inspector serve`: an offline upstream that answers from a capture's recorded responses.

Matching follows vcrpy (vcr/matchers.py): one small function per field, each raising
AssertionError with the reason, so a request that matches nothing gets a 404 that says which
fields failed for the closest recorded request. Repeated matches are served in recorded order;
when they run out, the last one is served again. Binds 127.0.0.1 only; no mitmproxy here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from difflib import SequenceMatcher
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

from .loopback import LoopbackServer
from .model import Flow, InspectorError, Request, make_body, multi_dict, sse_bytes
from .redact import Redactor, secrets_from_env
from .report import body_bytes
from .serialize import Capture, load_capture

DEFAULT_MATCH_ON = ("method", "path", "query")
# Recorded response headers not replayed: the body is re-sent decoded, with its own framing.
UNSENT_HEADERS = frozenset({"connection", "proxy-connection", "keep-alive", "te", "trailer", "transfer-encoding",
                            "upgrade", "content-length", "content-encoding"})
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
BODY_LIMIT = 64 * 1024 * 1024
NO_REDACTION = Redactor(enabled=False)

# ---------------------------------------------------------------- matchers


def _path(r: Request) -> str:
    return r.path.split("?", 1)[0]


def match_method(recorded: Request, incoming: Request) -> None:
    assert recorded.method.upper() == incoming.method.upper(), f"{incoming.method} is not {recorded.method}"


def match_path(recorded: Request, incoming: Request) -> None:
    assert _path(recorded) == _path(incoming), f"{_path(incoming)} is not {_path(recorded)}"


def match_query(recorded: Request, incoming: Request) -> None:
    assert recorded.query == incoming.query, f"{incoming.query} is not {recorded.query}"


def match_host(recorded: Request, incoming: Request) -> None:
    host = (incoming.header("host") or "").rsplit(":", 1)[0].strip("[]").lower()
    assert host == recorded.host.lower(), f"{host} is not {recorded.host}"


def match_user_agent(recorded: Request, incoming: Request) -> None:
    ua, want = incoming.header("user-agent"), recorded.header("user-agent")
    assert ua == want, f"{ua!r} is not {want!r}"


def _betas(r: Request) -> set[str]:
    return {v.strip() for k, val in r.headers if k.lower() == "anthropic-beta" for v in val.split(",") if v.strip()}


def match_anthropic_beta(recorded: Request, incoming: Request) -> None:
    extra, missing = _betas(incoming) - _betas(recorded), _betas(recorded) - _betas(incoming)
    assert not (extra or missing), f"adds {sorted(extra)}, lacks {sorted(missing)}"


def match_body(recorded: Request, incoming: Request) -> None:
    """Equal parsed content (JSON, form, text), ignoring per-run ids and dates as `inspector diff` does."""
    from .diff import mask  # deepdiff comes with it; only this matcher needs it

    def content(r: Request) -> str:
        body = r.body or {}
        kind = next((k for k in ("json", "form", "events", "text", "base64") if k in body), None)
        return mask(json.dumps(body.get(kind), sort_keys=True, default=str)) if kind else ""

    a, b = content(recorded), content(incoming)
    assert a == b, f"{(incoming.body or {}).get('size', 0)} bytes that differ from the recorded " \
                   f"{(recorded.body or {}).get('size', 0)}"


Matcher = Callable[[Request, Request], None]
MATCHERS: dict[str, Matcher] = {
    "method": match_method, "path": match_path, "query": match_query, "host": match_host,
    "user_agent": match_user_agent, "anthropic_beta": match_anthropic_beta, "body": match_body,
}


def parse_match_on(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    names = [n.strip().replace("-", "_") for n in (spec.split(",") if isinstance(spec, str) else spec or ())]
    names = [n for n in names if n] or list(DEFAULT_MATCH_ON)
    if unknown := [n for n in names if n not in MATCHERS]:
        raise InspectorError(f"--match-on {', '.join(unknown)}: no such field; choose from {', '.join(MATCHERS)}")
    return tuple(names)


def failures(recorded: Request, incoming: Request, match_on: Sequence[str]) -> list[str]:
    """The reasons the incoming request does not match a recorded one; empty when it matches."""
    found = []
    for name in match_on:
        try:
            MATCHERS[name](recorded, incoming)
        except AssertionError as e:
            found.append(f"{name}: {e}")
    return found


# ---------------------------------------------------------------- choosing a response


class Recording:
    """The capture's answered flows and how often each was served; safe to share between threads."""

    def __init__(self, capture: Capture, match_on: Sequence[str] = DEFAULT_MATCH_ON):
        # inspector's own offline answers are not the server's, so they are never served.
        self.flows = [f for f in capture.flows if f.response is not None and not f.response.synthetic]
        self.match_on = tuple(match_on)
        self.served: dict[int, int] = {}
        self.lock = threading.Lock()

    def choose(self, incoming: Request) -> Flow | str:
        """The flow to answer with, or a sentence saying why none matches."""
        scored = [(failures(f.request, incoming, self.match_on), f) for f in self.flows]
        matching = [f for reasons, f in scored if not reasons]
        if matching:
            with self.lock:
                flow = next((f for f in matching if not self.served.get(id(f))), matching[-1])
                self.served[id(flow)] = self.served.get(id(flow), 0) + 1
            return flow
        asked = f"{incoming.method} {incoming.path}"
        if not scored:
            return f"no recorded request matches {asked}: the capture has no recorded responses"
        def distance(item: tuple[list[str], Flow]) -> tuple[int, float]:  # fewest failed fields, then most alike
            reasons, flow = item
            alike = SequenceMatcher(None, f"{flow.request.method} {flow.request.path}", asked).ratio()
            return len(reasons), -alike

        reasons, closest = min(scored, key=distance)
        return (f"no recorded request matches {asked} on {', '.join(self.match_on)}; the closest, flow "
                f"{closest.id} ({closest.request.method} {closest.request.path}), differs in {'; '.join(reasons)}")


def no_match_body(message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": "inspector_no_match", "message": message}}).encode()


# ---------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    recording: Recording
    redactor: Redactor
    log: Callable[[str], None] | None

    def log_message(self, format, *args):  # the log callback says what matters
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _incoming(self) -> Request:
        """The request in capture form, scrubbed like a recording so placeholders compare equal."""
        rd, raw = self.redactor, self._read_body()
        parts = urlsplit(self.path)
        host, port = self.server.server_address[:2]
        return Request(self.command, f"http://{host}:{port}{self.path}", "http", host, port, rd.text(self.path),
                       rd.query(multi_dict(parse_qsl(parts.query, keep_blank_values=True))),
                       self.request_version, rd.headers(list(self.headers.items())),
                       rd.body(make_body(raw, self.headers.get("content-type"), BODY_LIMIT, rd.text)))

    def _answer(self):
        incoming = self._incoming()
        chosen = self.recording.choose(incoming)
        if isinstance(chosen, str):
            self._log(f"{incoming.method} {incoming.path} → 404 ({chosen})")
            body = no_match_body(chosen)
            self.send_response_only(404)
            for name, value in (("Content-Type", "application/json"), ("Content-Length", str(len(body)))):
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body if self.command != "HEAD" else b"")
            return
        self._log(f"{incoming.method} {incoming.path} → {chosen.response.status} (flow {chosen.id})")
        self._replay(chosen)

    def _replay(self, flow: Flow) -> None:
        resp = flow.response
        body = resp.body or {}
        self.send_response_only(resp.status, resp.reason or None)
        for name, value in resp.headers:
            if name.lower() not in UNSENT_HEADERS:
                self.send_header(name, value)
        self.send_header("x-inspector-served", f"flow {flow.id}")
        if body.get("truncated"):
            self.send_header("x-inspector-note", "body cut at capture time; only its start is sent")
        if "events" in body and self.command != "HEAD":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for event in body["events"]:  # one chunk per event, flushed, in recorded order
                chunk = sse_bytes([event])
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        data = body_bytes(body, NO_REDACTION)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _log(self, line: str) -> None:
        if self.log:
            self.log(line)


for _method in METHODS:
    setattr(_Handler, f"do_{_method}", _Handler._answer)


class ServeCapture(LoopbackServer):
    def __init__(self, capture_path: str, port: int = 0, match_on: Sequence[str] = DEFAULT_MATCH_ON,
                 env: Mapping[str, str] | None = None, log: Callable[[str], None] | None = None):
        recording = Recording(load_capture(capture_path), match_on)
        handler = type("Handler", (_Handler,), {"recording": recording, "log": staticmethod(log) if log else None,
                                                 "redactor": Redactor(secrets_from_env(env or {}))})
        super().__init__(handler, port)
