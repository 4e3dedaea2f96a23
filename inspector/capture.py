"""The capture stage: a mitmproxy addon that hands each finished flow to the writer process.

This is the only module that drives mitmproxy. It streams every response to the client as it
arrives, keeping a copy of the body on the side, answers non-loopback hosts itself in offline
mode, and copies each finished flow into plain data for the writer (`writer.py`), which turns
it into a redacted, flagged model Flow and appends it to the capture off the event loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path

from mitmproxy import ctx, exceptions, http, tls
from mitmproxy import version as mitmproxy_version
from mitmproxy.net.http import url
from mitmproxy.proxy import mode_specs

from . import __version__
from .flags import Summary
from .model import Flow, InspectorError, Origin, Request, is_loopback, iso, utc_now
from .redact import Redactor, is_secret_name, secrets_from_env
from .writer import WriterProcess, peak_rss_mb

DEFAULT_BODY_LIMIT = 1024 * 1024
SYNTHETIC_HEADER = "x-inspector-synthetic"


def default_output(command_name: str, directory: str | os.PathLike = "captures") -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(command_name).name) or "capture"
    return Path(directory) / f"{stamp}-{safe}.yaml"


class _Tee:
    """flow.response.stream callable: passes chunks on at once and keeps a bounded copy."""

    def __init__(self, keep: int):
        self.keep = keep
        self.chunks: list[bytes] = []
        self.kept = 0
        self.size = 0
        self.sha = hashlib.sha256()

    def __call__(self, data: bytes) -> bytes:
        if data:
            self.size += len(data)
            self.sha.update(data)
            if self.kept < self.keep:
                self.chunks.append(data[: self.keep - self.kept])
                self.kept += len(self.chunks[-1])
        return data

    def content(self) -> bytes:
        return b"".join(self.chunks)


class Recorder:
    """mitmproxy addon: records every flow into an inspector capture."""

    def __init__(self, env: Mapping[str, str] | None = None, meta: dict | None = None,
                 on_flow: Callable[[Summary], None] | None = None, command: list[str] | None = None):
        self.env = dict(os.environ if env is None else env)
        self.command = command  # the wrapped command line, redacted into meta
        self.meta = dict(meta or {})  # extra meta from the embedding command (command, exit code, ...)
        self.on_flow = on_flow  # called with the running summary after each flow is written
        self.summary = Summary()
        self.writer: WriterProcess | None = None
        self.failure: str | None = None  # why the capture could not be finished, if it could not
        self.base: Origin | None = None
        self.secrets: dict[str, str] = {}
        self.redactor = Redactor()
        self._open: dict[str, http.HTTPFlow] = {}
        self._seq = 0
        self._reverse_listeners: dict[int, mode_specs.ReverseMode] = {}
        self.late_flows: list[Flow] = []  # found outside mitmproxy (bypass detection); written at the end

    # ------------------------------------------------------------ options

    def load(self, loader):
        loader.add_option("inspector_base_url", str, "",
                          "The base URL the client is configured with (ANTHROPIC_BASE_URL); "
                          "requests elsewhere are flagged off-base-host.")
        loader.add_option("inspector_output", str, "",
                          "Capture file to write; default captures/<UTC timestamp>-mitmdump.yaml.")
        loader.add_option("inspector_offline", bool, False,
                          "Never dial hosts that are not loopback; answer them with a synthetic 502.")
        loader.add_option("inspector_body_limit", int, DEFAULT_BODY_LIMIT,
                          "Bodies larger than this many bytes are truncated (size and sha256 are kept).")
        loader.add_option("inspector_redact", bool, True,
                          "Redact secrets in the capture. Turning this off makes the capture unsafe to share.")

    def configure(self, updated):
        if "inspector_base_url" in updated:
            url = ctx.options.inspector_base_url or self.env.get("ANTHROPIC_BASE_URL", "")
            try:
                self.base = Origin.parse(url) if url else None
            except InspectorError as e:
                raise exceptions.OptionsError(str(e)) from None
        if "inspector_body_limit" in updated and ctx.options.inspector_body_limit < 0:
            raise exceptions.OptionsError("inspector_body_limit must be >= 0")
        if {"inspector_base_url", "inspector_redact"} & set(updated):
            self.secrets = secrets_from_env(self.env)
            self.redactor = Redactor(self.secrets, enabled=ctx.options.inspector_redact)

    def running(self):
        ps = ctx.master.addons.get("proxyserver")
        for server in ps.servers:
            if isinstance(server.mode, mode_specs.ReverseMode):
                for addr in server.listen_addrs:
                    self._reverse_listeners[addr[1]] = server.mode
        if self.writer is None:
            try:
                self.writer = WriterProcess({
                    "output": str(ctx.options.inspector_output or default_output("mitmdump")), "meta": self._meta(),
                    "secrets": self.secrets, "redact": ctx.options.inspector_redact,
                    "base_url": self.base.url if self.base else None, "body_limit": ctx.options.inspector_body_limit,
                }, self._counted)
            except InspectorError as e:
                self.failure = str(e)
                logging.error(f"inspector: {e}")
                ctx.master.shutdown()  # recording nothing would look like success

    def _meta(self) -> dict:
        rd = self.redactor
        relevant = {k: rd.secret(v) if is_secret_name(k) else rd.text(v)
                    for k, v in sorted(self.env.items()) if is_relevant_env(k)}
        meta = {
            "inspector_version": __version__,
            "mitmproxy_version": mitmproxy_version.VERSION,
            "command": rd.command(self.command) if self.command is not None else None,
            "started_at": utc_now(),
            "ended_at": None,
            "exit_code": None,
            "base_url": self.base.url if self.base else None,
            "offline": ctx.options.inspector_offline,
            "redacted": ctx.options.inspector_redact,
            "body_limit": ctx.options.inspector_body_limit,
            "no_proxy": self.env.get("NO_PROXY", self.env.get("no_proxy")),
            "env": relevant,
        }
        return meta | self.meta

    # ------------------------------------------------------------ hooks

    def requestheaders(self, flow: http.HTTPFlow):
        self._seq += 1
        flow.metadata["inspector_id"] = self._seq
        self._open[flow.id] = flow
        self._unloop_own_listener(flow)

    def _unloop_own_listener(self, flow: http.HTTPFlow) -> None:
        """A client may send requests for our reverse listener through our regular proxy
        (Claude Code does, with HTTP_PROXY set); proxied back into mitmproxy such a request
        hangs. Send it straight to the real base URL instead, and record it as such."""
        mode = flow.client_conn.proxy_mode
        target = self._reverse_listeners.get(flow.request.port)
        if target is None or isinstance(mode, mode_specs.ReverseMode) or not is_loopback(flow.request.host):
            return
        flow.request.scheme = "https" if target.scheme == "https" else "http"
        flow.request.host, flow.request.port = target.address
        flow.request.host_header = url.hostport(flow.request.scheme, *target.address)
        flow.metadata["inspector_via"] = "reverse"

    def request(self, flow: http.HTTPFlow):
        if ctx.options.inspector_offline and not is_loopback(flow.request.host) and flow.response is None:
            flow.response = http.Response.make(
                502,
                b'{"type":"error","error":{"type":"inspector_offline","message":"inspector --offline: '
                + flow.request.host.encode() + b' was not contacted"}}',
                {"content-type": "application/json", SYNTHETIC_HEADER: "offline"},
            )
            flow.metadata["inspector_synthetic"] = "offline"

    def responseheaders(self, flow: http.HTTPFlow):
        # Stream everything, so SSE events reach the client as they come; keep a copy to record.
        if flow.response is not None and not flow.response.stream and not flow.metadata.get("inspector_synthetic"):
            # Keep a little past the limit: secrets are scrubbed before the cut, so one that
            # crosses the limit is still seen whole and replaced.
            flow.response.stream = _Tee(ctx.options.inspector_body_limit + 4096)

    def response(self, flow: http.HTTPFlow):
        if flow.websocket is None:  # a WebSocket flow is finished when its connection ends
            self._finish(flow)

    def websocket_end(self, flow: http.HTTPFlow):
        self._finish(flow)

    def error(self, flow: http.HTTPFlow):
        self._finish(flow)

    def tls_failed_client(self, data: tls.TlsData):
        """The child refused our certificate: record the attempt, so the capture can say why."""
        host = data.conn.sni or (data.context.server.address or ("unknown", 0))[0]
        port = (data.context.server.address or (host, 443))[1]
        self._seq += 1
        request = Request("CONNECT", f"https://{host}:{port}", "https", host, port, "", {}, "", [])
        model = Flow(id=self._seq, started_at=iso(data.conn.timestamp_start or time.time()), request=request,
                     error=f"client TLS handshake failed: {data.conn.error or 'unknown error'}",
                     via="reverse" if isinstance(data.context.client.proxy_mode, mode_specs.ReverseMode) else "proxy")
        self._write(model)

    def done(self):
        for flow in list(self._open.values()):
            self._finish(flow, incomplete=True)
        for flow in self.late_flows:
            self._seq += 1
            flow.id = self._seq
            self._write(flow)
        if self.writer is not None:
            self.failure = self.writer.close(dict(self.meta, ended_at=utc_now(), peak_rss_mb=peak_rss_mb()))

    # ------------------------------------------------------------ conversion

    def _finish(self, flow: http.HTTPFlow, incomplete: bool = False) -> None:
        if self._open.pop(flow.id, None) is None or self.writer is None:
            return
        # A response that started but never ended (the run stopped, or a peer hung up mid-stream).
        incomplete = incomplete or (flow.response is not None and not flow.response.timestamp_end)
        self.writer.send("raw", snapshot(flow, incomplete))

    def _write(self, model: Flow) -> None:
        if self.writer is not None:
            self.writer.send("flow", model)

    def _counted(self, brief: dict) -> None:
        """The writer wrote a flow: count it where the status and summary lines read it."""
        self.summary.add_counts(brief["host"], brief["status"], brief["flags"])
        if self.on_flow:
            self.on_flow(self.summary)


def snapshot(flow: http.HTTPFlow, incomplete: bool) -> dict:
    """The flow as plain data, for `convert.to_flow` in the writer process: only copies, no parsing,
    so the event loop pays microseconds per flow."""
    req, resp = flow.request, flow.response
    if resp is not None and not (resp.timestamp_start or flow.metadata.get("inspector_synthetic")):
        resp = None  # mitmproxy's placeholder for a response that never came
    return {
        "id": flow.metadata.get("inspector_id", 0),
        "via": flow.metadata.get("inspector_via")
        or ("reverse" if isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode) else "proxy"),
        "synthetic": flow.metadata.get("inspector_synthetic"),
        "incomplete": incomplete,
        "finished_at": time.time(),
        "request": dict(_message(req), method=req.method, url=req.url, scheme=req.scheme, host=req.host,
                        port=req.port, path=req.path, query=list(req.query.items(multi=True)),
                        timestamp_start=req.timestamp_start),
        "response": resp and dict(_message(resp), status=resp.status_code, reason=resp.reason,
                                  timestamp_start=resp.timestamp_start, timestamp_end=resp.timestamp_end),
        "error": {"msg": flow.error.msg, "timestamp": flow.error.timestamp} if flow.error else None,
        "websocket": [{"from_client": m.from_client, "timestamp": m.timestamp, "is_text": m.is_text,
                       "content": m.content} for m in flow.websocket.messages] if flow.websocket else None,
    }


def _message(message: http.Message) -> dict:
    tee = message.stream if isinstance(message.stream, _Tee) else None
    return {
        "http_version": message.http_version,
        "headers": list(message.headers.items(multi=True)),
        "content_type": message.headers.get("content-type"),
        "content_encoding": message.headers.get("content-encoding"),
        "content": tee.content() if tee else (message.raw_content or b""),
        "size": tee.size if tee else None,
        "sha256": tee.sha.hexdigest() if tee else None,
        "whole": tee is None or tee.size <= tee.kept,  # a cut-off compressed body cannot be decoded
    }


RELEVANT_ENV_WORDS = ("PROXY", "ANTHROPIC", "CLAUDE", "KEY", "TOKEN", "SECRET", "PASSWORD", "CA_CERT",
                      "CA_BUNDLE", "SSL_CERT", "NODE_OPTIONS", "NODE_USE_ENV_PROXY")


def is_relevant_env(name: str) -> bool:
    """Env vars worth keeping in a capture's meta: proxy, auth, TLS trust and Anthropic settings."""
    upper = name.upper()
    return any(word in upper for word in RELEVANT_ENV_WORDS)
