"""Snapshot → model: a finished flow, as the capture stage copied it off mitmproxy, made into a
redacted model Flow. This runs in the writer process, away from the proxy's event loop.

A snapshot is plain data (`capture.snapshot` makes it): the request and response as sent,
with their raw bodies, timestamps and how the flow reached us.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from mitmproxy.net import encoding  # gzip, deflate, br and zstd, as mitmproxy decodes them

from .model import Flow, Request, Response, iso, make_body, multi_dict
from .redact import Redactor


def to_flow(snap: dict, rd: Redactor, limit: int) -> Flow:
    req, resp = snap["request"], snap["response"]
    request = Request(
        method=req["method"],
        url=rd.text(req["url"]),
        scheme=req["scheme"],
        host=req["host"],
        port=req["port"],
        path=rd.text(req["path"]),
        query=rd.query(multi_dict(req["query"])),
        http_version=req["http_version"],
        headers=rd.headers(req["headers"]),
        body=rd.body(_body(req, limit, rd.text)),
    )
    response = None
    if resp is not None:
        response = Response(
            status=resp["status"],
            reason=resp["reason"],
            http_version=resp["http_version"],
            headers=rd.headers(resp["headers"]),
            body=rd.body(_body(resp, limit, rd.text)),
            synthetic=snap["synthetic"],
        )
    start, error = req["timestamp_start"], snap["error"]
    end = (resp and resp["timestamp_end"]) or (error and error["timestamp"]) or snap["finished_at"]
    return Flow(
        id=snap["id"],
        started_at=iso(start),
        request=request,
        response=response,
        error=rd.text(error["msg"]) if error else None,
        duration_ms=round((end - start) * 1000, 1),
        ttfb_ms=round((resp["timestamp_start"] - start) * 1000, 1) if resp and resp["timestamp_start"] else None,
        via=snap["via"],
        incomplete=snap["incomplete"],
        websocket=[_ws_message(m, rd.text) for m in snap["websocket"]] if snap["websocket"] is not None else None,
    )


def _ws_message(message: dict, scrub: Callable[[str], str]) -> dict:
    out = {"from": "client" if message["from_client"] else "server", "at": iso(message["timestamp"])}
    if message["is_text"]:
        out["text"] = scrub(message["content"].decode("utf-8", "replace"))
    else:
        out["base64"] = base64.b64encode(scrub(message["content"].decode("latin-1")).encode("latin-1")).decode()
    return out


def _body(message: dict, limit: int, scrub: Callable[[str], str]) -> dict | None:
    """The capture form of a request or response body, decoded when it was compressed."""
    raw, size, sha, whole = message["content"], message["size"], message["sha256"], message["whole"]
    enc = (message["content_encoding"] or "").strip().lower()
    decoded_from = None
    if enc and enc != "identity" and raw and whole:
        try:
            raw = encoding.decode(raw, enc)
            decoded_from, size, sha = enc, None, None
        except (ValueError, TypeError):
            pass
    return make_body(raw, message["content_type"], limit, scrub, size=size, sha256=sha, decoded_from=decoded_from)
