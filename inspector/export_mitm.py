"""`inspector report --format mitm`: a capture as a mitmproxy flow file that `mitmweb -r` opens.

The one module outside the capture layer that imports mitmproxy; report.py imports it only for
this format, so reports and diffs still work on YAML alone. The flows are rebuilt from the
capture model: redacted, with bodies re-serialised (see `body_note`), and with the flags in
each flow's comment and mark.
"""

from __future__ import annotations

import hashlib
import io as stdio
import uuid
from datetime import datetime

from mitmproxy import connection, http, io
from mitmproxy import flow as mflow
from mitmproxy.net import encoding
from mitmproxy.proxy.mode_specs import ProxyMode

from .model import SEVERITIES, Flow, Headers
from .redact import Redactor
from .report import body_bytes, redacted
from .serialize import Capture

MARKS = {"error": ":red_circle:", "warning": ":warning:", "info": ":information_source:"}
# Stable ids: exporting the same capture twice gives the same flows.
ID_NAMESPACE = uuid.UUID("7f0c3a52-3c1e-4f57-9d55-2d1f1f0e6a11")


def mitm_bytes(capture: Capture) -> bytes:
    """The capture as the bytes of a mitmproxy flow file."""
    out = stdio.BytesIO()
    writer = io.FlowWriter(out)
    for f in to_flows(capture):
        writer.add(f)
    return out.getvalue()


def to_flows(capture: Capture) -> list[http.HTTPFlow]:
    capture, rd = redacted(capture)
    base_url = capture.meta.get("base_url")
    return [to_flow(f, rd, base_url) for f in sorted(capture.flows, key=lambda f: (f.started_at, f.id))]


def to_flow(model: Flow, rd: Redactor, base_url: str | None) -> http.HTTPFlow:
    """One capture flow as a mitmproxy HTTPFlow, timestamps rebuilt from start, ttfb and duration."""
    t0 = datetime.fromisoformat(model.started_at).timestamp()
    end = t0 + (model.duration_ms or 0) / 1000

    def stable_id(kind: str) -> str:
        return str(uuid.uuid5(ID_NAMESPACE, f"{model.started_at} {model.id} {kind}"))

    mode = ProxyMode.parse(f"reverse:{base_url}") if model.via == "reverse" and base_url else ProxyMode.parse("regular")
    client = connection.Client(id=stable_id("client"), peername=("127.0.0.1", 0), sockname=("127.0.0.1", 0),
                               timestamp_start=t0, proxy_mode=mode)
    server = connection.Server(id=stable_id("server"), address=(model.request.host, model.request.port))
    f = http.HTTPFlow(client, server)
    f.id = stable_id("flow")
    f.timestamp_created = t0
    notes: list[str] = []

    r = model.request
    req = http.Request.make(r.method, rd.text(r.url))
    req.http_version = r.http_version or "HTTP/1.1"
    _fill(req, r.headers, r.body, rd, "request", notes)
    req.timestamp_start = req.timestamp_end = t0
    f.request = req

    if (s := model.response) is not None:
        resp = http.Response.make(s.status)
        resp.reason = s.reason
        resp.http_version = s.http_version or "HTTP/1.1"
        _fill(resp, s.headers, s.body, rd, "response", notes)
        resp.timestamp_start = t0 + (model.ttfb_ms or 0) / 1000
        resp.timestamp_end = end
        f.response = resp
        if s.synthetic:
            notes.append(f"response made by inspector ({s.synthetic} mode); the host was never contacted")
    elif model.error or model.incomplete:
        f.error = mflow.Error(rd.text(model.error or "the run ended before this flow finished"), end)

    flags = [f"[{x.severity} {x.code}] {x.message}" for x in model.flags]
    f.comment = rd.text("\n".join([f"inspector flow #{model.id}, via {model.via}"] + flags + notes))
    if model.flags:
        worst = max(model.flags, key=lambda x: SEVERITIES.index(x.severity) if x.severity in SEVERITIES else 0)
        f.marked = MARKS.get(worst.severity, ":default:")
    f.metadata["inspector"] = {"flow": model.id, "via": model.via, "incomplete": model.incomplete,
                               "flags": [{k: rd.text(v) for k, v in vars(x).items()} for x in model.flags]}
    return f


def _fill(message: http.Message, headers: Headers, body: dict | None, rd: Redactor, what: str,
          notes: list[str]) -> None:
    """Headers exactly as captured (order, duplicates, Content-Length), and the body bytes."""
    message.headers = http.Headers([(k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
                                    for k, v in headers])
    data = body_bytes(body, rd)
    if body and (note := body_note(body, data)):
        notes.append(f"{what} body {note}")
    if body and body.get("decoded_from"):
        try:  # compress again, so the Content-Encoding header still tells the truth
            data = encoding.encode(data, body["decoded_from"])
        except ValueError:
            del message.headers["content-encoding"]
    message.raw_content = data


def body_note(body: dict, data: bytes) -> str | None:
    """Why these bytes are not the bytes that were sent, if they are not."""
    if body.get("truncated"):
        return f"cut at the capture's body limit: {len(data):,} of {body['size']:,} bytes"
    if hashlib.sha256(data).hexdigest() != body.get("sha256"):
        return (f"rebuilt from the capture ({len(data):,} bytes; {body['size']:,} were sent): "
                "secrets redacted or JSON/SSE re-serialised")
    return None
