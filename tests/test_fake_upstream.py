"""`inspector fake-upstream`: an Anthropic-compatible server, run as the real command."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import INSPECTOR, base_env, fake_key


@pytest.fixture
def serve():
    procs = []

    def start(*args: str) -> str:
        proc = subprocess.Popen([INSPECTOR, "fake-upstream", "--port", "0", *args], stdout=subprocess.PIPE,
                                env=base_env(), text=True)
        procs.append(proc)
        line = proc.stdout.readline()
        assert "listening on" in line, line
        return line.split()[-1]

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def call(url, method="GET", body=None, **headers):
    req = urllib.request.Request(url, method=method, headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_endpoints(serve):
    url, key = serve(), fake_key()
    status, _, data = call(f"{url}/v1/messages", "POST", {"model": "m", "max_tokens": 5,
                                                          "messages": [{"role": "user", "content": "hi"}]},
                           **{"x-api-key": key})
    assert status == 200 and json.loads(data)["content"][0]["text"].startswith("Hello")
    status, headers, data = call(f"{url}/v1/messages", "POST", {"stream": True}, authorization=f"Bearer {key}")
    assert status == 200 and headers["content-type"] == "text/event-stream"
    assert data.decode().count("event: ") >= 7 and "event: message_stop" in data.decode()
    status, _, data = call(f"{url}/v1/messages/count_tokens?beta=true", "POST", {"messages": []},
                           **{"x-api-key": key})
    assert status == 200 and json.loads(data)["input_tokens"] > 0
    status, _, data = call(f"{url}/v1/models", **{"x-api-key": key})
    assert status == 200 and json.loads(data)["data"][0]["type"] == "model"
    assert call(url + "/", "HEAD")[0] == 200


def test_require_auth_and_key(serve):
    url, key = serve("--require-auth", "bearer", "--key", "right-key-123"), fake_key()
    status, _, data = call(f"{url}/v1/models", **{"x-api-key": "right-key-123"})
    assert status == 401 and "Authorization: Bearer" in json.loads(data)["error"]["message"]
    assert call(f"{url}/v1/models", authorization=f"Bearer {key}")[0] == 401
    assert call(f"{url}/v1/models", authorization="Bearer right-key-123")[0] == 200


def test_waf_blocks_large_bodies_with_nginx_html(serve):
    url = serve("--waf-max-body", "1k")
    status, headers, data = call(f"{url}/v1/messages", "POST", {"system": "x" * 2000}, **{"x-api-key": "k" * 10})
    assert status == 403 and headers["server"] == "nginx" and b"<center>nginx</center>" in data
    assert call(f"{url}/v1/messages", "POST", {"model": "m"}, **{"x-api-key": "k" * 10})[0] == 200


def test_port_in_use_is_one_line():
    proc = subprocess.Popen([INSPECTOR, "fake-upstream", "--port", "0"], stdout=subprocess.PIPE, text=True)
    port = proc.stdout.readline().rsplit(":", 1)[1].strip()
    try:
        second = subprocess.run([INSPECTOR, "fake-upstream", "--port", port], capture_output=True, text=True,
                                timeout=10)
        assert second.returncode == 2 and "pick another --port" in second.stderr and "Traceback" not in second.stderr
    finally:
        proc.terminate()
        proc.wait(10)
