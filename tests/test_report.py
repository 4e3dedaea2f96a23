"""`inspector report`: the Markdown bug report, HAR 1.2 and the mitmproxy flow file."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import socket
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest

from conftest import INSPECTOR, ROOT, VENV_BIN, base_env, fake_key, random_part
from inspector.report import FLAG_EXPLANATIONS, GITHUB_ISSUE_LIMIT, har, markdown_report
from inspector.serialize import load_capture
from test_redact import assert_no_piece

PY = sys.executable
_spec = importlib.util.spec_from_file_location("regen_report", ROOT / "tests" / "golden" / "regen_report.py")
regen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(regen)


def report(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([INSPECTOR, "report", *map(str, args)], capture_output=True, cwd=cwd, timeout=60)


# ---------------------------------------------------------------- golden files


@pytest.mark.parametrize("path", sorted(regen.golden_files()), ids=lambda p: p.name)
def test_golden_files_are_what_the_builders_make(path):
    expected = regen.golden_files()[path]
    assert path.exists(), f"{path.name} is missing: run .venv/bin/python tests/golden/regen_report.py"
    assert path.read_bytes() == expected, \
        f"{path.name} is stale: run .venv/bin/python tests/golden/regen_report.py and review the diff"


def test_cli_markdown_is_the_golden_report_on_stdout():
    out = report("tests/golden/captures/agent.yaml", cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout == (regen.HERE / "agent.md").read_bytes() and out.stderr == b""


# ---------------------------------------------------------------- Markdown


def test_agent_report_shows_hosts_flags_and_the_blocked_request_without_the_prompt():
    cap = load_capture(ROOT / "tests/golden/captures/agent.yaml")
    md = markdown_report(cap, "tests/golden/captures/agent.yaml")
    assert "`claude -p hi` exited 1" in md.splitlines()[0]
    assert "| `127.0.0.1:41453` (base URL) | 1 | 403 ×1 | http-error ×1 |" in md
    assert "| `api.anthropic.com:443` | 5 | 502 (offline) ×5 | off-base-host ×5, credential-leak ×4 |" in md
    assert "none of HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY was set" in md
    assert "| `ANTHROPIC_API_KEY` | auth | `<redacted sha256:21dc32d9 len=44 from=ANTHROPIC_API_KEY>` |" in md
    assert "`claude-cli/2.1.197 (external, sdk-cli)`" in md  # the client's version, from its User-Agent
    for code in ("credential-leak", "http-error", "off-base-host"):
        assert f"**`{code}`**" in md and FLAG_EXPLANATIONS[code] in md
    failing = md.split("### The failing request: #3", 1)[1].split("<details>")[0]
    assert "**403 Forbidden**, answered by an HTML page from Server: nginx" in failing
    assert "Content-Length: 86071" in failing and "Request body: 86,071 bytes; JSON object" in failing
    assert "`tools`: array of 25 (70.5 KB)" in failing  # where the size comes from
    assert "<center><h1>403 Forbidden</h1></center>" in failing  # a small error page is quoted in full
    system = cap.flows[2].request.body["json"]["system"][-1]["text"]
    assert len(system) > 1000 and system[200:300] not in md  # the prompt is summarised, never pasted
    listed = md.split("<summary>All 6 flows</summary>", 1)[1].split("</details>")[0]
    assert len(re.findall(r"^\| \d+ \|", listed, re.M)) == 6
    assert len(md) < GITHUB_ISSUE_LIMIT


def test_redaction_placeholders_stay_visible_on_github():
    # GitHub drops an unknown tag such as <redacted ...> from rendered Markdown, unless it is code.
    for name in ("agent", "sdk"):
        md = markdown_report(load_capture(ROOT / f"tests/golden/captures/{name}.yaml"))
        prose = re.sub(r"^(`{3,}).*?^\1$", "", md, flags=re.S | re.M)
        prose = re.sub(r"``.*?``|`[^`\n]*`", "", prose)
        assert "<redacted" in md and "<redacted" not in prose


def test_a_working_run_reports_no_failure():
    md = markdown_report(load_capture(ROOT / "tests/golden/captures/sdk.yaml"))
    assert "### No request failed" in md and "### Flags\n\nNone" in md
    assert "| `127.0.0.1:41453` (base URL) | 1 | 200 ×1 | — |" in md
    assert "`Anthropic/JS 1.17.0` ×1" in md and "`js 1.17.0 node v20.20.2` ×1" in md


# ---------------------------------------------------------------- HAR


NAME_VALUE_LISTS = ("cookies", "headers")


def assert_valid_har(data: dict, entries: int) -> None:
    """The fields HAR 1.2 requires, with their types."""
    log = data["log"]
    assert log["version"] == "1.2"
    assert isinstance(log["creator"]["name"], str) and isinstance(log["creator"]["version"], str)
    assert len(log["entries"]) == entries
    for e in log["entries"]:
        datetime.fromisoformat(e["startedDateTime"])
        req, resp, timings = e["request"], e["response"], e["timings"]
        for key in ("send", "wait", "receive"):
            assert isinstance(timings[key], (int, float)) and timings[key] >= 0, (key, timings)
        assert e["time"] == pytest.approx(sum(v for v in timings.values() if v >= 0), abs=0.11)
        assert isinstance(e["cache"], dict)
        assert isinstance(req["method"], str) and req["url"].startswith(("http://", "https://"))
        for msg in (req, resp):
            assert isinstance(msg["httpVersion"], str)
            assert isinstance(msg["headersSize"], int) and isinstance(msg["bodySize"], int)
            for key in NAME_VALUE_LISTS:
                assert all(isinstance(c["name"], str) and isinstance(c["value"], str) for c in msg[key])
        assert all(isinstance(q["name"], str) and isinstance(q["value"], str) for q in req["queryString"])
        if "postData" in req:
            assert isinstance(req["postData"]["mimeType"], str)
            assert "text" in req["postData"] or "params" in req["postData"]
        assert isinstance(resp["status"], int) and isinstance(resp["statusText"], str)
        assert isinstance(resp["content"]["size"], int) and isinstance(resp["content"]["mimeType"], str)
        if resp["content"].get("encoding") == "base64":
            base64.b64decode(resp["content"]["text"], validate=True)
        assert isinstance(resp["redirectURL"], str)


@pytest.mark.parametrize("name, entries", [("sdk", 1), ("agent", 6)])
def test_har_is_valid_har_1_2(name, entries):
    data = json.loads((regen.HERE / f"{name}.har").read_bytes())
    assert_valid_har(data, entries)


def test_har_agrees_with_mitmproxys_own_har_export():
    from mitmproxy.addons.savehar import SaveHar

    from inspector.export_mitm import to_flows

    for name in ("sdk", "agent"):
        cap = load_capture(ROOT / f"tests/golden/captures/{name}.yaml")
        ours, theirs = har(cap)["log"]["entries"], SaveHar().make_har(to_flows(cap))["log"]["entries"]
        assert len(ours) == len(theirs) == len(cap.flows)
        for o, t in zip(ours, theirs):
            for key in ("method", "url", "httpVersion", "headers", "queryString", "cookies"):
                assert o["request"][key] == t["request"][key], key
            assert o["request"].get("postData", {}).get("text") == t["request"].get("postData", {}).get("text")
            for key in ("status", "statusText", "httpVersion", "headers", "cookies", "redirectURL"):
                assert o["response"][key] == t["response"][key], key
            for key in ("size", "mimeType"):
                assert o["response"]["content"][key] == t["response"]["content"][key], key
            assert o["response"]["content"].get("text", "") == t["response"]["content"]["text"]
            for key in ("wait", "receive"):
                assert o["timings"][key] == pytest.approx(t["timings"][key], abs=0.1)


# ---------------------------------------------------------------- a real run, every format


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CLIENT = textwrap.dedent("""
    import base64, json, os, sys, urllib.request, urllib.parse
    base, dead = sys.argv[1:3]
    key, token, pw, jwt = (os.environ[n] for n in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "PLAIN_VALUE", "JWT"))
    custom = os.environ["ANTHROPIC_CUSTOM_HEADERS"].split(": ")[1]
    def send(url, data=None, **headers):
        try:
            return urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers)).read()
        except Exception as e:
            return str(e).encode()
    body = {"system": "hi", "metadata": {"user": [key, "x" + token + "y"]}, "jwt": jwt,
            "b64": base64.b64encode(("key=" + key).encode()).decode()}
    send(base + "/v1/messages?key=" + key + "&q=" + urllib.parse.quote(token), json.dumps(body).encode(),
         **{"x-api-key": key, "authorization": "Bearer " + token, "X-Gateway-Secret": custom,
            "cookie": "sid=" + custom + "; other=1", "content-type": "application/json"})
    send(base + "/form", urllib.parse.urlencode({"password": pw, "token": token}).encode(),
         **{"content-type": "application/x-www-form-urlencoded", "x-api-key": key})
    send("https://side.example/upload", b"\\x00\\x01" + key.encode() + b"\\xff",
         **{"authorization": "Basic " + base64.b64encode(b"user:" + pw.encode()).decode()})
    send(dead + "/v1/messages", json.dumps({"api_key": key}).encode(), **{"x-api-key": key})
""")


@pytest.mark.parametrize("redact", [True, False], ids=["redacted", "no-redact"])
def test_every_format_holds_no_secret_and_keeps_every_flow(record, echo_server, tmp_path, redact):
    key, token, custom, pw = fake_key(), fake_key("tok"), random_part(), random_part(20)
    jwt = "eyJ" + random_part(20) + "." + "eyJ" + random_part(30) + "." + random_part(30)
    dead = f"http://127.0.0.1:{closed_port()}"
    env = base_env(ANTHROPIC_BASE_URL=echo_server, ANTHROPIC_API_KEY=key, ANTHROPIC_AUTH_TOKEN=token,
                   ANTHROPIC_CUSTOM_HEADERS=f"X-Gateway-Secret: {custom}",
                   PLAIN_VALUE=pw, JWT=jwt)  # names no rule knows: only the places they are put in can hide them
    run = record([PY, "-c", CLIENT, echo_server, dead],
                 *([] if redact else ["--no-redact"]), env=env)
    assert run.proc.returncode == 0, run.proc.stderr
    flows = run.capture.flows
    assert len(flows) == 4 and [f.status for f in flows].count(None) == 1
    secrets = (key, token, custom, pw, jwt)
    if redact:
        assert_no_piece(run.raw, *secrets)

    md = report(run.capture_path)
    har_out = report(run.capture_path, "--format", "har")  # default: next to the capture
    mitm_out = report(run.capture_path, "--format", "mitm", "-o", tmp_path / "flows.mitm")
    har_stdout = report(run.capture_path, "--format", "har", "-o", "-")
    for out in (md, har_out, mitm_out, har_stdout):
        assert out.returncode == 0, out.stderr
        assert_no_piece(out.stdout + out.stderr, *secrets)
    assert (b"--no-redact" in md.stderr) is (not redact)
    har_path, mitm_path = run.capture_path.with_suffix(".har"), tmp_path / "flows.mitm"
    assert f"wrote {har_path}".encode() in har_out.stderr and f"mitmweb -r {mitm_path}".encode() in mitm_out.stderr
    for path in (har_path, mitm_path):
        assert_no_piece(path.read_bytes(), *secrets)
        assert path.stat().st_mode & 0o077 == 0  # private, like the capture
        assert b"from=ANTHROPIC_API_KEY>" in path.read_bytes()  # still says which key went where

    data = json.loads(har_path.read_bytes())
    assert data == json.loads(har_stdout.stdout)
    assert_valid_har(data, 4)
    dead_entry = next(e for e in data["log"]["entries"] if e["request"]["url"].startswith(dead))
    assert dead_entry["response"]["status"] == 0 and dead_entry["response"]["_error"]
    assert "no-response" in dead_entry["comment"]
    assert "### The failing request: #" in md.stdout.decode() and "**no response**" in md.stdout.decode()

    seen = read_with_mitmdump(mitm_path, tmp_path)
    in_order = sorted(flows, key=lambda f: f.started_at)
    # URLs as the capture has them, up to the query: --no-redact keeps the key in the query, the export does not
    assert [[s[0], s[1].split("?")[0], s[2]] for s in seen] == \
        [[f.request.method, f.request.url.split("?")[0], f.status or "error"] for f in in_order]


MITMDUMP_SCRIPT = """
import json, os

def _write(flow, outcome):
    with open(os.environ["REPORT_FLOWS_OUT"], "a") as fh:
        fh.write(json.dumps([flow.request.method, flow.request.url, outcome, flow.comment, flow.marked]) + "\\n")

def response(flow):
    _write(flow, flow.response.status_code)

def error(flow):
    _write(flow, "error")
"""


def read_with_mitmdump(path: Path, tmp_path: Path) -> list[list]:
    """Open a flow file with `mitmdump -nr`, as a user would, and list what its addons saw."""
    script, out = tmp_path / "list_flows.py", tmp_path / "seen.jsonl"
    script.write_text(MITMDUMP_SCRIPT)
    out.unlink(missing_ok=True)
    proc = subprocess.run([str(VENV_BIN / "mitmdump"), "-q", "-nr", str(path), "-s", str(script)],
                          capture_output=True, timeout=60, env=base_env(REPORT_FLOWS_OUT=str(out)))
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_mitm_file_opens_in_mitmdump_with_statuses_flags_and_bodies(tmp_path):
    cap = load_capture(ROOT / "tests/golden/captures/agent.yaml")
    out = report(ROOT / "tests/golden/captures/agent.yaml", "--format", "mitm", "-o", tmp_path / "agent.mitm")
    assert out.returncode == 0, out.stderr
    seen = read_with_mitmdump(tmp_path / "agent.mitm", tmp_path)
    assert [s[:3] for s in seen] == [[f.request.method, f.request.url, f.status] for f in cap.flows]
    blocked = next(s for s in seen if s[2] == 403)
    assert "[error http-error] HTTP 403" in blocked[3] and blocked[4] == ":red_circle:"

    from mitmproxy import io

    with open(tmp_path / "agent.mitm", "rb") as fh:
        flows = list(io.FlowReader(fh).stream())
    by_url = {f.request.url: f for f in flows}
    sent = by_url["http://127.0.0.1:41453/v1/messages?beta=true"]
    assert len(sent.request.raw_content) == 86071 and sent.request.headers["Content-Length"] == "86071"
    assert sent.request.headers.fields[0] == (b"Proxy-Connection", b"Keep-Alive")  # order kept
    assert b"<h1>403 Forbidden</h1>" in sent.response.raw_content and sent.response.headers["Server"] == "nginx"


def test_report_never_overwrites_the_capture_and_pipes_a_flow_file_when_asked(tmp_path):
    capture = tmp_path / "run.yaml"
    capture.write_bytes((ROOT / "tests/golden/captures/sdk.yaml").read_bytes())
    same = report(capture, "--format", "mitm", "-o", capture)
    assert same.returncode == 2 and b"is the capture itself" in same.stderr
    assert capture.read_bytes() == (ROOT / "tests/golden/captures/sdk.yaml").read_bytes()
    piped = report(capture, "--format", "mitm", "-o", "-")
    assert piped.returncode == 0 and piped.stdout[:1].isdigit()  # tnetstring, straight into a pipe
    bad = report(tmp_path / "missing.yaml")
    assert bad.returncode == 2 and bad.stderr.startswith(b"inspector: error: cannot read") and b"Traceback" not in bad.stderr
