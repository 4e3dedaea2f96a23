"""Bypass detection: TCP connections that skip inspector's listeners are flagged, with pid and program."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer

import pytest

from conftest import INSPECTOR, VENV_BIN, base_env, flag_codes
from inspector.fake_upstream import _Handler, UpstreamConfig
from inspector.serialize import load_capture

PY = sys.executable


@pytest.fixture
def side_server():
    """A server on 127.0.0.2: loopback, but not the base URL."""
    handler = type("H", (_Handler,), {"config": UpstreamConfig()})
    server = ThreadingHTTPServer(("127.0.0.2", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.2:{server.server_address[1]}"
    server.shutdown()


def bypasses(run) -> list:
    return [f for f in run.capture.flows if f.via == "bypass"]


def test_python_client_without_proxies_is_flagged(record, upstream):
    gw = upstream()
    script = ("import urllib.request as u; op = u.build_opener(u.ProxyHandler({})); "
              f"print(op.open('{gw.url}/v1/models').status)")
    run = record([PY, "-c", script], env=base_env(ANTHROPIC_BASE_URL=gw.url))
    assert run.capture.meta["bypass_detection"]["enabled"] is True
    (flow,) = bypasses(run)
    assert (flow.request.host, flow.request.port) == ("127.0.0.1", int(gw.url.rsplit(":", 1)[1]))
    assert flow.process["program"].startswith("python") and flow.process["pid"] > 0
    assert flag_codes(flow) == {"bypass"}
    assert "python" in flow.flags[0].message and "around inspector's proxy" in flow.flags[0].message


def test_node20_fetch_to_another_host_is_flagged(record, upstream, side_server):
    gw = upstream()
    script = f"fetch('{side_server}/').then(r => console.log(r.status))"
    run = record(["node", "-e", script], env=base_env(ANTHROPIC_BASE_URL=gw.url))
    assert run.proc.stdout.strip() == b"200", run.proc.stderr
    (flow,) = bypasses(run)
    assert flow.request.host == "127.0.0.2" and flow.process["program"] == "node"
    assert [f.request for f in run.capture.flows if f.via != "bypass"] == []  # the proxy saw nothing


def test_client_that_skips_the_proxy_for_loopback_is_flagged(record, upstream):
    gw = upstream()
    run = record(["curl", "-s", "-o", "/dev/null", "--noproxy", "127.0.0.1", f"{gw.url}/", "https://api.anthropic.com/"],
                 env=base_env(ANTHROPIC_BASE_URL=gw.url))
    by_via = {f.via: f for f in run.capture.flows}
    assert by_via["bypass"].process["program"] == "curl"
    assert by_via["proxy"].request.host == "api.anthropic.com"  # the other request did use the proxy


def test_without_strace_the_capture_says_detection_was_off(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("true", "curl"):
        os.symlink(subprocess.check_output(["which", tool], text=True).strip(), bin_dir / tool)
    env = base_env(PATH=f"{VENV_BIN}:{bin_dir}")
    out = tmp_path / "c.yaml"
    proc = subprocess.run([INSPECTOR, "record", "--offline", "-o", str(out), "--", "true"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert load_capture(out).meta["bypass_detection"] == {
        "enabled": False, "reason": "strace is not installed (apt-get install strace)"}
    proc = subprocess.run([INSPECTOR, "record", "--bypass-detection", "on", "--", "true"], env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 125 and "bypass detection is unavailable" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_background_process_left_behind_does_not_hold_up_the_recording(record):
    # strace keeps tracing the sleep; the recording must still end with the command.
    run = record(["sh", "-c", "sleep 30 >/dev/null 2>&1 & exit 3"], timeout=20)
    assert run.proc.returncode == 3 and run.capture.meta["complete"] is True
    assert run.capture.meta["bypass_detection"]["enabled"] is True
    subprocess.run(["pkill", "-f", "sleep 30"])
