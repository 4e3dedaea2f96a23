"""`inspector diff`: pairing, noise, ranked likely causes, three output formats (issue #3).

The captures here are built from the model and written with `serialize.write_capture`, so
each test changes exactly what it names. Every check runs the real command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from inspector.fake_upstream import NGINX_403
from inspector.flags import RuleContext, flags_for, summarize
from inspector.model import Flow, Origin, Request, Response, make_body, sse_bytes
from inspector.serialize import Capture, write_capture

ROOT = Path(__file__).resolve().parent.parent
INSPECTOR = str(Path(sys.executable).parent / "inspector")
GOLDEN = Path(__file__).resolve().parent / "golden" / "diff"
GATEWAY = "http://127.0.0.1:8765"
KEY = "<redacted sha256:5d41402a len=44 from=ANTHROPIC_API_KEY>"
TOKEN = "<redacted sha256:5d41402a len=44 from=ANTHROPIC_AUTH_TOKEN>"  # the same key, from another variable
OTHER_KEY = "<redacted sha256:9e107d9d len=44 from=ANTHROPIC_API_KEY>"
SESSION = "0f8fad5b-d9cb-469f-a165-70867728950e"


# ---------------------------------------------------------------- building captures


def make_request(url: str, headers: dict | list, body=None, method: str = "POST") -> Request:
    parts = urlsplit(url)
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    headers = list(headers.items() if isinstance(headers, dict) else headers)
    if data:
        headers.append(("content-length", str(len(data))))
    return Request(method=method, url=url, scheme=parts.scheme, host=parts.hostname,
                   port=parts.port or (443 if parts.scheme == "https" else 80),
                   path=parts.path + (f"?{parts.query}" if parts.query else ""), query=dict(parse_qsl(parts.query)),
                   http_version="HTTP/1.1", headers=headers, body=make_body(data, "application/json", 1 << 20))


def make_response(status: int, data: bytes, ctype: str = "application/json", server: str = "inspector-fake-upstream",
                  synthetic: str | None = None, extra: tuple = ()) -> Response:
    headers = [("server", server), ("date", "Sun, 01 Jun 2025 10:00:00 GMT"), ("content-type", ctype),
               ("content-length", str(len(data))), *extra]
    reasons = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 502: "Bad Gateway"}
    return Response(status=status, reason=reasons.get(status, ""), http_version="HTTP/1.1", headers=headers,
                    body=make_body(data, ctype, 1 << 20), synthetic=synthetic)


def make_flow(i: int, request: Request, response: Response, base_url: str, via: str = "reverse",
              started: str = "2025-06-01T10:00:00Z") -> Flow:
    flow = Flow(id=i, started_at=started, request=request, response=response, duration_ms=120.0 + i,
                ttfb_ms=80.0 + i, via=via)
    flow.flags = flags_for(flow, RuleContext(base=Origin.parse(base_url)))
    return flow


def make_meta(command: list[str], base_url: str = GATEWAY, exit_code: int = 0, port: int = 40001,
              started: str = "2025-06-01T10:00:00Z", env: dict | None = None) -> dict:
    return {"inspector_version": "0.1.0", "mitmproxy_version": "11.0.2", "command": command,
            "started_at": started, "ended_at": started.replace("10:00:00", "10:00:09"), "exit_code": exit_code,
            "base_url": base_url, "offline": True, "redacted": True, "body_limit": 1 << 20, "no_proxy": None,
            "env": env or {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": base_url},
            "listeners": {"proxy": f"127.0.0.1:{port - 1}", "reverse": f"127.0.0.1:{port}"},
            "injected_env": {"HTTPS_PROXY": f"http://127.0.0.1:{port - 1}",
                             "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}"},
            "complete": True}


def save(path: Path, meta: dict, flows: list[Flow]) -> Path:
    write_capture(Capture(meta=meta, flows=flows, summary=summarize(flows)), path)
    return path


def api_ok(msg_id: str = "msg_01XFDUDYJgAACzvnptvVoYEL", request_id: str = "req_011CPzzqVrd2UAWDMbxKcCzj") -> Response:
    data = {"id": msg_id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "Hello from the inspector fake upstream."}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 8, "output_tokens": 9}}
    return make_response(200, json.dumps(data).encode(), extra=(("request-id", request_id),))


def api_401() -> Response:
    data = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
    return make_response(401, json.dumps(data).encode(), server="gateway")


def edge_403() -> Response:
    return make_response(403, NGINX_403, "text/html", server="nginx")


def offline_502(host: str = "api.anthropic.com") -> Response:
    data = {"type": "error", "error": {"type": "inspector_offline",
                                       "message": f"inspector --offline: {host} was not contacted"}}
    return make_response(502, json.dumps(data).encode(), server="", synthetic="offline",
                         extra=(("x-inspector-synthetic", "offline"),))


# ---------------------------------------------------------------- the SDK run and the Claude Code run


def prose(words: int, seed: str) -> str:
    """Deterministic filler of about `words` words, standing in for prompts and tool descriptions."""
    vocab = ("use this tool to read files search code run commands and edit text carefully before you answer "
             "the user always check the result").split()
    return " ".join(vocab[(i * 7 + len(seed)) % len(vocab)] for i in range(words)) + f" ({seed})"


def sdk_capture(path: Path) -> Path:
    """A plain SDK run: POST /v1/messages, Bearer token, Anthropic/JS 1.17.0, answered 200."""
    body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    headers = [("host", "127.0.0.1:8765"), ("connection", "keep-alive"), ("accept", "application/json"),
               ("anthropic-version", "2023-06-01"), ("authorization", f"Bearer {TOKEN}"),
               ("content-type", "application/json"), ("user-agent", "Anthropic/JS 1.17.0"),
               ("x-stainless-arch", "x64"), ("x-stainless-lang", "js"), ("x-stainless-os", "Linux"),
               ("x-stainless-package-version", "1.17.0"), ("x-stainless-retry-count", "0"),
               ("x-stainless-runtime", "node"), ("x-stainless-runtime-version", "v22.12.0"),
               ("x-stainless-timeout", "600")]
    flow = make_flow(1, make_request(f"{GATEWAY}/v1/messages", headers, body), api_ok(), GATEWAY)
    meta = make_meta(["node", "demo/sdk-hello.cjs"], env={"ANTHROPIC_AUTH_TOKEN": TOKEN, "ANTHROPIC_BASE_URL": GATEWAY})
    return save(path, meta, [flow])


AGENT_UA = "claude-cli/2.1.197 (external, sdk-cli)"
SIDE_CALLS = [("GET", "/api/hello", None), ("GET", "/api/claude_cli/bootstrap?entrypoint=sdk-cli", None),
              ("GET", "/api/claude_code_penguin_mode", None),
              ("POST", "/api/event_logging/v2/batch", {"events": [{"event_type": "tengu_init", "n": 1}]}),
              ("POST", "/api/eval/sdk-zAZezfDKGoZuXXKe", {"attributes": {"apiBaseUrlHost": "127.0.0.1:40001"}}),
              ("POST", "/api/event_logging/v2/batch", {"events": [{"event_type": "tengu_exit", "n": 2}]})]


def agent_body() -> dict:
    """About 85 KB, like Claude Code's first request: system prompt, 17 tools, metadata, streaming."""
    tools = [{"name": f"Tool{i}", "description": prose(760, f"tool {i}"),
              "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
             for i in range(17)]
    return {"model": "claude-sonnet-4-5-20250929", "max_tokens": 32000,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": f"<system-reminder>{prose(300, 'reminder')}</system-reminder>"},
                {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}],
            "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
                       {"type": "text", "text": prose(2000, "system"), "cache_control": {"type": "ephemeral"}}],
            "tools": tools, "metadata": {"user_id": f"user_{'ab' * 32}_account__session_{SESSION}"},
            "temperature": 1, "stream": True}


def agent_capture(path: Path) -> Path:
    """Claude Code: ?beta=true, x-api-key, its user-agent and betas, a big body, nginx's HTML 403,
    and six side calls to api.anthropic.com with the key, answered offline by inspector."""
    headers = [("host", "127.0.0.1:8765"), ("connection", "keep-alive"), ("accept", "application/json"),
               ("anthropic-beta", "claude-code-20250219,interleaved-thinking-2025-05-14,"
                                  "fine-grained-tool-streaming-2025-05-14"),
               ("anthropic-dangerous-direct-browser-access", "true"), ("anthropic-version", "2023-06-01"),
               ("content-type", "application/json"), ("user-agent", AGENT_UA), ("x-api-key", KEY), ("x-app", "cli"),
               ("x-claude-code-session-id", SESSION), ("x-stainless-arch", "x64"), ("x-stainless-lang", "js"),
               ("x-stainless-os", "Linux"), ("x-stainless-package-version", "0.60.0"),
               ("x-stainless-retry-count", "0"), ("x-stainless-runtime", "node"),
               ("x-stainless-runtime-version", "v22.12.0"), ("x-stainless-timeout", "600")]
    main = make_flow(4, make_request(f"{GATEWAY}/v1/messages?beta=true", headers, agent_body()), edge_403(), GATEWAY)
    side = []
    for i, (method, path_, body) in enumerate(SIDE_CALLS, 1):
        req = make_request(f"https://api.anthropic.com{path_}",
                           [("host", "api.anthropic.com"), ("user-agent", AGENT_UA), ("x-api-key", KEY),
                            ("content-type", "application/json")], body, method)
        side.append(make_flow(i if i < 4 else i + 1, req, offline_502(), GATEWAY, via="proxy"))
    flows = sorted([main, *side], key=lambda f: f.id)
    return save(path, make_meta(["claude", "-p", "hi"], exit_code=1), flows)


# ---------------------------------------------------------------- running the command


def run_diff(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([INSPECTOR, "diff", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=60)


def as_json(*args) -> dict:
    proc = run_diff(*args, "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def cause_lines(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Likely causes"))
    return [line for line in lines[start + 1:start + 4] if line.startswith("  ") and line[2].isdigit()]


# ---------------------------------------------------------------- tests


def test_a_capture_diffed_with_itself_exits_0(tmp_path):
    agent = agent_capture(tmp_path / "agent.yaml")
    proc = run_diff(agent, agent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No meaningful difference: 7 pairs of flows compared" in proc.stdout
    assert proc.stderr == ""
    assert as_json(agent, agent)["different"] is False


# One field changed at a time; the diff must name exactly that field first (and only it).
def swap_auth_header(spec):
    del spec["headers"]["authorization"]
    spec["headers"]["x-api-key"] = KEY


ONE_FIELD = {
    "auth-scheme": swap_auth_header,
    "auth-key": lambda s: s["headers"].update(authorization=f"Bearer {OTHER_KEY}"),
    "user-agent": lambda s: s["headers"].update({"user-agent": AGENT_UA}),
    "anthropic-beta": lambda s: s["headers"].update({"anthropic-beta": "claude-code-20250219,effort-2025-11-24"}),
    "query.beta": lambda s: s.update(url=s["url"] + "?beta=true"),
    "body.max_tokens": lambda s: s["body"].update(max_tokens=2048),
    "host": lambda s: s.update(url=s["url"].replace(GATEWAY, "https://gateway.example:8443")),
}
ANSWERS = {"same status": api_ok, "JSON 401 from the API": api_401, "HTML 403 from an edge": edge_403}


def base_spec() -> dict:
    return {"url": f"{GATEWAY}/v1/messages",
            "headers": {"authorization": f"Bearer {KEY}", "user-agent": "Anthropic/JS 1.17.0",
                        "anthropic-beta": "claude-code-20250219", "anthropic-version": "2023-06-01",
                        "content-type": "application/json"},
            "body": {"model": "claude-sonnet-4-5", "max_tokens": 1024,
                     "messages": [{"role": "user", "content": "hi"}]}}


def spec_capture(path: Path, spec: dict, answer: Response) -> Path:
    base_url = "{0.scheme}://{0.netloc}".format(urlsplit(spec["url"]))
    flow = make_flow(1, make_request(spec["url"], spec["headers"], spec["body"]), answer, base_url)
    return save(path, make_meta(["client"], base_url=base_url), [flow])


@pytest.mark.parametrize("answer", ANSWERS)
@pytest.mark.parametrize("field", ONE_FIELD)
def test_one_changed_field_is_named_first(tmp_path, field, answer):
    base = spec_capture(tmp_path / "base.yaml", base_spec(), api_ok())
    spec = base_spec()
    ONE_FIELD[field](spec)
    other = spec_capture(tmp_path / "other.yaml", spec, ANSWERS[answer]())
    report = as_json(base, other)
    assert [c["field"] for c in report["likely_causes"]] == [field]
    proc = run_diff(base, other)
    assert proc.returncode == 1
    first = cause_lines(proc.stdout)[0]
    assert first.startswith(f"  1. {field}"), proc.stdout


def two_field_capture(tmp_path, answer: Response, *changes) -> tuple[Path, Path]:
    base = spec_capture(tmp_path / "base.yaml", base_spec(), api_ok())
    spec = base_spec()
    for change in changes:
        ONE_FIELD[change](spec)
    return base, spec_capture(tmp_path / "other.yaml", spec, answer)


def test_auth_outranks_a_header_when_the_api_answers(tmp_path):
    report = as_json(*two_field_capture(tmp_path, api_401(), "user-agent", "auth-scheme"))
    assert [c["field"] for c in report["likely_causes"]] == ["auth-scheme", "user-agent"]


def test_an_html_page_from_an_edge_points_at_the_fingerprint_not_the_same_key(tmp_path):
    base, other = two_field_capture(tmp_path, edge_403(), "user-agent", "auth-scheme")
    report = as_json(base, other)
    assert [c["field"] for c in report["likely_causes"]] == ["user-agent", "auth-scheme"]
    assert report["headline"] == "200 → 403 on POST /v1/messages"
    assert "(same key)" in report["likely_causes"][1]["what"]
    text = run_diff(base, other).stdout
    assert "Likely causes of 200 → 403 on POST /v1/messages" in text
    assert "an HTML page from Server: nginx" in text


def test_a_different_key_comes_first_when_the_api_refuses_it(tmp_path):
    report = as_json(*two_field_capture(tmp_path, api_401(), "user-agent", "auth-key", "body.max_tokens"))
    assert report["likely_causes"][0]["field"] == "auth-key"
    assert "sha256:5d41402a from ANTHROPIC_API_KEY → sha256:9e107d9d" in report["likely_causes"][0]["what"]


def test_a_side_host_carrying_a_credential_is_always_among_the_causes(tmp_path):
    base = spec_capture(tmp_path / "base.yaml", base_spec(), api_ok())
    spec = base_spec()
    for change in ("auth-scheme", "host", "user-agent"):
        ONE_FIELD[change](spec)
    spec["headers"]["x-api-key"] = OTHER_KEY  # and another key
    other = tmp_path / "other.yaml"
    spec_capture(other, spec, api_401())
    from inspector.serialize import load_capture
    cap = load_capture(other)
    leak = make_request("https://telemetry.example/v1/events", {"x-api-key": OTHER_KEY}, {"n": 1})
    cap.flows.append(make_flow(2, leak, offline_502("telemetry.example"), cap.meta["base_url"], via="proxy"))
    save(other, cap.meta, cap.flows)
    report = as_json(base, other)
    assert [c["field"] for c in report["likely_causes"]] == ["auth-key", "auth-scheme", "side-credential"]
    text = run_diff(base, other).stdout
    assert "OTHER talks to telemetry.example (1 request, not the base URL), BASE does not; it carries x-api-key" in text


def noisy_capture(path: Path, run: int, model: str = "claude-sonnet-4-5") -> Path:
    """One recording; `run` changes every per-run value: ids, dates, ports, retry counters."""
    session = f"{run:08x}-d9cb-469f-a165-70867728950e"
    day = f"2025-06-0{run}"
    body = {"model": model, "max_tokens": 1024, "stream": True,
            "system": [{"type": "text", "text": f"Today's date is {day}."}],
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user_id": f"user_{'ab' * 32}_account__session_{session}"}}
    headers = {"x-api-key": KEY, "user-agent": AGENT_UA, "x-claude-code-session-id": session,
               "x-stainless-retry-count": str(run - 1), "x-stainless-timeout": str(600 - run),
               "content-type": "application/json"}
    req = make_request(f"{GATEWAY}/v1/messages?beta=true", headers, body)
    req.headers.append(("content-length", str(1000 + run)))  # and a second, stale one
    events = [{"event": "message_start", "data": {"type": "message_start", "message": {
        "id": f"msg_0{run}XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant"}}},
              {"event": "message_stop", "data": {"type": "message_stop"}}]
    resp = make_response(200, sse_bytes(events), "text/event-stream",
                         extra=(("request-id", f"req_0{run}1CPzzqVrd2UAWDMbxKcCzj"),))
    resp.headers[1] = ("date", f"Mon, 0{run} Jun 2025 10:0{run}:00 GMT")
    side = make_request("https://api.anthropic.com/api/eval/sdk-zAZezfDKGoZuXXKe",
                        {"x-api-key": KEY, "user-agent": AGENT_UA},
                        {"attributes": {"apiBaseUrlHost": f"127.0.0.1:{40000 + run}", "sessionId": session}})
    started = f"{day}T10:00:0{run}Z"
    flows = [make_flow(run, req, resp, GATEWAY, started=started),
             make_flow(run + 1, side, offline_502(), GATEWAY, via="proxy", started=started)]
    return save(path, make_meta(["claude", "-p", "hi"], exit_code=0, port=40000 + 11 * run, started=started), flows)


def test_per_run_noise_makes_no_difference(tmp_path):
    first, second = noisy_capture(tmp_path / "1.yaml", 1), noisy_capture(tmp_path / "2.yaml", 2)
    assert first.read_text() != second.read_text()
    proc = run_diff(first, second)
    assert proc.returncode == 0, proc.stdout
    assert "No meaningful difference" in proc.stdout
    for noise in ("session ids", "request ids", "uuids", "message ids", "timestamps and dates", "content-length",
                  "retry counters and timeouts", "listener ports"):
        assert noise in proc.stdout
    # ...while a real change in the same recordings still shows
    third = noisy_capture(tmp_path / "3.yaml", 2, model="claude-opus-4-1")
    changed = run_diff(first, third)
    assert changed.returncode == 1 and '~ body.model: "claude-sonnet-4-5" → "claude-opus-4-1"' in changed.stdout


def test_ignore_header(tmp_path):
    base = spec_capture(tmp_path / "base.yaml", base_spec(), api_ok())
    spec = base_spec()
    spec["headers"]["x-trace"] = "abc"
    other = spec_capture(tmp_path / "other.yaml", spec, api_ok())
    assert "+ header.x-trace: abc" in run_diff(base, other).stdout
    assert run_diff(base, other, "--ignore-header", "X-Trace").returncode == 0


def test_prompt_text_by_size_and_hash_unless_bodies_full(tmp_path):
    base = spec_capture(tmp_path / "base.yaml", base_spec(), api_ok())
    spec = base_spec()
    spec["body"]["messages"][0]["content"] = "please summarise the meeting notes"
    other = spec_capture(tmp_path / "other.yaml", spec, api_ok())
    summary = run_diff(base, other).stdout
    assert "~ body.messages[0].content: text (2 B, sha256:8f434346) → text (34 B, sha256:" in summary
    assert "meeting notes" not in summary
    full = run_diff(base, other, "--bodies", "full").stdout
    assert '~ body.messages[0].content: "hi" → "please summarise the meeting notes"' in full


def test_pairing_lists_unpaired_flows_by_host(tmp_path):
    sdk, agent = sdk_capture(tmp_path / "sdk.yaml"), agent_capture(tmp_path / "agent.yaml")
    report = as_json(sdk, agent)
    assert [(p["base"]["id"], p["other"]["id"]) for p in report["pairs"]] == [(1, 4)]
    assert {f["host"] for f in report["only_in_other"]} == {"api.anthropic.com"}
    assert len(report["only_in_other"]) == 6 and report["only_in_base"] == []
    text = run_diff(agent, sdk).stdout  # the other way round: BASE is now the agent
    assert "Only in BASE (6 flows)" in text and "BASE talks to api.anthropic.com (6 requests" in text


def test_colour_only_on_request_or_terminal(tmp_path):
    sdk, agent = sdk_capture(tmp_path / "sdk.yaml"), agent_capture(tmp_path / "agent.yaml")
    assert "\x1b[" not in run_diff(sdk, agent).stdout
    coloured = run_diff(sdk, agent, "--color").stdout
    assert "\x1b[1mLikely causes" in coloured and "\x1b[32m  + query.beta: true\x1b[0m" in coloured
    assert "\x1b[" not in run_diff(sdk, agent, "--color", "--format", "markdown").stdout


def test_no_secret_is_printed_even_from_an_unredacted_capture(tmp_path):
    raw_a, raw_b = "sk-ant-api03-" + "Qx7" * 14, "sk-ant-api03-" + "Zp4" * 14
    captures = []
    for name, raw in (("a.yaml", raw_a), ("b.yaml", raw_b)):
        spec = base_spec()
        spec["headers"].update({"authorization": f"Bearer {raw}", "x-debug": f"key={raw}"})
        path = spec_capture(tmp_path / name, spec, api_ok())
        assert raw in path.read_text()
        captures.append(path)
    for fmt in ("text", "markdown", "json"):
        out = run_diff(*captures, "--format", fmt, "--bodies", "full").stdout
        assert "auth-key" in out and "header.x-debug" in out
        assert "sk-ant-api03-Qx7" not in out and "sk-ant-api03-Zp4" not in out and "Qx7Qx7" not in out


@pytest.mark.parametrize("content, words", [
    (None, "cannot read"),
    ("hello: world\n", "not an inspector capture"),
    ("format: inspector-capture/9\nmeta: {}\nflows: []\n", "has format inspector-capture/9"),
    ("- [unclosed\n", "not valid YAML"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, content, words):
    good = sdk_capture(tmp_path / "good.yaml")
    bad = tmp_path / "bad.yaml"
    if content is not None:
        bad.write_text(content)
    for args in ((bad, good), (good, bad)):
        proc = run_diff(*args)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("inspector: error: ") and words in proc.stderr


# ---------------------------------------------------------------- golden files


FORMATS = {"text": "txt", "markdown": "md", "json": "json"}


def golden_outputs(workdir: Path) -> dict[str, str]:
    """name -> output of every golden case; the files in tests/golden/diff/ hold the expected ones."""
    sdk_capture(workdir / "sdk.yaml")
    agent_capture(workdir / "agent.yaml")
    cases = {"synthetic": (workdir, "sdk.yaml", "agent.yaml")}
    if (ROOT / "tests/golden/captures/sdk.yaml").exists() and (ROOT / "tests/golden/captures/agent.yaml").exists():
        cases["captures"] = (ROOT, "tests/golden/captures/sdk.yaml", "tests/golden/captures/agent.yaml")
    out = {}
    for case, (cwd, base, other) in cases.items():
        for fmt, ext in FORMATS.items():
            proc = run_diff(base, other, "--format", fmt, cwd=cwd)
            assert proc.returncode == 1 and proc.stderr == "", proc.stderr
            out[f"{case}.{ext}"] = proc.stdout
    return out


def test_golden_outputs(tmp_path):
    outputs = golden_outputs(tmp_path)
    for name, text in outputs.items():
        expected = GOLDEN / name
        assert expected.exists(), f"{expected} is missing: run tests/golden/regen_diff.py"
        assert text == expected.read_text(), f"{name} changed; if intended, run tests/golden/regen_diff.py"
    synthetic = outputs["synthetic.txt"]
    assert synthetic.splitlines()[2] == "Likely causes of 200 → 403 on POST /v1/messages"
    assert cause_lines(synthetic)[0].startswith("  1. request body 97 B → 8")
    assert "OTHER talks to api.anthropic.com (6 requests, not the base URL), BASE does not" in synthetic


def test_two_recordings_of_claude_code_diff_to_nothing(record, upstream, key):
    """The real binary, twice, same settings: every difference is per-run noise."""
    from conftest import base_env, require_clients

    require_clients()
    gw = upstream()
    env = base_env(ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_API_KEY=key, CLAUDE_CODE_MAX_RETRIES="0")
    first, second = (record(["claude", "-p", "hi"], env=env, timeout=120) for _ in range(2))
    assert first.proc.returncode == 0 and second.proc.returncode == 0, second.proc.stderr
    report = as_json(first.capture_path, second.capture_path)
    assert report["likely_causes"] == []
    assert [p["changes"] for p in report["pairs"] if p["role"] == "base"] == [[]]
    assert not [f for f in report["only_in_base"] + report["only_in_other"] if f["role"] == "base"]


def test_json_is_stable_and_sorted(tmp_path):
    sdk, agent = sdk_capture(tmp_path / "sdk.yaml"), agent_capture(tmp_path / "agent.yaml")
    first, again = (run_diff(sdk, agent, "--format", "json").stdout for _ in range(2))
    assert first == again
    data = json.loads(first)
    assert list(data) == sorted(data) and data["format"] == "inspector-diff/1"
