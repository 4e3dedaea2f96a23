"""The capture model: plain dataclasses for recorded HTTP, with no mitmproxy in sight."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

Headers = list[tuple[str, str]]
SEVERITIES = ("info", "warning", "error")


def iso(ts: float) -> str:
    """A Unix time as ISO 8601 UTC with milliseconds, the form every capture time takes."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now() -> str:
    return iso(datetime.now(timezone.utc).timestamp())


class InspectorError(Exception):
    """An error the user can fix; its message is one line that says how."""

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        self.exit_code = exit_code  # None: the command's usual error code


@dataclass(frozen=True)
class Origin:
    """Where a base URL points: what a request must match to count as 'to the base URL'."""

    scheme: str
    host: str
    port: int
    path: str = ""

    @classmethod
    def parse(cls, url: str) -> Origin:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise InspectorError(f"base URL {url!r} is not a URL ({e}); use e.g. https://gateway.example") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InspectorError(f"base URL {url!r} is not an http(s) URL; use e.g. https://gateway.example")
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname.lower(), port or default, parts.path.rstrip("/"))

    @property
    def url(self) -> str:
        default = 443 if self.scheme == "https" else 80
        netloc = self.host if self.port == default else f"{self.host}:{self.port}"
        if ":" in self.host:
            netloc = f"[{self.host}]" if self.port == default else f"[{self.host}]:{self.port}"
        return f"{self.scheme}://{netloc}{self.path}"

    def matches(self, scheme: str, host: str, port: int) -> bool:
        return (scheme, host.lower(), port) == (self.scheme, self.host, self.port)


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Flag:
    code: str
    severity: str
    message: str


def header_value(headers: Headers, name: str) -> str | None:
    """The first value of a header, matched case-insensitively."""
    name = name.lower()
    return next((v for k, v in headers if k.lower() == name), None)


@dataclass
class Request:
    method: str
    url: str
    scheme: str
    host: str
    port: int
    path: str
    query: dict
    http_version: str
    headers: Headers
    body: dict | None = None

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)


@dataclass
class Response:
    status: int
    reason: str
    http_version: str
    headers: Headers
    body: dict | None = None
    synthetic: str | None = None  # why inspector answered instead of the server, e.g. "offline"

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)


@dataclass
class Flow:
    id: int
    started_at: str
    request: Request
    response: Response | None = None
    error: str | None = None
    duration_ms: float | None = None
    ttfb_ms: float | None = None
    via: str = "proxy"  # "proxy" (HTTP(S)_PROXY) or "reverse" (the base-URL listener)
    flags: list[Flag] = field(default_factory=list)
    incomplete: bool = False
    websocket: list[dict] | None = None  # messages, when the flow became a WebSocket
    process: dict | None = None  # {pid, program} of a connection that bypassed the proxy

    @property
    def status(self) -> int | None:
        return self.response.status if self.response else None


# ---------------------------------------------------------------- dict form


def _headers_out(headers: Headers) -> list[dict]:
    return [{k: v} for k, v in headers]


def _headers_in(items) -> Headers:
    return [(str(k), str(v)) for item in items or [] for k, v in item.items()]


def flow_to_dict(flow: Flow) -> dict:
    """The flow as it appears in a capture file, keys in reading order."""
    d: dict = {"id": flow.id, "started_at": flow.started_at,
               "duration_ms": flow.duration_ms, "ttfb_ms": flow.ttfb_ms, "via": flow.via}
    if flow.incomplete:
        d["incomplete"] = True
    d["flags"] = [vars(f) for f in flow.flags]
    r = flow.request
    d["request"] = {
        "method": r.method, "url": r.url, "scheme": r.scheme, "host": r.host, "port": r.port,
        "path": r.path, "query": r.query, "http_version": r.http_version,
        "headers": _headers_out(r.headers), "body": r.body,
    }
    if flow.response is None:
        d["response"] = None
    else:
        s = flow.response
        d["response"] = {"status": s.status, "reason": s.reason, "http_version": s.http_version,
                         "headers": _headers_out(s.headers), "body": s.body}
        if s.synthetic:
            d["response"]["synthetic"] = s.synthetic
    d["error"] = flow.error
    if flow.websocket is not None:
        d["websocket"] = flow.websocket
    if flow.process is not None:
        d["process"] = flow.process
    return d


def flow_from_dict(d: dict) -> Flow:
    r = d["request"]
    request = Request(
        method=r["method"], url=r["url"], scheme=r["scheme"], host=r["host"], port=int(r["port"]),
        path=r["path"], query=r.get("query") or {}, http_version=r.get("http_version", ""),
        headers=_headers_in(r.get("headers")), body=r.get("body"),
    )
    response = None
    if s := d.get("response"):
        response = Response(
            status=int(s["status"]), reason=s.get("reason", ""), http_version=s.get("http_version", ""),
            headers=_headers_in(s.get("headers")), body=s.get("body"), synthetic=s.get("synthetic"),
        )
    return Flow(
        id=d["id"], started_at=d["started_at"], request=request, response=response,
        error=d.get("error"), duration_ms=d.get("duration_ms"), ttfb_ms=d.get("ttfb_ms"),
        via=d.get("via", "proxy"), flags=[Flag(**f) for f in d.get("flags") or []],
        incomplete=bool(d.get("incomplete")), websocket=d.get("websocket"), process=d.get("process"),
    )


# ---------------------------------------------------------------- bodies


def _identity(s: str) -> str:
    return s


def make_body(
    data: bytes,
    content_type: str | None,
    limit: int,
    scrub: Callable[[str], str] = _identity,
    *,
    size: int | None = None,
    sha256: str | None = None,
    decoded_from: str | None = None,
) -> dict | None:
    """Turn a body into its capture form: JSON as a mapping, SSE as events, text, or base64.

    `data` may already be cut short; `size` and `sha256` then describe the whole body.
    Secrets are scrubbed before the cut, so no piece of one can straddle it.
    """
    if not data and not size:
        return None
    body: dict = {"size": len(data) if size is None else size,
                  "sha256": sha256 or hashlib.sha256(data).hexdigest()}
    if decoded_from:
        body["decoded_from"] = decoded_from
    truncated = body["size"] > limit or len(data) > limit
    ctype = (content_type or "").lower()
    text = _utf8(data, cut=truncated)
    if text is None:
        # latin-1 maps bytes to code points one to one, so scrubbing cannot corrupt the binary.
        kept = scrub(data.decode("latin-1")).encode("latin-1")[:limit]
        body["base64"] = base64.b64encode(kept).decode("ascii")
    else:
        text = scrub(text)
        if "event-stream" in ctype:
            body["events"] = parse_sse(text[:limit], drop_partial=truncated)
        elif not truncated and (parsed := _parse_json(ctype, text)) is not None:
            body["json"] = parsed
        elif not truncated and "x-www-form-urlencoded" in ctype:
            body["form"] = multi_dict(parse_qsl(text, keep_blank_values=True))
        else:
            body["text"] = text[:limit]
    if truncated:
        body["truncated"] = True
    return body


def _utf8(data: bytes, cut: bool) -> str | None:
    """The text of a UTF-8 body, or None if it is binary. A cut body may end inside a character."""
    for end in range(len(data), max(len(data) - 4, -1) if cut else len(data) - 1, -1):
        try:
            return data[:end].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def multi_dict(pairs) -> dict:
    """Query or form pairs as a mapping; a name given more than once maps to a list."""
    out: dict = {}
    for k, v in pairs:
        if k in out:
            out[k] = (out[k] if isinstance(out[k], list) else [out[k]]) + [v]
        else:
            out[k] = v
    return out


def _parse_json(ctype: str, text: str):
    """The parsed body when it is JSON (by content type or by its first character), else None."""
    if "json" not in ctype and text.lstrip()[:1] not in ("{", "["):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def parse_sse(text: str, drop_partial: bool = False) -> list[dict]:
    """Split a text/event-stream body into events; `data` is parsed as JSON when it is JSON."""
    blocks = re.split(r"\r?\n\r?\n", text)
    if drop_partial and blocks:
        blocks = blocks[:-1]
    events = []
    for block in blocks:
        event: dict = {}
        data = []
        for line in block.splitlines():
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name in ("event", "id", "retry"):
                event[name] = value
        if data:
            joined = "\n".join(data)
            try:
                event["data"] = json.loads(joined)
            except ValueError:
                event["data"] = joined
        if event:
            events.append(event)
    return events


def sse_bytes(events: list[dict]) -> bytes:
    """The wire form of stored SSE events (the inverse of parse_sse, up to whitespace)."""
    out = []
    for ev in events:
        lines = [f"{k}: {ev[k]}" for k in ("event", "id", "retry") if k in ev]
        if "data" in ev:
            data = ev["data"]
            text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
            lines += [f"data: {line}" for line in text.split("\n")]
        out.append("\n".join(lines) + "\n\n")
    return "".join(out).encode()
