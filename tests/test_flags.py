"""Flag rules: each code fires on the flow that earns it, and says what to try."""

from __future__ import annotations

import pytest

from inspector.flags import RuleContext, flags_for, who_answered
from inspector.model import Flow, Origin, Request, Response
from inspector.redact import placeholder

BASE = Origin.parse("https://gateway.example/anthropic")


def flow(url="https://gateway.example/anthropic/v1/messages", headers=(), status=200, resp_headers=(),
         body=None, error=None, synthetic=None, sent=None) -> Flow:
    scheme, rest = url.split("://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    req = Request("POST", url, scheme, host, int(port or (443 if scheme == "https" else 80)), "/" + path, {},
                  "HTTP/1.1", list(headers), sent)
    resp = None if status is None else Response(status, "", "HTTP/1.1", list(resp_headers), body, synthetic)
    return Flow(1, "2026-01-01T00:00:00.000Z", req, resp, error)


def codes(f: Flow, base=BASE) -> list[str]:
    return [x.code for x in flags_for(f, RuleContext(base))]


KEY = placeholder("sk-ant-fakeapi-abcdefghijklmnop", "ANTHROPIC_API_KEY")
OTHER = placeholder("sk-ant-faketok-qrstuvwxyzabcdef", "ANTHROPIC_AUTH_TOKEN")


@pytest.mark.parametrize("f, expected", [
    (flow(headers=[("x-api-key", KEY)]), []),
    (flow(headers=[]), ["missing-auth"]),
    (flow(url="https://gateway.example:8443/anthropic/v1/messages"), ["off-base-host"]),
    (flow(url="http://gateway.example/anthropic/v1/messages", headers=[("x-api-key", KEY)]),
     ["off-base-host", "credential-leak"]),
    (flow(url="https://api.anthropic.com/api/hello", headers=[("x-api-key", KEY)]), ["off-base-host", "credential-leak"]),
    (flow(url="https://api.anthropic.com/api/hello", sent={"json": {"k": KEY}}), ["off-base-host", "credential-leak"]),
    (flow(url="https://api.anthropic.com/api/hello", sent={"json": {"k": "nothing secret"}}), ["off-base-host"]),
    (flow(headers=[("authorization", f"Bearer {OTHER}"), ("x-api-key", KEY)]), ["auth-conflict"]),
    (flow(headers=[("authorization", f"Bearer {KEY}"), ("x-api-key", KEY)]), []),
    (flow(headers=[("x-api-key", KEY)], status=None, error="[Errno 111] Connect call failed"), ["no-response"]),
    (flow(headers=[("x-api-key", KEY)], status=404), ["http-error"]),
])
def test_each_rule_fires_on_its_flow(f, expected):
    assert codes(f) == expected


def test_credential_leak_names_header_and_env_var_also_in_the_body():
    f = flow(url="https://telemetry.example/batch", headers=[("x-api-key", KEY)])
    f.request.body = {"json": {"events": [{"token": OTHER}]}}
    (leak,) = [x for x in flags_for(f, RuleContext(BASE)) if x.code == "credential-leak"]
    assert leak.severity == "error"
    assert "header x-api-key" in leak.message and "ANTHROPIC_API_KEY" in leak.message
    assert "ANTHROPIC_AUTH_TOKEN" in leak.message


def test_credential_leak_without_redaction_matches_raw_values():
    raw = "sk-ant-fakeapi-abcdefghijklmnop"
    f = flow(url="https://telemetry.example/batch", sent={"text": f"k={raw}"})
    ctx = RuleContext(BASE, raw_secrets={raw: "ANTHROPIC_API_KEY"})
    assert "credential-leak" in [x.code for x in flags_for(f, ctx)]


def test_no_base_url_means_no_host_rules():
    assert codes(flow(url="https://anywhere.example/x"), base=None) == []


def test_http_error_says_who_answered():
    html = flow(headers=[("x-api-key", KEY)], status=403,
                resp_headers=[("Server", "cloudflare"), ("content-type", "text/html"), ("cf-mitigated", "challenge")])
    (f,) = flags_for(html, RuleContext(BASE))
    assert "Server: cloudflare" in f.message and "cf-mitigated: challenge" in f.message
    assert "not the API itself" in f.message and f.severity == "error"
    api = flow(headers=[("x-api-key", KEY)], status=401, resp_headers=[("content-type", "application/json")],
               body={"json": {"type": "error", "error": {"type": "authentication_error", "message": "bad"}}})
    (f,) = flags_for(api, RuleContext(BASE))
    assert "error.type: authentication_error" in f.message


def test_synthetic_offline_answer_is_not_an_http_error():
    f = flow(url="https://api.anthropic.com/x", status=502, synthetic="offline")
    assert codes(f) == ["off-base-host"]
    assert "never contacted" in who_answered(f.response)
