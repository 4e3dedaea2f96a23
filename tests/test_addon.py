"""The addon alone: `mitmdump -s addons/inspector_addon.py` writes the same capture format."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

from conftest import ROOT, VENV_BIN, base_env, fake_key, flag_codes
from inspector.serialize import load_capture


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_addon_under_mitmdump_writes_a_capture(tmp_path, upstream, _confdir):
    gw = upstream()
    key = fake_key()
    out = tmp_path / "c.yaml"
    port = free_port()
    mitmdump = subprocess.Popen(
        [str(VENV_BIN / "mitmdump"), "-q", "-s", str(ROOT / "addons" / "inspector_addon.py"),
         "--listen-host", "127.0.0.1", "-p", str(port),
         "--set", f"confdir={_confdir}", "--set", "connection_strategy=lazy",
         "--set", f"inspector_base_url={gw.url}", "--set", f"inspector_output={out}",
         "--set", "inspector_offline=true"],
        env=base_env(ANTHROPIC_API_KEY=key), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            if out.exists():
                break
            time.sleep(0.1)
        proxy = f"http://127.0.0.1:{port}"
        for url in (f"{gw.url}/v1/models", "https://api.anthropic.com/api/hello"):
            subprocess.run(["curl", "-s", "--proxy", proxy, "--cacert", str(_confdir / "mitmproxy-ca-cert.pem"),
                            "-H", f"x-api-key: {key}", url], check=True, capture_output=True, timeout=30)
    finally:
        mitmdump.send_signal(signal.SIGINT)
        mitmdump.wait(timeout=30)
    cap = load_capture(out)
    assert cap.meta["complete"] is True and cap.meta["base_url"] == gw.url
    main, side = cap.flows
    assert main.status == 200 and main.request.header("x-api-key").startswith("<redacted sha256:")
    assert flag_codes(side) == {"off-base-host", "credential-leak"} and side.response.synthetic == "offline"
    assert key[-10:].encode() not in out.read_bytes()
