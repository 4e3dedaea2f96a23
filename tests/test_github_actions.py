"""docs/github-actions.md: every `inspector` command in the workflow runs, against a local gateway."""

from __future__ import annotations

import re
import shlex
import subprocess

import yaml

from conftest import ROOT, base_env, fake_key, require_clients
from inspector.serialize import load_capture


def workflow() -> dict:
    text = (ROOT / "docs" / "github-actions.md").read_text()
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))


def github_expr(value: str, secrets: dict) -> str:
    return re.sub(r"\$\{\{\s*secrets\.(\w+)\s*\}\}", lambda m: secrets[m.group(1)], value)


def run_job(job: dict, secrets: dict, workdir, state) -> list[str]:
    """Run a job's steps as GitHub would, but offline: `inspector` lines run for real, the
    Claude Code action is played by the real Claude Code binary, installs are skipped."""
    env = base_env(**{k: github_expr(v, secrets) for k, v in job.get("env", {}).items()},
                   INSPECTOR_STATE_DIR=str(state), INSPECTOR_RECORD_OFFLINE="1",
                   INSPECTOR_PROXY_START_OFFLINE="1", CLAUDE_CODE_MAX_RETRIES="0")
    github_env = workdir / "github_env"
    github_env.touch()
    ran = []
    for step in job["steps"]:
        for line in github_env.read_text().splitlines():
            name, _, value = line.partition("=")
            env[name] = value
        if step.get("uses", "").startswith("anthropics/claude-code-action"):
            cmd = shlex.join(["claude", "-p", step["with"]["prompt"]])
        elif "inspector" in step.get("run", "") and "pip install" not in step["run"]:
            cmd = step["run"]
        else:
            continue
        proc = subprocess.run(["bash", "-ec", cmd], env=env | {"GITHUB_ENV": str(github_env)}, cwd=workdir,
                              capture_output=True, text=True, timeout=180)
        ok = proc.returncode == 0 or step.get("continue-on-error") or "|| true" in cmd or "--fail-on error" in cmd
        assert ok, (cmd, proc.stdout, proc.stderr)
        ran.append(f"{proc.returncode} {cmd}")
    return ran


def test_workflow_recipe_runs(tmp_path, upstream):
    require_clients()
    gw = upstream()
    secrets = {"GATEWAY_URL": gw.url, "GATEWAY_KEY": fake_key()}
    jobs = workflow()["jobs"]

    action_dir = tmp_path / "action"
    action_dir.mkdir()
    ran = run_job(jobs["action"], secrets, action_dir, tmp_path / "state")
    assert [r.split(" ", 2)[1:] for r in ran][:3] == [
        ["inspector", "proxy start -o captures/action.yaml --env-file \"$GITHUB_ENV\""],
        ["claude", "-p 'Say hi'"], ["inspector", "proxy stop"]]
    cap = load_capture(action_dir / "captures" / "action.yaml")
    assert any(f.request.url.startswith(gw.url) and f.status == 200 for f in cap.flows)
    # The side calls carry the key, so the gate fails as it should.
    assert ran[-1].startswith("1 inspector check") and "credential-leak" in str(cap.summary["by_flag"])

    cli_dir = tmp_path / "cli"
    cli_dir.mkdir()
    ran = run_job(jobs["cli"], secrets, cli_dir, tmp_path / "state2")
    cap = load_capture(cli_dir / "captures" / "cli.yaml")
    assert cap.meta["command"] == ["claude", "-p", "hi"] and cap.meta["exit_code"] == 0
    assert ran[-1].startswith("1 inspector check")
