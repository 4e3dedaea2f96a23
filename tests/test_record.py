"""`inspector record` end to end: real clients, the real embedded mitmproxy, servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml

from inspector.serialize import load_capture

import pytest

from conftest import INSPECTOR, ROOT, base_env, fake_key, flag_codes, require_clients

PY = sys.executable


def wait_for(probe, timeout: float = 10):
    """Poll until probe() is truthy (the writer runs in the proxy's thread) and return its value."""
    deadline = time.monotonic() + timeout
    while not (value := probe()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_curl_through_proxy_to_base_and_offline_host(record, upstream, key):
    gw = upstream()
    script = (f'curl -s "$ANTHROPIC_BASE_URL/v1/messages" -H "x-api-key: {key}" -d \'{{"model":"m"}}\'; echo; '
              f'curl -s https://api.anthropic.com/api/hello -H "x-api-key: {key}"')
    run = record(["sh", "-c", script], env=base_env(ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_API_KEY=key))
    assert run.proc.returncode == 0, run.proc.stderr
    assert b"Hello from the inspector fake upstream." in run.proc.stdout
    assert b"inspector_offline" in run.proc.stdout  # the synthetic answer reached curl through TLS
    main, side = run.capture.flows
    assert main.request.url == f"{gw.url}/v1/messages" and main.status == 200
    assert main.request.body["json"] == {"model": "m"}
    assert main.flags == []
    assert side.request.url == "https://api.anthropic.com/api/hello"
    assert side.response.status == 502 and side.response.synthetic == "offline"
    assert flag_codes(side) == {"off-base-host", "credential-leak"}
    assert b"inspector: 2 flows" in run.proc.stderr and str(run.capture_path).encode() in run.proc.stderr


def test_python_urllib_through_proxy_unreachable_host_is_recorded_in_full(record, upstream, key):
    gw = upstream()
    script = textwrap.dedent(f"""
        import json, os, urllib.request, urllib.error
        req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages?beta=true",
            data=json.dumps({{"model": "m", "max_tokens": 5}}).encode(),
            headers={{"authorization": "Bearer {key}", "content-type": "application/json"}})
        print(urllib.request.urlopen(req).status)
        try:
            urllib.request.urlopen(urllib.request.Request("https://unreachable.invalid/upload", data=b"\\x00\\xffbinary"))
        except urllib.error.HTTPError as e:
            print(e.code)
    """)
    run = record([PY, "-c", script], env=base_env(ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_AUTH_TOKEN=key))
    assert run.proc.stdout.split() == [b"200", b"502"], run.proc.stderr
    main, far = run.capture.flows
    assert main.request.query == {"beta": "true"} and main.request.path == "/v1/messages?beta=true"
    assert main.request.header("authorization").startswith("Bearer <redacted sha256:")
    assert "from=ANTHROPIC_AUTH_TOKEN" in main.request.header("authorization")
    assert far.request.method == "POST" and far.request.host == "unreachable.invalid"
    assert far.request.body["base64"] == "AP9iaW5hcnk="


def test_unreachable_host_online_is_recorded_with_its_error(record):
    """Without --offline, lazy connections still keep the request; the failure is its error."""
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    run = record(["curl", "-s", "-H", "x-test: kept", f"http://127.0.0.1:{closed_port}/nothing-here"],
                 offline=False, env=base_env(ANTHROPIC_BASE_URL=f"http://127.0.0.1:{closed_port}"))
    (flow,) = run.capture.flows
    assert flow.response is None
    assert flow.request.header("x-test") == "kept"
    assert "111" in flow.error
    assert [f.message.split(":")[0] for f in flow.flags if f.code == "no-response"] == [
        "No response (connection refused)"]


def test_node20_sdk_is_captured_through_the_reverse_listener(record, upstream, key):
    require_clients()
    gw = upstream()
    run = record(["node", str(ROOT / "demo" / "sdk-hello.cjs"), "--stream"],
                 env=base_env(ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_API_KEY=key), timeout=60)
    assert run.proc.returncode == 0, run.proc.stderr
    assert b"Hello from the inspector fake upstream." in run.proc.stdout
    (flow,) = run.capture.flows
    assert flow.via == "reverse"
    assert flow.request.url == f"{gw.url}/v1/messages"  # the real base URL, not the listener
    assert flow.request.header("user-agent") == "Anthropic/JS 1.17.0"
    assert [e["event"] for e in flow.response.body["events"]][-1] == "message_stop"


def test_claude_code_side_calls_are_flagged_and_the_key_leak_is_named(record, upstream, key):
    require_clients()
    gw = upstream(waf_max_body=8192)
    env = base_env(ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_API_KEY=key, CLAUDE_CODE_MAX_RETRIES="0")
    run = record(["claude", "-p", "hi"], env=env, timeout=120)
    assert b"403" in run.proc.stdout + run.proc.stderr  # Claude Code shows the gateway's answer
    assert run.proc.returncode == run.capture.meta["exit_code"] != 0
    flows = run.capture.flows
    main = [f for f in flows if f.request.host == "127.0.0.1"]
    side = [f for f in flows if f.request.host == "api.anthropic.com"]
    assert main and main[0].request.path == "/v1/messages?beta=true" and main[0].status == 403
    assert "Server: nginx" in next(f.message for f in main[0].flags if f.code == "http-error")
    assert len(side) >= 3, [f.request.path for f in flows]
    assert all("off-base-host" in flag_codes(f) for f in side)
    leaks = [f for f in side if "credential-leak" in flag_codes(f)]
    assert leaks and all("ANTHROPIC_API_KEY" in f.request.header("x-api-key") for f in leaks)
    assert key[-12:].encode() not in run.raw


def test_claude_code_with_auth_token_sends_no_credential_to_side_hosts(record, upstream, key):
    require_clients()
    gw = upstream()
    env = base_env(ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_AUTH_TOKEN=key, CLAUDE_CODE_MAX_RETRIES="0")
    run = record(["claude", "-p", "hi"], env=env, timeout=120)
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    assert b"Hello from the inspector fake upstream." in run.proc.stdout
    side = [f for f in run.capture.flows if f.request.host == "api.anthropic.com"]
    assert side and not any("credential-leak" in flag_codes(f) for f in side)


SSE_CLIENT = textwrap.dedent("""
    import os, sys, time, urllib.request
    req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages",
                                 data=b'{"stream": true}', headers={"x-api-key": sys.argv[1]})
    seen = []
    with urllib.request.urlopen(req) as resp:
        for line in resp:
            if line.startswith(b"event:"):
                seen.append((time.monotonic(), line.split()[1].decode()))
    first, rest = seen[0], seen[1:]
    print(first[1], round(rest[0][0] - first[0], 2), len(seen))
""")


def test_sse_events_reach_the_client_as_they_come_and_the_capture_keeps_all(record, upstream, key):
    gw = upstream(pause_after_first_event=2.0)
    run = record([PY, "-c", SSE_CLIENT, key], env=base_env(ANTHROPIC_BASE_URL=gw.url))
    name, gap, count = run.proc.stdout.split()
    # Buffered, every event would arrive together after the pause; streamed, the first one
    # arrives at once and the client then waits out the upstream's 2 s pause.
    assert name == b"message_start" and float(gap) >= 1.5, run.proc.stdout
    (flow,) = run.capture.flows
    events = flow.response.body["events"]
    assert len(events) == int(count) and events[-1]["event"] == "message_stop"
    assert events[0]["data"]["message"]["role"] == "assistant"  # data parsed as JSON


def test_stdin_stdout_and_exit_code_pass_through(record):
    run = record(["sh", "-c", "cat; echo to-stderr >&2; exit 7"], input=b"line one\nline two\n")
    assert run.proc.returncode == 7
    assert run.proc.stdout == b"line one\nline two\n"
    assert run.proc.stderr.startswith(b"to-stderr\n")
    assert run.capture.meta["exit_code"] == 7 and run.capture.meta["complete"] is True


def test_default_output_is_captures_timestamp_command(tmp_path):
    proc = subprocess.run([INSPECTOR, "record", "--offline", "--", "true"], cwd=tmp_path, env=base_env(),
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp_path / "captures").glob("*.yaml")
    assert path.name.endswith("Z-true.yaml") and path.name[:8].isdigit()
    assert path.stat().st_mode & 0o777 == 0o600


def test_sigint_during_a_long_child_leaves_a_valid_capture(tmp_path, upstream, key):
    gw = upstream()
    out = tmp_path / "c.yaml"
    script = textwrap.dedent(f"""
        import os, time, urllib.request
        urllib.request.urlopen(urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/models",
                               headers={{"x-api-key": "{key}"}})).read()
        print("requested", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([INSPECTOR, "record", "--offline", "-o", str(out), "--", PY, "-c", script],
                            env=base_env(ANTHROPIC_BASE_URL=gw.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"requested\n"
    # The flow is on disk before the recording ends.
    assert wait_for(lambda: yaml.safe_load(out.read_text())["flows"])[0]["request"]["path"] == "/v1/models"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert proc.returncode == 128 + signal.SIGINT  # the child died of the forwarded SIGINT
    cap = load_capture(out)
    assert cap.meta["complete"] is True and cap.meta["exit_code"] == 130
    assert [f.request.path for f in cap.flows] == ["/v1/models"] and cap.summary["flows"] == 1


def test_status_line_on_a_terminal(tmp_path, upstream):
    gw = upstream()
    master, slave = pty.openpty()
    proc = subprocess.Popen([INSPECTOR, "record", "--offline", "-o", str(tmp_path / "c.yaml"), "--",
                             "curl", "-s", "-o", "/dev/null", f"{gw.url}/v1/models", "https://api.anthropic.com/"],
                            env=base_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        try:
            chunk = os.read(master, 4096) if ready else b""
        except OSError:
            chunk = b""
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=30)
    assert b"[inspector] 1 requests" in seen and b"[inspector] 2 requests \xc2\xb7 1 flags" in seen
    assert b"inspector: 2 flows" in seen


def test_listeners_bind_loopback_only_and_ca_key_is_private(record, upstream):
    gw = upstream()
    run = record(["cat", "/proc/net/tcp", "/proc/net/tcp6"], env=base_env(ANTHROPIC_BASE_URL=gw.url))
    ports = [int(v.rsplit(":", 1)[1]) for v in run.capture.meta["listeners"].values()]
    listening = {}
    for line in run.proc.stdout.decode().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":  # LISTEN
            addr, port = fields[1].rsplit(":", 1)
            listening.setdefault(int(port, 16), set()).add(addr)
    for port in ports:
        assert listening[port] == {"0100007F"}, (port, listening.get(port))
    ca_key = Path(os.environ["INSPECTOR_CONFDIR"]) / "mitmproxy-ca.pem"
    assert ca_key.stat().st_mode & 0o777 == 0o600


def test_child_env_points_every_runtime_at_the_proxy_and_keeps_no_proxy_in_meta(record, upstream):
    gw = upstream()
    env = base_env(ANTHROPIC_BASE_URL=gw.url + "/gw", NO_PROXY="internal.example,127.0.0.1")
    run = record([PY, "-c", "import os, json; print(json.dumps(dict(os.environ)))"], env=env)
    child = json.loads(run.proc.stdout)
    meta = run.capture.meta
    proxy = f"http://{meta['listeners']['proxy']}"
    assert all(child[v] == proxy for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"))
    assert child["ANTHROPIC_BASE_URL"] == f"http://{meta['listeners']['reverse']}/gw"
    assert child["NODE_USE_ENV_PROXY"] == "1" and child["NODE_EXTRA_CA_CERTS"].endswith("mitmproxy-ca-cert.pem")
    assert {child["SSL_CERT_FILE"], child["REQUESTS_CA_BUNDLE"], child["CURL_CA_BUNDLE"]} == {
        str(Path(os.environ["INSPECTOR_CONFDIR"]) / "ca-bundle.pem")}
    assert meta["no_proxy"] == "internal.example,127.0.0.1" and child["NO_PROXY"] == "internal.example,127.0.0.1"
    assert meta["base_url"] == gw.url + "/gw"


def test_bad_input_gives_one_line_and_no_traceback(tmp_path):
    cases = [
        (["record", "--", "no-such-command-xyz"], 127, "was not found"),
        (["record", "--base-url", "not a url", "--", "true"], 125, "is not an http(s) URL"),
        (["record", "--base-url", "http://[::1", "--", "true"], 125, "is not a URL"),
        (["record", "--body-limit", "lots", "--", "true"], 2, "is not a size"),
        (["record", "-o", "/proc/no/c.yaml", "--", "touch", "ran"], 125, "choose another path with -o"),
    ]
    for args, code, words in cases:
        proc = subprocess.run([INSPECTOR, *args], cwd=tmp_path, env=base_env(), capture_output=True, text=True)
        assert proc.returncode == code, (args, proc.stderr)
        assert words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "ran").exists()  # nothing runs unrecorded


def test_no_redact_warns_and_keeps_the_key(record, upstream):
    gw = upstream()
    key = fake_key()
    run = record(["curl", "-s", "-H", f"x-api-key: {key}", f"{gw.url}/v1/models"], "--no-redact",
                 env=base_env(ANTHROPIC_BASE_URL=gw.url))
    assert b"--no-redact" in run.proc.stderr and b"warning" in run.proc.stderr
    assert key.encode() in run.raw


def test_python312_install_gets_mitmproxy_12_and_records(tmp_path, upstream):
    """scripts/setup installs the package with `pip install .` on Python >= 3.12 when there is one."""
    exe = ROOT / ".venv312" / "bin" / "inspector"
    if not exe.exists():
        pytest.skip("no Python >= 3.12 on this machine, so scripts/setup made no .venv312")
    gw = upstream()
    out = tmp_path / "c.yaml"
    proc = subprocess.run([str(exe), "record", "--offline", "-o", str(out), "--", "curl", "-s", f"{gw.url}/v1/models",
                           "https://api.anthropic.com/"], env=base_env(), capture_output=True)
    assert proc.returncode == 0, proc.stderr
    cap = load_capture(out)
    assert cap.meta["mitmproxy_version"].startswith("12.")
    assert [f.status for f in cap.flows] == [401, 502]


def test_capture_is_valid_yaml_while_recording(tmp_path, upstream):
    """Until the end the file is valid YAML with complete: false, so a crash leaves a readable capture."""
    gw = upstream()
    out = tmp_path / "c.yaml"
    proc = subprocess.Popen([INSPECTOR, "record", "--offline", "-o", str(out), "--", "sh", "-c",
                             f"curl -s {gw.url}/ >/dev/null; echo go; sleep 30"],
                            env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"go\n"
    data = wait_for(lambda: (d := yaml.safe_load(out.read_text()))["flows"] and d)
    assert data["meta"]["complete"] is False and len(data["flows"]) == 1
    proc.terminate()
    proc.wait(timeout=30)
    assert yaml.safe_load(out.read_text())["meta"]["complete"] is True
