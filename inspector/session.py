"""`inspector proxy start|stop|status`: the recorder as a background session that other processes
join through their environment, for programs you cannot wrap (a GitHub Action, a service).

The session runs as `python -m inspector.session STATE_DIR`. It writes STATE_DIR/session.json
once it listens, and deletes it as its very last step, after the capture is complete.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .capture import default_output
from .flags import Summary
from .model import InspectorError, Origin
from .bypass import pid_alive
from .record import start_recording
from .serialize import load_capture

SESSION = "session.json"
CONFIG = "config.json"
LOG = "session.log"


def state_dir(given: str | None = None) -> Path:
    """$INSPECTOR_STATE_DIR, else $XDG_STATE_HOME/inspector, else ~/.local/state/inspector."""
    if given or os.environ.get("INSPECTOR_STATE_DIR"):
        return Path(given or os.environ["INSPECTOR_STATE_DIR"])
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "inspector"


def read_session(directory: Path) -> dict | None:
    """The running session's record; a stale one (dead pid) is removed and None returned."""
    path = directory / SESSION
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        info = {"pid": -1}
    if info.get("pid", -1) > 0 and pid_alive(info["pid"]):
        return info
    path.unlink(missing_ok=True)
    info["stale"] = True
    return info


def start(directory: Path, base_url: str | None, output: str | None, offline: bool, body_limit: int,
          redact: bool, env: dict[str, str], timeout: float = 30) -> dict:
    """Start a background session; return its record (pid, capture, env for other processes)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    current = read_session(directory)
    if current and not current.get("stale"):
        raise InspectorError(f"a session is already running in {directory} (pid {current['pid']}); "
                             "stop it with `inspector proxy stop`, or use another --state-dir")
    base = base_url or env.get("ANTHROPIC_BASE_URL") or None
    if base:
        Origin.parse(base)  # fail here, in the foreground, on a bad URL
    config = {"base_url": base, "offline": offline, "body_limit": body_limit, "redact": redact,
              "output": str(Path(output or default_output("session")).resolve())}
    (directory / CONFIG).write_text(json.dumps(config))
    with open(directory / LOG, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "inspector.session", str(directory)], env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (info := read_session(directory)) and not info.get("stale"):
            return info
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    tail = (directory / LOG).read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
    raise InspectorError(f"the session did not start: {tail[0]}")


def stop(directory: Path, timeout: float = 60) -> str:
    """Stop the session, wait until its capture is complete, and return the summary line."""
    info = read_session(directory)
    if info is None:
        raise InspectorError(f"no session is running in {directory}; start one with `inspector proxy start`")
    if info.get("stale"):
        raise InspectorError(f"the session in {directory} had died (pid {info.get('pid')}); its capture "
                             f"{info.get('output', '?')} holds every flow that finished")
    os.kill(info["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while (directory / SESSION).exists() and pid_alive(info["pid"]):
        if time.monotonic() > deadline:
            raise InspectorError(f"the session (pid {info['pid']}) did not stop within {timeout:.0f} s")
        time.sleep(0.05)
    (directory / SESSION).unlink(missing_ok=True)
    return summary_line(info["output"])


def summary_line(output: str) -> str:
    return f"inspector: {Summary.of(load_capture(output).flows).line()}; capture: {output}"


def status(directory: Path) -> tuple[str, bool]:
    """A line about the session, and whether one is running."""
    info = read_session(directory)
    if info is None:
        return f"no session in {directory}", False
    if info.get("stale"):
        return f"stale session (pid {info.get('pid')} is gone); cleaned up", False
    summary = Summary.of(load_capture(info["output"]).flows)
    return f"recording since {info['started_at']} (pid {info['pid']}): {summary.line()}; capture: {info['output']}", True


def env_lines(env: dict[str, str], shell: bool) -> str:
    if shell:
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    return "".join(f"{k}={v}\n" for k, v in env.items())


def serve(directory: Path) -> None:
    """The session process: record until SIGTERM or SIGINT, then finish the capture."""
    config = json.loads((directory / CONFIG).read_text())
    env = dict(os.environ)
    base = Origin.parse(config["base_url"]) if config["base_url"] else None
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stopping.set())
    recorder, proxy, _ = start_recording(env, base, config["output"], config["offline"], config["body_limit"],
                                         config["redact"], meta={"session": True})
    joined = recorder.meta["injected_env"]
    info = {"pid": os.getpid(), "output": config["output"], "base_url": base.url if base else None,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "env": joined}
    tmp = directory / (SESSION + ".tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, directory / SESSION)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        proxy.stop()
        (directory / SESSION).unlink(missing_ok=True)


if __name__ == "__main__":
    try:
        serve(Path(sys.argv[1]))
    except InspectorError as e:
        print(f"inspector: error: {e}", file=sys.stderr)
        sys.exit(125)
