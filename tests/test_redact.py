"""Redaction: the placeholder form, and no piece of a secret in the raw bytes of a real capture."""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap
from urllib.parse import quote

import pytest

from conftest import base_env, fake_key, random_part
from inspector.redact import Redactor, fingerprint, placeholder, secrets_from_env

PY = sys.executable


def pieces(secret: str, n: int = 6) -> set[str]:
    """Every n-character piece of a secret's random part, plain, URL-encoded and in base64."""
    core = secret.split("-")[-1]
    forms = {core, quote(core, safe="")}
    for shift in range(3):
        forms.add(base64.b64encode(b"\0" * shift + core.encode()).decode()[4:-4])
    return {f[i:i + n] for f in forms for i in range(len(f) - n + 1)}


def assert_no_piece(data: bytes | str, *secret_values: str) -> None:
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    for secret in secret_values:
        leaked = sorted(p for p in pieces(secret) if p in text)
        if leaked:
            at = text.index(leaked[0])
            pytest.fail(f"pieces of a secret survived: {leaked[:3]} in ...{text[max(0, at - 120):at + 40]!r}...")


def test_placeholder_keeps_scheme_fingerprint_and_source():
    token = fake_key()
    rd = Redactor({token: "ANTHROPIC_AUTH_TOKEN"})
    got = rd.header("Authorization", f"Bearer {token}")
    assert got == f"Bearer <redacted sha256:{fingerprint(token)} len={len(token)} from=ANTHROPIC_AUTH_TOKEN>"
    # Same secret, other header and other capture: same fingerprint, so diffs can say "same key".
    assert Redactor({token: "ANTHROPIC_AUTH_TOKEN"}).header("x-api-key", token).split("sha256:")[1][:8] == \
        fingerprint(token)


@pytest.mark.parametrize("name, value, expect", [
    ("Cookie", "session=abcdef123456; theme=dark", "session=<redacted sha256:"),
    ("Set-Cookie", "sid=abcdef123456; Path=/; HttpOnly", "; Path=/; HttpOnly"),
    ("Proxy-Authorization", "Basic dXNlcjpwYXNzd29yZDEyMw==", "Basic <redacted sha256:"),
    ("api-key", "plainvalue12345", "<redacted sha256:"),
    ("x-gateway-token", "tok_abcdefgh1234", "<redacted sha256:"),
])
def test_credential_headers_are_redacted_whoever_sends_them(name, value, expect):
    got = Redactor().header(name, value)
    assert expect in got
    assert "abcdef123456" not in got and "dXNlcjpw" not in got and "plainvalue" not in got and "tok_abc" not in got


def test_key_shapes_urls_and_json_fields_are_redacted_without_env():
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
    openai = "sk-" + random_part(40)
    text = f"keys {jwt} and {openai} and https://bob:hunter2secret@proxy.example:3128/x"
    got = Redactor().text(text)
    assert jwt[:20] not in got and openai[5:] not in got and "hunter2secret" not in got
    assert "https://bob:<redacted sha256:" in got
    assert Redactor().json({"api_key": "abcdefghijkl", "max_tokens": 64, "nested": [{"password": "p4ssw0rd!!"}]}) == {
        "api_key": placeholder("abcdefghijkl"), "max_tokens": 64, "nested": [{"password": placeholder("p4ssw0rd!!")}]}


def test_secrets_from_env_skips_counters_and_reads_custom_headers():
    env = {"ANTHROPIC_API_KEY": "sk-ant-fakeapi-aaaaaaaaaaaa", "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "32000",
           "MY_TOKEN": "short", "ANTHROPIC_CUSTOM_HEADERS": "X-Gw-Key: gwsecret123456\nX-Team: blue",
           "HTTPS_PROXY": "http://user:proxypass99@proxy:3128", "PATH": "/usr/bin"}
    assert secrets_from_env(env) == {"sk-ant-fakeapi-aaaaaaaaaaaa": "ANTHROPIC_API_KEY",
                                     "gwsecret123456": "ANTHROPIC_CUSTOM_HEADERS", "proxypass99": "HTTPS_PROXY"}


def test_disabled_redactor_changes_nothing():
    key = fake_key()
    rd = Redactor({key: "ANTHROPIC_API_KEY"}, enabled=False)
    assert rd.text(key) == key and rd.header("x-api-key", key) == key


def test_raw_capture_and_summary_hold_no_piece_of_any_secret(record, echo_server):
    api_key, token, custom, proxy_pw = fake_key(), fake_key("tok"), random_part(), random_part(20)
    jwt = "eyJ" + random_part(20) + "." + "eyJ" + random_part(30) + "." + random_part(30)
    env = base_env(ANTHROPIC_BASE_URL=echo_server, ANTHROPIC_API_KEY=api_key, ANTHROPIC_AUTH_TOKEN=token,
                   ANTHROPIC_CUSTOM_HEADERS=f"X-Gateway-Secret: {custom}",
                   PLAIN_VALUE=proxy_pw)  # a name no rule knows: only the places it is put in can hide it
    client = textwrap.dedent(f"""
        import base64, json, os, urllib.request, urllib.parse
        base = os.environ["ANTHROPIC_BASE_URL"]
        def send(url, data=None, **headers):
            req = urllib.request.Request(url, data=data, headers=headers)
            try:
                return urllib.request.urlopen(req).read()
            except Exception as e:
                return str(e).encode()
        body = {{"system": "hi", "metadata": {{"user": {{"deep": ["{api_key}", "x{token}y"]}}}},
                 "b64": base64.b64encode(b"key={api_key}").decode(), "jwt": "{jwt}"}}
        send(base + "/v1/messages?key={api_key}&q=" + urllib.parse.quote("{token}"), json.dumps(body).encode(),
             **{{"x-api-key": "{api_key}", "authorization": "Bearer {token}", "X-Gateway-Secret": "{custom}",
                "cookie": "sid={custom}; other=1"}})
        pw = os.environ["PLAIN_VALUE"]
        send(base + "/form", urllib.parse.urlencode({{"password": pw, "token": "{token}"}}).encode(),
             **{{"content-type": "application/x-www-form-urlencoded", "x-api-key": "{api_key}"}})
        basic = base64.b64encode(b"user:" + pw.encode()).decode()
        send("https://side.example/upload", b"\\x00\\x01{api_key}\\xff", **{{"authorization": "Basic " + basic}})
    """)
    run = record([PY, "-c", client, f"https://user:{proxy_pw}@host.example/"], env=env)
    assert run.proc.returncode == 0, run.proc.stderr
    flows = run.capture.flows
    assert len(flows) == 3 and flows[0].response.body["events"][0]["data"]["type"] == "echo"
    assert_no_piece(run.raw, api_key, token, custom, proxy_pw, jwt)
    assert_no_piece(run.proc.stdout + run.proc.stderr, api_key, token, custom, proxy_pw)
    # The placeholders still tell a reader which secret went where.
    raw = run.raw.decode()
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_CUSTOM_HEADERS"):
        assert f"from={var}>" in raw
    assert "credential-leak" in {f.code for f in flows[2].flags}


def test_check_output_holds_no_secret(record, echo_server):
    api_key = fake_key()
    run = record(["curl", "-s", "-H", f"x-api-key: {api_key}", "https://api.anthropic.com/v1/x"],
                 env=base_env(ANTHROPIC_BASE_URL=echo_server, ANTHROPIC_API_KEY=api_key))
    from conftest import INSPECTOR
    for fmt in ("text", "json"):
        out = subprocess.run([INSPECTOR, "check", "--format", fmt, str(run.capture_path)], capture_output=True)
        assert out.returncode == 1 and b"credential-leak" in out.stdout
        assert_no_piece(out.stdout + out.stderr, api_key)
