"""`inspector replay` and `inspector serve` end to end: real processes, servers on 127.0.0.1 only, no mocks.

`Gateway` is a gateway written here for the tests (also used by test_bisect.py): it forwards
nothing, answers 200 JSON, and blocks a request when its rule says so, counting what it received.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from inspector.redact import PLACEHOLDER, fingerprint, placeholder
from inspector.serialize import load_capture

from conftest import INSPECTOR, ROOT, base_env, fake_key, require_clients

PY = sys.executable
GOLDEN = ROOT / "tests" / "golden" / "captures"

# ---------------------------------------------------------------- the test gateway


@dataclass
class Seen:
    """A request as the gateway received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query, keep_blank_values=True)

    @property
    def betas(self) -> set[str]:
        return {v.strip() for v in self.headers.get("anthropic-beta", "").split(",") if v.strip()}


Answer = tuple[int, str, str, bytes]  # status, Server, Content-Type, body


def html_403(server: str = "nginx") -> Answer:
    page = f"<html><head><title>403 Forbidden</title></head><body><center>{server}</center></body></html>"
    return 403, server, "text/html", page.encode()


def api_error(status: int, kind: str) -> Answer:
    body = {"type": "error", "error": {"type": kind, "message": f"refused by the test gateway ({kind})"}}
    return status, "test-gateway", "application/json", json.dumps(body).encode()


class Gateway:
    """A gateway on 127.0.0.1 that forwards nothing: 200 JSON unless `rule` blocks, 401 without `key`."""

    def __init__(self, key: str, rule: Callable[[Seen], Answer | None] = lambda seen: None):
        self.key, self.rule = key, rule
        self.received: list[Seen] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                gateway.received.append(seen)
                status, server, ctype, data = gateway.answer(seen)
                self.send_response_only(status)
                for name, value in (("Server", server), ("Content-Type", ctype), ("Content-Length", str(len(data)))):
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_DELETE = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, seen: Seen) -> Answer:
        if blocked := self.rule(seen):
            return blocked
        bearer = seen.headers.get("authorization", "").removeprefix("Bearer ")
        if self.key not in (bearer, seen.headers.get("x-api-key")):
            return api_error(401, "authentication_error")
        return 200, "test-gateway", "application/json", b'{"type":"message","content":[]}'

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway():
    started: list[Gateway] = []

    def start(key: str, rule: Callable[[Seen], Answer | None] = lambda seen: None) -> Gateway:
        started.append(Gateway(key, rule))
        return started[-1]

    yield start
    for g in started:
        g.stop()


def demo_capture(name: str, out: Path, key: str) -> Path:
    """A demo capture (tests/golden/captures) whose redacted key is `key`, so replay can refill it."""
    text = (GOLDEN / f"{name}.yaml").read_text()
    out.write_text(PLACEHOLDER.sub(lambda m: placeholder(key, m.group("src")), text))
    return out


def inspector(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([INSPECTOR, *args], env=env or base_env(), capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- replay

CLIENT = textwrap.dedent("""
    import json, os, sys, urllib.request, urllib.error
    base, key = os.environ["ANTHROPIC_BASE_URL"], os.environ["ANTHROPIC_API_KEY"]
    def call(path, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, headers={"content-type": "application/json", **headers})
        try:
            with urllib.request.urlopen(req) as resp:
                resp.read()  # read every answer whole, so each is recorded whole
                return resp.status
        except urllib.error.HTTPError as e:
            e.read()
            return e.code
    ok = {"x-api-key": key}
    print(call("/v1/messages", {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, ok),
          call("/v1/messages?beta=true", {"model": "m", "stream": True}, ok),
          call("/v1/models", None, ok),
          call("/v1/messages", {"model": "m", "system": "x" * 9000}, ok),
          call("/v1/messages", {"model": "m"}, {}))
""")
RECORDED = ["POST /v1/messages recorded 200 → new 200", "POST /v1/messages?beta=true recorded 200 → new 200",
            "GET /v1/models recorded 200 → new 200", "POST /v1/messages recorded 403 → new 403",
            "POST /v1/messages recorded 401 → new 401"]


@pytest.fixture
def recorded_run(record, upstream, key):
    """A run of five calls against a fake upstream that wants `key` and has an 8 KB WAF."""
    gw = upstream(waf_max_body=8192, require_auth="x-api-key", key=key)
    run = record([PY, "-c", CLIENT], env=base_env(ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_API_KEY=key))
    assert run.proc.stdout.split() == [b"200", b"200", b"200", b"403", b"401"], run.proc.stderr
    return run


def test_replay_reproduces_the_recorded_statuses_with_the_key_refilled(recorded_run, upstream, key, tmp_path):
    fresh = upstream(waf_max_body=8192, require_auth="x-api-key", key=key)  # a wrong key would get 401
    out = tmp_path / "again.yaml"
    proc = inspector("replay", str(recorded_run.capture_path), "--target", fresh.url, "-o", str(out),
                     env=base_env(ANTHROPIC_API_KEY=key))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [*RECORDED, f"replay capture: {out}"]
    again = load_capture(out)
    assert [f.status for f in again.flows] == [200, 200, 200, 403, 401]
    assert again.flows[1].response.body["events"][-1]["event"] == "message_stop"
    assert again.meta["base_url"] == fresh.url and again.meta["complete"] is True
    assert again.flows[0].request.header("x-api-key") == placeholder(key, "ANTHROPIC_API_KEY")
    assert key[-12:] not in out.read_text()
    assert [f.code for f in again.flows[3].flags] == ["http-error"]


def test_replay_says_which_status_changed_and_exits_1(recorded_run, upstream, key):
    no_waf = upstream(require_auth="x-api-key", key=key)
    proc = inspector("replay", str(recorded_run.capture_path), "--target", no_waf.url, "--flows", "4",
                     env=base_env(ANTHROPIC_API_KEY=key))
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == ["POST /v1/messages recorded 403 → new 200"]


def test_replay_says_a_body_cut_at_capture_time_is_not_the_recorded_request(record, upstream, key):
    gw = upstream()
    script = ("import os, urllib.request; urllib.request.urlopen(urllib.request.Request("
              "os.environ['ANTHROPIC_BASE_URL'] + '/v1/messages', data=b'{\"system\": \"' + b'x' * 3000 + b'\"}', "
              "headers={'x-api-key': os.environ['ANTHROPIC_API_KEY']})).read()")
    run = record([PY, "-c", script], "--body-limit", "1k", env=base_env(ANTHROPIC_BASE_URL=gw.url,
                                                                       ANTHROPIC_API_KEY=key))
    assert run.capture.flows[0].request.body["truncated"], run.proc.stderr
    proc = inspector("replay", str(run.capture_path), "--target", upstream().url, env=base_env(ANTHROPIC_API_KEY=key))
    assert proc.returncode == 1
    assert proc.stdout.startswith("POST /v1/messages recorded 200 → new 400  (body was cut at capture time: "
                                  "sent 1,024 of 3,014 bytes, so this is not the recorded request")


def test_replay_without_the_key_names_the_variable_and_sends_nothing(gateway, key):
    gw = gateway(key)
    proc = inspector("replay", str(GOLDEN / "agent.yaml"), "--target", gw.url)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("inspector: error: no value for <redacted")
    assert "set ANTHROPIC_API_KEY" in proc.stderr and "nothing was sent" in proc.stderr
    wrong = inspector("replay", str(GOLDEN / "agent.yaml"), "--target", gw.url,
                      env=base_env(ANTHROPIC_API_KEY=fake_key()))  # another key: never sent in its place
    assert wrong.returncode == 2 and "ANTHROPIC_API_KEY holds another key" in wrong.stderr
    assert gw.received == []


def test_replay_auth_env_refills_by_fingerprint_or_by_explicit_choice(gateway, key, tmp_path):
    gw = gateway(key)
    agent = demo_capture("agent", tmp_path / "agent.yaml", key)
    by_fingerprint = inspector("replay", str(agent), "--target", gw.url, "--auth-env", "MY_KEY",
                               env=base_env(MY_KEY=key))
    assert by_fingerprint.stdout == "POST /v1/messages?beta=true recorded 403 → new 200\n", by_fingerprint.stderr
    other = fake_key()
    explicit = inspector("replay", str(GOLDEN / "agent.yaml"), "--target", gw.url, "--auth-env",
                         "ANTHROPIC_API_KEY=OTHER", env=base_env(OTHER=other))
    assert explicit.returncode == 1 and "new 401" in explicit.stdout  # the gateway wants `key`, not `other`
    assert [s.headers["x-api-key"] for s in gw.received] == [key, other]
    assert fingerprint(other) != "21dc32d9"


# ---------------------------------------------------------------- serve


class Served:
    """`inspector serve` as a process; stopped by its own pid."""

    def __init__(self, capture: Path, *args: str):
        self.proc = subprocess.Popen([INSPECTOR, "serve", str(capture), "--port", "0", *args], env=base_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith(f"serving {capture} on http://127.0.0.1:"), line + self.proc.stderr.read()
        self.url = line.split()[-1]

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return err


def fetch(url: str, body: dict | None = None) -> tuple[int, str, str]:
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data)) as resp:
            return resp.status, resp.headers.get("content-type", ""), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read().decode()


def test_serve_answers_in_recorded_order_streams_sse_and_explains_a_miss(recorded_run):
    served = Served(recorded_run.capture_path)
    try:
        messages = f"{served.url}/v1/messages"
        answers = [fetch(messages, {"any": "body"}) for _ in range(4)]
        streamed = fetch(f"{served.url}/v1/messages?beta=true", {})
        missed = fetch(f"{served.url}/v1/messages?beta=false", {})
    finally:
        log = served.stop()
    assert [a[0] for a in answers] == [200, 403, 401, 401]  # recorded order, then the last one again
    assert "Hello from the inspector fake upstream." in answers[0][2] and "nginx" in answers[1][2]
    assert streamed[0] == 200 and streamed[1] == "text/event-stream"
    events = [line.split(": ", 1)[1] for line in streamed[2].splitlines() if line.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert missed[0] == 404
    error = json.loads(missed[2])["error"]
    assert error["type"] == "inspector_no_match"
    assert "query: {'beta': 'false'} is not {'beta': 'true'}" in error["message"]
    assert "method:" not in error["message"] and "path:" not in error["message"]
    assert "POST /v1/messages?beta=false → 404" in log


def test_serve_rejects_an_unknown_match_field(recorded_run):
    proc = inspector("serve", str(recorded_run.capture_path), "--match-on", "method,colour")
    assert proc.returncode == 2 and "--match-on colour: no such field" in proc.stderr


def test_claude_code_pointed_at_serve_prints_the_recorded_403(record, upstream, key):
    require_clients()
    waf = upstream(waf_max_body=8192)
    env = base_env(ANTHROPIC_BASE_URL=waf.url, ANTHROPIC_API_KEY=key, CLAUDE_CODE_MAX_RETRIES="0")
    run = record(["claude", "-p", "hi"], env=env, timeout=120)
    assert b"API Error: 403" in run.proc.stdout and run.capture.meta["complete"]
    waf.stop()  # from here on only the capture answers
    served = Served(run.capture_path)
    try:
        # No proxy: Claude Code talks to serve directly; its side calls are switched off to stay on 127.0.0.1.
        claude = subprocess.run(["claude", "-p", "hi"], capture_output=True, timeout=120, env=base_env(
            ANTHROPIC_BASE_URL=served.url, ANTHROPIC_API_KEY=key, CLAUDE_CODE_MAX_RETRIES="0",
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1"))
    finally:
        log = served.stop()
    assert claude.returncode == run.capture.meta["exit_code"] != 0
    assert claude.stdout == run.proc.stdout  # the recorded error, word for word
    assert "POST /v1/messages?beta=true → 403" in log
