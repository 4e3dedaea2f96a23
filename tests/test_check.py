"""`inspector check`: the CI gate over flags."""

from __future__ import annotations

import json
import subprocess

from conftest import INSPECTOR, base_env, fake_key


def check(path, *args):
    return subprocess.run([INSPECTOR, "check", str(path), *args], capture_output=True, text=True)


def test_clean_run_passes_and_side_call_with_key_fails(record, upstream):
    gw = upstream()
    key = fake_key()
    env = base_env(ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_API_KEY=key)
    clean = record(["curl", "-s", "-H", f"x-api-key: {key}", f"{gw.url}/v1/models"], env=env)
    leaky = record(["curl", "-s", "-H", f"x-api-key: {key}", f"{gw.url}/v1/models",
                    "https://api.anthropic.com/api/hello"], env=env)
    ok = check(clean.capture_path)
    assert ok.returncode == 0 and "PASS" in ok.stdout
    bad = check(leaky.capture_path)
    assert bad.returncode == 1 and "credential-leak ×1" in bad.stdout and "FAIL" in bad.stdout
    assert check(leaky.capture_path, "--allow-host", "api.anthropic.com").returncode == 0
    # off-base-host is a warning: failing only on errors still catches the leak (an error)
    assert check(leaky.capture_path, "--fail-on", "error").returncode == 1
    data = json.loads(check(leaky.capture_path, "--format", "json").stdout)
    assert data["passed"] is False and {f["code"] for f in data["flags"]} == {"off-base-host", "credential-leak"}
