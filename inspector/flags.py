"""Flags: one small named rule per finding; each returns a Flag or None.

The rules read the redacted flow: a placeholder's `from=VAR` says which secret a value was,
so a leak can be found without keeping the secret. With --no-redact the raw values are
searched for instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .model import Flag, Flow, Origin, Response, is_loopback
from .redact import PLACEHOLDER

CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key")
EDGE_SERVERS = ("nginx", "cloudflare", "awselb", "akamai", "envoy", "haproxy", "squid", "varnish", "apache")


@dataclass
class RuleContext:
    base: Origin | None
    raw_secrets: dict[str, str] = field(default_factory=dict)  # only used when redaction is off


def who_answered(response: Response) -> str:
    """A short phrase naming the layer that produced a response, for humans and for diff."""
    if response.synthetic:
        return f"inspector itself ({response.synthetic} mode; the host was never contacted)"
    server = response.header("server")
    ctype = (response.header("content-type") or "").lower()
    body = response.body or {}
    if "html" in ctype:
        who = f"an HTML page from Server: {server}" if server else "an HTML page with no Server header"
        if mitigated := response.header("cf-mitigated"):
            who += f", cf-mitigated: {mitigated}"
        return who + " (a proxy, WAF or edge in front of the API, not the API itself)"
    data = body.get("json")
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        etype = data["error"].get("type") or "unknown"
        via = f" via {server!r}" if server else ""
        return f"a JSON error from the API{via} (error.type: {etype})"
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return f"a JSON error (error: {data['error'][:60]!r})"
    kind = f"a response ({ctype})" if ctype else "a response without a body type"
    return f"{kind} from Server: {server}" if server else kind


def _request_text(flow: Flow) -> str:
    r = flow.request
    return json.dumps([r.url, r.headers, r.body], default=str)


def flag_off_base_host(flow: Flow, ctx: RuleContext) -> Flag | None:
    r = flow.request
    if ctx.base is None or ctx.base.matches(r.scheme, r.host, r.port) or flow.via == "bypass":
        return None
    return Flag("off-base-host", "warning",
                f"Sent to {r.scheme}://{r.host}:{r.port}, not to the base URL {ctx.base.url}. "
                "A gateway never sees this call; if it must not leave the network, block it or set "
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1.")


def flag_missing_auth(flow: Flow, ctx: RuleContext) -> Flag | None:
    r = flow.request
    if ctx.base is None or not ctx.base.matches(r.scheme, r.host, r.port):
        return None
    if r.header("x-api-key") or r.header("authorization"):
        return None
    return Flag("missing-auth", "warning",
                f"{r.method} {r.path} to the base URL carries neither x-api-key nor Authorization. "
                "If the gateway needs a key here, check that ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN "
                "reaches this code path.")


def flag_credential_leak(flow: Flow, ctx: RuleContext) -> Flag | None:
    r = flow.request
    if ctx.base is None or ctx.base.matches(r.scheme, r.host, r.port):
        return None
    found = [f"header {name}" for name in CREDENTIAL_HEADERS if r.header(name)]
    text = _request_text(flow)
    sources = {m.group("src") for m in PLACEHOLDER.finditer(text) if m.group("src")}
    sources |= {name for value, name in ctx.raw_secrets.items() if value in text}
    found += [f"the value of {name}" for name in sorted(sources)]
    if not found:
        return None
    return Flag("credential-leak", "error",
                f"A credential went to {r.host}, which is not the base URL: {', '.join(found)}. "
                "Rotate that key if this host should not have it, and block or disable the call.")


def flag_auth_conflict(flow: Flow, ctx: RuleContext) -> Flag | None:
    r = flow.request
    bearer, api_key = r.header("authorization"), r.header("x-api-key")
    if not bearer or not api_key:
        return None
    token = bearer.split(" ", 1)[-1].strip()
    if token == api_key.strip():
        return None
    return Flag("auth-conflict", "warning",
                "Both Authorization and x-api-key are sent, with different values. Gateways pick one: "
                "LiteLLM reads Authorization first, then api-key, then x-api-key. Set only one of "
                "ANTHROPIC_AUTH_TOKEN and ANTHROPIC_API_KEY.")


def flag_http_error(flow: Flow, ctx: RuleContext) -> Flag | None:
    s = flow.response
    if s is None or s.status < 400 or s.synthetic:
        return None
    who = who_answered(s)
    if "HTML page" in who:
        advice = ("The request was stopped before it reached the API; compare this request's size, "
                  "user-agent, path and headers with one that works (inspector diff).")
    elif s.status in (401, 403, 407):
        advice = "Check which key is sent, in which header, and whether the gateway expects that header."
    else:
        advice = "Read the response body for the reason."
    severity = "error" if s.status >= 500 or s.status in (401, 403, 407) else "warning"
    return Flag("http-error", severity, f"HTTP {s.status}, answered by {who}. {advice}")


NO_RESPONSE_KINDS = [  # (words in the error, kind, advice)
    (("refused", "errno 111", "connect call failed"), "connection refused",
     "Nothing listens there: check the host and port."),
    (("name or service", "resolution", "resolve", "getaddrinfo", "nodename"), "DNS failure",
     "The host name did not resolve: check it, or this network's DNS."),
    (("tls", "ssl", "certificate", "handshake"), "TLS failure",
     "Check the server's certificate, or a proxy that intercepts TLS."),
    (("timeout", "timed out"), "timeout", "The server did not answer in time."),
]


def _tls_refused(flow: Flow) -> bool:
    return flow.request.method == "CONNECT" and (flow.error or "").startswith("client TLS handshake failed")


def flag_tls_untrusted(flow: Flow, ctx: RuleContext) -> Flag | None:
    if not _tls_refused(flow):
        return None
    return Flag("tls-untrusted", "error",
                f"The client refused inspector's certificate for {flow.request.host}, so none of its requests "
                "there could be recorded. Its runtime needs inspector's CA: NODE_EXTRA_CA_CERTS for Node and "
                "Bun, SSL_CERT_FILE or REQUESTS_CA_BUNDLE for Python, CURL_CA_BUNDLE for curl, "
                "--cacert for curl with its own CA file. A client that pins certificates cannot be recorded.")


def flag_bypass(flow: Flow, ctx: RuleContext) -> Flag | None:
    if flow.via != "bypass":
        return None
    r, proc = flow.request, flow.process or {}
    who = f"{proc.get('program', 'a process')} (pid {proc.get('pid', '?')})"
    severity = "warning" if is_loopback(r.host) else "error"
    return Flag("bypass", severity,
                f"{who} connected straight to {r.host}:{r.port}, around inspector's proxy, so this traffic "
                "is not in the capture. Node 20's fetch ignores HTTPS_PROXY, Go and Bun skip the proxy for "
                "loopback, and some clients hard-code hosts: point the client at the base URL or its proxy "
                "setting at inspector, or check NO_PROXY.")


def flag_no_response(flow: Flow, ctx: RuleContext) -> Flag | None:
    if flow.response is not None or not flow.error or _tls_refused(flow) or flow.via == "bypass":
        return None
    low = flow.error.lower()
    kind, advice = next(((k, a) for words, k, a in NO_RESPONSE_KINDS if any(w in low for w in words)),
                        ("connection closed", "The connection ended without a response."))
    return Flag("no-response", "error", f"No response ({kind}): {flow.error}. {advice}")


RULES: tuple[Callable[[Flow, RuleContext], Flag | None], ...] = (
    flag_off_base_host,
    flag_missing_auth,
    flag_credential_leak,
    flag_auth_conflict,
    flag_http_error,
    flag_no_response,
    flag_tls_untrusted,
    flag_bypass,
)


def flags_for(flow: Flow, ctx: RuleContext) -> list[Flag]:
    return [f for rule in RULES if (f := rule(flow, ctx))]


def summarize(flows: Iterable[Flow]) -> dict:
    """Counts by host, status and flag code."""
    return Summary.of(flows).as_dict()


class Summary:
    """Running counts, so a recorder can summarise without holding its flows."""

    def __init__(self):
        self.flows = 0
        self.by_host: dict[str, int] = {}
        self.by_status: dict[str, int] = {}
        self.by_flag: dict[str, int] = {}

    @classmethod
    def of(cls, flows: Iterable[Flow]) -> Summary:
        summary = cls()
        for flow in flows:
            summary.add(flow)
        return summary

    def add(self, flow: Flow) -> None:
        self.add_counts(f"{flow.request.host}:{flow.request.port}", flow.status, [f.code for f in flow.flags])

    def add_counts(self, host: str, status: int | None, flag_codes: list[str]) -> None:
        self.flows += 1
        self.by_host[host] = self.by_host.get(host, 0) + 1
        key = str(status) if status is not None else "none"
        self.by_status[key] = self.by_status.get(key, 0) + 1
        for code in flag_codes:
            self.by_flag[code] = self.by_flag.get(code, 0) + 1

    @property
    def flag_count(self) -> int:
        return sum(self.by_flag.values())

    def as_dict(self) -> dict:
        return {"flows": self.flows, "by_host": self.by_host, "by_status": self.by_status, "by_flag": self.by_flag}

    def line(self) -> str:
        hosts = ", ".join(f"{h} ×{n}" for h, n in self.by_host.items()) or "no hosts"
        flags = ", ".join(f"{c} ×{n}" for c, n in self.by_flag.items()) or "none"
        return f"{self.flows} flow{'' if self.flows == 1 else 's'} ({hosts}); flags: {flags}"
