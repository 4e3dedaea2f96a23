"""`inspector proxy start|stop|status`: a session that separate processes join by environment."""

from __future__ import annotations

import json
import subprocess

from conftest import INSPECTOR, base_env, fake_key, flag_codes, require_clients
from inspector.serialize import load_capture


def inspector(*args, env, **kw):
    return subprocess.run([INSPECTOR, *args], env=env, capture_output=True, text=True, timeout=90, **kw)


def test_session_records_claude_code_run_in_a_separate_shell(tmp_path, upstream):
    require_clients()
    gw = upstream()
    key = fake_key()
    # The session knows the key, so it can name it in placeholders and flags.
    env = base_env(INSPECTOR_STATE_DIR=str(tmp_path / "state"), ANTHROPIC_API_KEY=key)
    out = tmp_path / "session.yaml"
    started = inspector("proxy", "start", "--offline", "--base-url", gw.url, "-o", str(out), env=env)
    assert started.returncode == 0, started.stderr
    assert "session started" in started.stderr and "export HTTPS_PROXY=" in started.stdout
    try:
        status = inspector("proxy", "status", env=env)
        assert status.returncode == 0 and "0 flows" in status.stdout
        # A separate shell that knows nothing of inspector but the printed lines.
        shell_env = base_env(ANTHROPIC_API_KEY=key, CLAUDE_CODE_MAX_RETRIES="0")
        claude = subprocess.run(["bash", "-c", started.stdout + "\nclaude -p hi"], env=shell_env,
                                capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert "Hello from the inspector fake upstream." in claude.stdout, claude.stdout + claude.stderr
        status = inspector("proxy", "status", env=env)
        assert "flows (" in status.stdout and "off-base-host" in status.stdout
    finally:
        stopped = inspector("proxy", "stop", env=env)
    assert stopped.returncode == 0 and f"capture: {out}" in stopped.stderr
    cap = load_capture(out)
    assert cap.meta["complete"] is True and cap.meta["session"] is True
    main = [f for f in cap.flows if f.request.url.startswith(gw.url)]
    side = [f for f in cap.flows if f.request.host == "api.anthropic.com"]
    assert main and main[0].status == 200 and main[0].request.path.startswith("/v1/messages")
    assert side and all("off-base-host" in flag_codes(f) for f in side)
    assert any("credential-leak" in flag_codes(f) for f in side)
    assert inspector("proxy", "status", env=env).returncode == 1


def test_one_session_per_state_dir_and_env_file(tmp_path, upstream):
    gw = upstream()
    env = base_env(INSPECTOR_STATE_DIR=str(tmp_path / "state"))
    env_file = tmp_path / "github_env"
    env_file.write_text("EARLIER=kept\n")
    first = inspector("proxy", "start", "--offline", "--base-url", gw.url, "-o", str(tmp_path / "a.yaml"),
                      "--env-file", str(env_file), env=env)
    assert first.returncode == 0 and first.stdout == ""
    lines = env_file.read_text().splitlines()
    assert lines[0] == "EARLIER=kept" and all("=" in line and not line.startswith("export") for line in lines)
    assert {line.split("=")[0] for line in lines} >= {"HTTPS_PROXY", "NODE_EXTRA_CA_CERTS", "ANTHROPIC_BASE_URL"}
    second = inspector("proxy", "start", "--offline", env=env)
    assert second.returncode == 2 and "already running" in second.stderr
    assert inspector("proxy", "stop", env=env).returncode == 0


def test_stale_session_is_detected_and_cleaned_up(tmp_path, upstream):
    state = tmp_path / "state"
    state.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (state / "session.json").write_text(json.dumps({"pid": dead.pid, "output": str(tmp_path / "x.yaml")}))
    env = base_env(INSPECTOR_STATE_DIR=str(state))
    status = inspector("proxy", "status", env=env)
    assert status.returncode == 1 and "stale session" in status.stdout
    assert not (state / "session.json").exists()
    started = inspector("proxy", "start", "--offline", "--base-url", upstream().url, "-o", str(tmp_path / "b.yaml"),
                        env=env)
    assert started.returncode == 0, started.stderr
    assert inspector("proxy", "stop", env=env).returncode == 0


def test_stop_without_session_is_one_line(tmp_path):
    proc = inspector("proxy", "stop", env=base_env(INSPECTOR_STATE_DIR=str(tmp_path)))
    assert proc.returncode == 2 and "no session is running" in proc.stderr and "Traceback" not in proc.stderr
