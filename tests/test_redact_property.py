"""Redaction, proven: generated secrets in every kind of place, pushed through a real `record` run
and every output inspector writes; no 6-character piece survives, plain, URL-encoded or base64."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import INSPECTOR, base_env
from conftest import EchoSSE
from test_redact import assert_no_piece


class EchoBody(EchoSSE):
    """Streams the request body back as SSE data. Unlike EchoSSE it does not echo header values
    in prose: a secret no rule and no env var can know would be unredactable by definition."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode("latin-1")
        payload = f"event: echo\ndata: {json.dumps({'type': 'echo', 'body': body})}\n\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

PY = sys.executable
PLACEMENTS = ["x-api-key", "bearer", "custom-header", "query-named", "query-env", "json-nested", "json-named",
              "form", "userinfo", "cookie", "sse", "basic"]
PER_RUN = 100  # placements per record run; 10 runs make the 1,000 placements a CI run checks
RUNS = 10

# Letters outside a-f and no digits: no piece of a secret can turn up by chance in a sha256 or a number.
secret_text = st.text(alphabet="ghijkmnopqrstuvwxyzGHJKLMNPQRSTUVWXYZ", min_size=16, max_size=40)
placement = st.tuples(st.sampled_from(PLACEMENTS), secret_text, st.sampled_from(["", "sk-ant-fake-", "tok_"]))

CLIENT = r"""
import base64, json, os, sys, urllib.parse, urllib.request
base = os.environ["ANTHROPIC_BASE_URL"]
for kind, secret in json.load(open(sys.argv[1])):
    url, headers, body = base + "/v1/messages", {"content-type": "application/json"}, {"model": "m"}
    if kind == "x-api-key": headers["x-api-key"] = secret
    elif kind == "bearer": headers["authorization"] = "Bearer " + secret
    elif kind == "custom-header": headers["X-Gateway-Secret"] = secret
    elif kind == "query-named": url += "?access_token=" + urllib.parse.quote(secret)
    elif kind == "query-env": url += "?q=" + urllib.parse.quote(secret)
    elif kind == "json-nested": body = {"a": {"b": [{"c": "x " + secret + " y"}]}}
    elif kind == "json-named": body = {"metadata": {"api_key": secret}}
    elif kind == "userinfo": headers["x-upstream"] = "https://user:" + secret + "@gw.example/v1"
    elif kind == "cookie": headers["cookie"] = "sid=" + secret + "; theme=dark"
    elif kind == "basic": headers["authorization"] = "Basic " + base64.b64encode(b"user:" + secret.encode()).decode()
    elif kind == "sse": body = {"echo": secret}
    if kind == "form":
        data = urllib.parse.urlencode({"password": secret, "user": "bob"}).encode()
        headers["content-type"] = "application/x-www-form-urlencoded"
    else:
        data = json.dumps(body).encode()
    urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers)).read()
print("sent")
"""

# Secrets a user has in the environment: the redactor knows their values.
ENV_KNOWN = {"custom-header", "query-env", "json-nested", "sse"}


@pytest.fixture(scope="module")
def echo_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoBody)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def outputs(capture, other) -> bytes:
    """Every other thing inspector writes from a capture: check, diff and report in all formats."""
    commands = [["check", "--format", "text", capture], ["check", "--format", "json", capture]]
    commands += [["diff", "--format", f, "--bodies", "full", other, capture] for f in ("text", "markdown", "json")]
    commands += [["report", "--format", "markdown", capture], ["report", "--format", "har", "-o", "-", capture]]
    out = b""
    for args in commands:
        proc = subprocess.run([INSPECTOR, *args], capture_output=True, env=base_env())
        assert "Traceback" not in proc.stderr.decode(), (args, proc.stderr)
        out += proc.stdout + proc.stderr
    return out


@settings(max_examples=RUNS, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(placement, min_size=PER_RUN, max_size=PER_RUN))
def test_no_piece_of_a_generated_secret_survives_any_output(tmp_path_factory, echo_url, items):
    tmp = tmp_path_factory.mktemp("prop")
    plan = [(kind, prefix + core) for kind, core, prefix in items]
    env_known = [s for k, s in plan if k in ENV_KNOWN]
    env = base_env(ANTHROPIC_BASE_URL=echo_url,
                   ANTHROPIC_CUSTOM_HEADERS="\n".join(f"X-Gateway-Secret: {s}" for k, s in plan
                                                      if k == "custom-header"),
                   **{f"GEN_TOKEN_{i}": s for i, s in enumerate(env_known)})
    (tmp / "plan.json").write_text(json.dumps(plan))
    (tmp / "client.py").write_text(CLIENT)
    out = tmp / "c.yaml"
    proc = subprocess.run([INSPECTOR, "record", "--offline", "-o", str(out), "--", PY, str(tmp / "client.py"),
                           str(tmp / "plan.json")], env=env, capture_output=True, timeout=600)
    assert proc.stdout == b"sent\n", proc.stderr[-2000:]
    raw = out.read_bytes()
    assert raw.count(b'\n- {\n    "id": ') == PER_RUN
    secrets = [s.split("-")[-1] for _, s in plan]  # the random part; "sk-ant-fake" is not secret
    text = (raw + proc.stderr + outputs(str(out), str(out))).decode("utf-8", "replace")
    for secret in leaked_secrets(text, secrets):
        assert_no_piece(text, secret)  # fails with the place it leaked


def leaked_secrets(text: str, secrets: list[str]) -> list[str]:
    """Secrets with a 6-character piece in text, plain or URL-encoded (the same, for letters), or
    base64-encoded (8 characters: the encoding of 6). Compares window sets, to check 1,000 at once."""
    plain = _windows(text, r"[A-Za-z]{6,}", 6)
    b64 = _windows(text, r"[A-Za-z0-9+/_-]{8,}", 8)
    found = []
    for secret in secrets:
        pieces = {secret[i:i + 6] for i in range(len(secret) - 5)}
        encoded = {f[i:i + 8] for f in _b64_forms(secret) for i in range(len(f) - 7)}
        if pieces & plain or encoded & b64:
            found.append(secret)
    return found


def _windows(text: str, run_pattern: str, n: int) -> set[str]:
    return {run[i:i + n] for run in set(re.findall(run_pattern, text)) for i in range(len(run) - n + 1)}


def _b64_forms(secret: str) -> list[str]:
    forms = []
    for shift in range(3):
        forms.append(base64.b64encode(b"\0" * shift + secret.encode()).decode()[4:-4])
    return forms
