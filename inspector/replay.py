"""`inspector replay`: send a capture's requests again, to another target, with the real credentials.

A capture holds placeholders, not keys. Each one is refilled from the env var its `from=` names,
or from an `--auth-env` variable, and only when the value's fingerprint is the recorded one, so a
wrong key is never sent. Every request is built before the first is sent: a missing credential
stops the run with nothing sent. HTTP is http.client; this module never imports mitmproxy.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from pathlib import Path
from typing import TextIO
from urllib.parse import parse_qsl, urlsplit

from . import __version__
from .diff import capture_origin, role_of
from .flags import RuleContext, flags_for
from .model import Flow, Headers, InspectorError, Origin, Request, Response, make_body, multi_dict
from .redact import PLACEHOLDER, Redactor, fingerprint, is_secret_name, secrets_from_env
from .report import body_bytes
from .serialize import CaptureWriter, load_capture

TIMEOUT = 120.0  # seconds per request; a streamed answer can take a while
BODY_LIMIT = 1024 * 1024
HOP_BY_HOP = frozenset({"connection", "proxy-connection", "keep-alive", "te", "trailer", "transfer-encoding",
                        "upgrade", "proxy-authenticate"})
NO_REDACTION = Redactor(enabled=False)


def _optional_decoder(module: str, make: Callable) -> Callable[[bytes], bytes] | None:
    try:
        return make(__import__(module))
    except ImportError:
        return None


# content-encoding -> how to undo it; brotli and zstandard are used when installed (mitmproxy needs both).
DECODERS: dict[str, Callable[[bytes], bytes] | None] = {
    "gzip": gzip.decompress, "x-gzip": gzip.decompress,
    "deflate": lambda data: zlib.decompress(data, -zlib.MAX_WBITS if data[:1] != b"\x78" else zlib.MAX_WBITS),
    "br": _optional_decoder("brotli", lambda m: m.decompress),
    "zstd": _optional_decoder("zstandard", lambda m: lambda data: m.ZstdDecompressor().decompressobj().decompress(data)),
}


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- credentials


class Credentials:
    """Finds the secret behind each placeholder: its `from=` variable, or an `--auth-env` one.

    `--auth-env VAR` offers VAR's value to every placeholder with the same fingerprint.
    `--auth-env SOURCE=VAR` sends VAR's value where the capture has a key from SOURCE,
    even another key than the recorded one: an explicit choice, never a guess.
    """

    def __init__(self, env: Mapping[str, str], auth_env: Sequence[str] = ()):
        self.env = env
        self.overrides: dict[str, str] = {}
        self.offered: list[str] = []
        for spec in auth_env:
            source, eq, var = spec.partition("=")
            if eq:
                self.overrides[source] = var
            else:
                self.offered.append(spec)
        for var in [*self.offered, *self.overrides.values()]:
            if not env.get(var):
                raise InspectorError(f"--auth-env names {var}, which is not set; export it, or drop the option")
        self.used: dict[str, str] = {}  # value -> the variable it came from, for redacting what comes back

    def value(self, placeholder: str) -> str:
        """The secret a placeholder stands for; InspectorError (saying what to set) when none is known."""
        m = PLACEHOLDER.search(placeholder)
        fp, length, source = m.group("fp"), int(m.group("len")), m.group("src")
        if source in self.overrides:
            return self._use(self.env[self.overrides[source]], self.overrides[source])
        for var in ([source] if source else []) + self.offered:
            value = self.env.get(var) or ""
            if fingerprint(value) == fp and len(value) == length:
                return self._use(value, var)
        raise InspectorError(self._missing(m.group(), fp, source))

    def _use(self, value: str, var: str) -> str:
        self.used.setdefault(value, var)
        return value

    def _missing(self, placeholder: str, fp: str, source: str | None) -> str:
        where = f"no value for {placeholder}"
        if source and self.env.get(source):
            return (f"{where}: {source} holds another key (sha256:{fingerprint(self.env[source])}); set it to the "
                    f"recorded key, or pass --auth-env {source}=VAR to send VAR's key instead; nothing was sent")
        if source:
            return (f"{where}: set {source} to the recorded key (sha256:{fp}), or name the variable that holds it "
                    "with --auth-env VAR; nothing was sent")
        return f"{where}: name the variable that holds it with --auth-env VAR; nothing was sent"

    def fill(self, text: str) -> str:
        return PLACEHOLDER.sub(lambda m: self.value(m.group()), text) if "<redacted " in text else text

    def fill_all(self, obj):
        """Every string in a parsed body (mapping, list, text) with its placeholders refilled."""
        if isinstance(obj, str):
            return self.fill(obj)
        if isinstance(obj, dict):
            return {k: self.fill_all(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.fill_all(v) for v in obj]
        return obj

    def redactor(self) -> Redactor:
        """Hides the current env's secrets and every key that was sent, in a capture written from this run."""
        return Redactor(secrets_from_env(self.env) | self.used)


# ---------------------------------------------------------------- requests


@dataclass
class Draft:
    """A request still in capture form: placeholders, a stored body, a path relative to the base URL."""

    method: str
    path: str  # with the query string
    headers: Headers
    body: dict | None


@dataclass
class Outgoing:
    """The request as it goes on the wire, credentials refilled."""

    method: str
    path: str
    headers: Headers
    body: bytes
    notes: list[str] = field(default_factory=list)  # why it is not byte for byte the recorded one


def draft_of(flow: Flow, origin: Origin | None) -> Draft:
    r = flow.request
    path = r.path
    if origin and origin.path and role_of(flow, origin) == "base" and path.startswith(origin.path):
        path = path[len(origin.path):] or "/"
    return Draft(r.method.upper(), path, list(r.headers), r.body)


def body_to_send(body: dict | None, creds: Credentials) -> tuple[bytes, list[str]]:
    """A stored body's bytes, placeholders refilled (JSON in the style whose sha256 was recorded)."""
    if not body:
        return b"", []
    if "base64" in body:  # latin-1 maps bytes to code points one to one, so refilling cannot corrupt them
        data = creds.fill(base64.b64decode(body["base64"]).decode("latin-1")).encode("latin-1")
    else:
        filled = {k: v if k == "sha256" else creds.fill_all(v) for k, v in body.items()}
        data = body_bytes(filled, NO_REDACTION)
    if body.get("truncated"):
        return data, [f"body was cut at capture time: sent {len(data):,} of {body.get('size', 0):,} bytes, "
                      "so this is not the recorded request; record it again with a larger --body-limit"]
    if body.get("sha256") and hashlib.sha256(data).hexdigest() != body["sha256"]:
        return data, ["body rebuilt from the capture is not byte-identical to the recorded one"]
    return data, []


def netloc(origin: Origin) -> str:
    return Origin(origin.scheme, origin.host, origin.port).url.split("://", 1)[1]


def build(draft: Draft, creds: Credentials, target: Origin) -> Outgoing:
    """The wire form of a draft for the target: Host and Content-Length its own, hop-by-hop headers dropped."""
    body, notes = body_to_send(draft.body, creds)
    if decoded_from := (draft.body or {}).get("decoded_from"):  # the capture keeps the decoded body
        notes.append(f"body sent decoded, without its recorded content-encoding: {decoded_from}")
    host = netloc(target)
    length = str(len(body)) if body or draft.method in ("POST", "PUT", "PATCH") else None
    out: Headers = []
    for name, value in draft.headers:
        low = name.lower()
        if low == "host":
            out.append((name, host))
        elif low == "content-length":
            if length is not None:
                out.append((name, length))
                length = None
        elif low not in HOP_BY_HOP and not (decoded_from and low == "content-encoding"):
            out.append((name, creds.fill(value)))
    if not any(k.lower() == "host" for k, _ in out):
        out.insert(0, ("Host", host))
    if length is not None:
        out.append(("Content-Length", length))
    return Outgoing(draft.method, target.path + creds.fill(draft.path), out, body, notes)


# ---------------------------------------------------------------- the wire


@dataclass
class Exchange:
    """What came back: a response, or the error that stood in for one."""

    status: int | None = None
    reason: str = ""
    http_version: str = "HTTP/1.1"
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    error: str | None = None
    ttfb_ms: float | None = None
    duration_ms: float | None = None

    def response(self, rd: Redactor = NO_REDACTION, limit: int = BODY_LIMIT) -> Response | None:
        """The answer as a model Response, its body decoded and (with a redactor) scrubbed."""
        if self.status is None:
            return None
        headers = dict((k.lower(), v) for k, v in self.headers)
        enc = headers.get("content-encoding", "").strip().lower()
        data, decoded_from = self.body, None
        if enc and enc != "identity" and (decode := DECODERS.get(enc)):
            try:
                data, decoded_from = decode(self.body), enc
            except Exception:  # a body that lies about its encoding is kept as it came
                pass
        body = make_body(data, headers.get("content-type"), limit, rd.text, decoded_from=decoded_from)
        return Response(self.status, self.reason, self.http_version, rd.headers(self.headers), rd.body(body))


def send(target: Origin, req: Outgoing, timeout: float = TIMEOUT) -> Exchange:
    """Send one request on a fresh connection; a target that cannot be reached at all is an InspectorError."""
    conn = (HTTPSConnection if target.scheme == "https" else HTTPConnection)(target.host, target.port, timeout=timeout)
    start = time.monotonic()

    def ms() -> float:
        return round((time.monotonic() - start) * 1000, 1)

    try:
        conn.connect()
    except OSError as e:
        raise InspectorError(f"cannot connect to {target.url}: {e.strerror or e}; is it running?") from None
    try:
        conn.putrequest(req.method, req.path, skip_host=True, skip_accept_encoding=True)
        for name, value in req.headers:
            conn.putheader(name, value.encode("utf-8", "surrogateescape"))
        conn.endheaders(req.body or None)
        resp = conn.getresponse()
        ttfb = ms()
        data = resp.read()
        return Exchange(resp.status, resp.reason, f"HTTP/{resp.version / 10:.1f}", resp.getheaders(), data,
                        ttfb_ms=ttfb, duration_ms=ms())
    except (OSError, HTTPException) as e:
        return Exchange(error=f"{type(e).__name__}: {e}", duration_ms=ms())
    finally:
        conn.close()


def replayed_flow(flow_id: int, started_at: str, target: Origin, req: Outgoing, ex: Exchange, rd: Redactor) -> Flow:
    """One replayed exchange as a capture flow: redacted and flagged like a recorded one."""
    root = Origin(target.scheme, target.host, target.port).url
    ctype = next((v for k, v in req.headers if k.lower() == "content-type"), None)
    query = urlsplit(req.path).query
    request = Request(req.method, rd.text(root + req.path), target.scheme, target.host, target.port,
                      rd.text(req.path), rd.query(multi_dict(parse_qsl(query, keep_blank_values=True))),
                      "HTTP/1.1", rd.headers(req.headers), rd.body(make_body(req.body, ctype, BODY_LIMIT, rd.text)))
    flow = Flow(flow_id, started_at, request, ex.response(rd), rd.text(ex.error) if ex.error else None,
                ex.duration_ms, ex.ttfb_ms, via="replay")
    flow.flags = flags_for(flow, RuleContext(base=target))
    return flow


# ---------------------------------------------------------------- the command


def parse_ids(spec: str | None) -> set[int] | None:
    """`3`, `1,4-6` -> flow ids; None means the default selection."""
    if not spec:
        return None
    ids: set[int] = set()
    try:
        for part in filter(None, (p.strip() for p in spec.split(","))):
            lo, _, hi = part.partition("-")
            ids.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise InspectorError(f"--flows {spec!r} is not a list of flow ids; use e.g. 3 or 1,4-6") from None
    return ids


def select_flows(flows: Iterable[Flow], origin: Origin | None, ids: set[int] | None) -> list[Flow]:
    flows = [f for f in flows if f.request.method.upper() != "CONNECT"]
    if ids is None:
        chosen = [f for f in flows if role_of(f, origin) == "base"]
        if not chosen:
            raise InspectorError("the capture has no call to its base URL; choose flows with --flows IDS")
        return chosen
    if unknown := sorted(ids - {f.id for f in flows}):
        known = ", ".join(str(f.id) for f in flows)
        raise InspectorError(f"no flow {', '.join(map(str, unknown))} in the capture; its flows are {known}")
    return [f for f in flows if f.id in ids]


def status_text(status: int | None, error: str | None = None) -> str:
    return str(status) if status is not None else f"no response ({error})" if error else "no response"


def replay(capture_path: str, target_url: str, flow_ids: str | None, auth_env: Sequence[str],
           env: Mapping[str, str], output: str | None, out: TextIO, command: Sequence[str] = ()) -> int:
    """Replay a capture's requests to the target; 0 when every status is the recorded one, 1 otherwise."""
    capture = load_capture(capture_path)
    target = Origin.parse(target_url)
    origin = capture_origin(capture)
    creds = Credentials(env, auth_env)
    flows = select_flows(capture.flows, origin, parse_ids(flow_ids))
    requests = [build(draft_of(f, origin), creds, target) for f in flows]  # all refilled before any is sent
    rd = creds.redactor()
    writer = CaptureWriter(output, replay_meta(capture_path, target, env, rd, command)) if output else None
    same = True
    try:
        for n, (flow, req) in enumerate(zip(flows, requests), 1):
            started = utc_now()
            ex = send(target, req)
            same &= ex.status == flow.status
            note = f"  ({'; '.join(req.notes)})" if req.notes else ""
            out.write(f"{flow.request.method.upper()} {flow.request.path} recorded {status_text(flow.status)} → "
                      f"new {status_text(ex.status, ex.error)}{note}\n")
            out.flush()
            if writer:
                writer.write(replayed_flow(n, started, target, req, ex, rd))
    finally:
        if writer:
            writer.close(ended_at=utc_now(), exit_code=0 if same else 1)
    if writer:
        out.write(f"replay capture: {output}\n")
    return 0 if same else 1


def replay_meta(capture_path: str, target: Origin, env: Mapping[str, str], rd: Redactor,
                command: Sequence[str]) -> dict:
    relevant = {k: rd.secret(v) if is_secret_name(k) else rd.text(v) for k, v in sorted(env.items())
                if k.upper().startswith(("ANTHROPIC_", "CLAUDE_")) or "PROXY" in k.upper()}
    return {"inspector_version": __version__, "mitmproxy_version": None, "command": rd.command(list(command)),
            "started_at": utc_now(), "ended_at": None, "exit_code": None, "base_url": target.url, "offline": False,
            "redacted": True, "body_limit": BODY_LIMIT, "no_proxy": env.get("NO_PROXY", env.get("no_proxy")),
            "env": relevant, "replay_of": str(Path(capture_path))}
