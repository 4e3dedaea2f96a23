"""Shared fixtures: real processes on 127.0.0.1, fake keys made per test, the pinned npm clients."""

from __future__ import annotations

import json
import os
import secrets
import string
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from inspector.fake_upstream import FakeUpstream, UpstreamConfig
from inspector.serialize import Capture, load_capture

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
INSPECTOR = str(VENV_BIN / "inspector")
CLIENTS = ROOT / ".cache" / "clients" / "node_modules"
CLAUDE = CLIENTS / ".bin" / "claude"

# Variables of the machine that would change what a child does; each test sets its own.
SCRUBBED_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy",
                "NO_PROXY", "no_proxy", "NODE_USE_ENV_PROXY", "NODE_OPTIONS")


ALNUM = string.ascii_letters + string.digits


def fake_key(kind: str = "api") -> str:
    """A key that looks fake and is new for every test: sk-ant-fake<kind>-<32 random letters and digits>.

    Not hex, so no piece of it can turn up by chance among the capture's sha256 digests."""
    return f"sk-ant-fake{kind}-{random_part()}"


def random_part(n: int = 32) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(n))


@pytest.fixture
def key() -> str:
    return fake_key()


@pytest.fixture(scope="session", autouse=True)
def _confdir(tmp_path_factory):
    """Every test run gets its own CA directory instead of the user's."""
    path = tmp_path_factory.mktemp("confdir")
    os.environ["INSPECTOR_CONFDIR"] = str(path)
    yield path


@pytest.fixture
def upstream():
    """Factory for fake upstreams on 127.0.0.1; all are stopped after the test."""
    started: list[FakeUpstream] = []

    def start(**kwargs) -> FakeUpstream:
        server = FakeUpstream(UpstreamConfig(**kwargs)).start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in SCRUBBED_ENV and not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    env["PATH"] = f"{VENV_BIN}:{CLIENTS / '.bin'}:{env.get('PATH', '')}"
    env["NODE_PATH"] = str(CLIENTS)
    env.update(extra)
    return env


@dataclass
class Run:
    proc: subprocess.CompletedProcess
    capture_path: Path

    @property
    def capture(self) -> Capture:
        return load_capture(self.capture_path)

    @property
    def raw(self) -> bytes:
        return self.capture_path.read_bytes()


@pytest.fixture
def record(tmp_path):
    """Run `inspector record --offline -o FILE [args] -- command` for real; returns a Run."""
    counter = iter(range(1000))

    def run(command: list[str], *args: str, env: dict | None = None, input: bytes | None = None,
            timeout: float = 120, offline: bool = True) -> Run:
        out = tmp_path / f"capture-{next(counter)}.yaml"
        argv = [INSPECTOR, "record", *(["--offline"] if offline else []), "-o", str(out), *args, "--", *command]
        proc = subprocess.run(argv, env=env or base_env(), input=input, capture_output=True,
                              timeout=timeout, cwd=tmp_path)
        return Run(proc, out)

    return run


def require_clients():
    if not CLAUDE.exists() or not (CLIENTS / "@anthropic-ai" / "sdk").exists():
        pytest.fail("the pinned npm clients are missing: run scripts/setup")


def flag_codes(flow) -> set[str]:
    return {f.code for f in flow.flags}


class EchoSSE(BaseHTTPRequestHandler):
    """Answers every request with SSE events that echo what it was sent, secrets included."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.do_POST()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode("latin-1")
        events = [{"type": "echo", "headers": dict(self.headers), "path": self.path, "body": body},
                  {"type": "note", "text": f"your key is {self.headers.get('x-api-key')}"}]
        payload = "".join(f"event: echo\ndata: {json.dumps(e)}\n\n" for e in events).encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("set-cookie", f"session={self.headers.get('x-api-key')}; Path=/")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def echo_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoSSE)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
