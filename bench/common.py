"""Shared pieces of the benchmarks: paths, machine facts, a fast upstream, processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PY = sys.executable
INSPECTOR = str(BIN / "inspector")
MITMDUMP = str(BIN / "mitmdump")
CLIENT = str(ROOT / "bench" / "client.py")
HOST = "127.0.0.1"
# The agent's real 85 KB request (Claude Code 2.1.197, redacted), from the demo capture the tests keep.
AGENT_CAPTURE = ROOT / "tests" / "golden" / "captures" / "agent.yaml"
# Variables of this machine that would change what a child does.
SCRUBBED_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy",
                "NO_PROXY", "no_proxy", "NODE_USE_ENV_PROXY", "NODE_OPTIONS")


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gb": round(mem_kb / 1024**2, 1),
            "kernel": platform.release()}


def versions(inspector_src: str | None) -> dict:
    """Versions as the benchmarked inspector sees them (it may come from --inspector-src)."""
    code = ("import json, platform, yaml, mitmproxy.version as m, inspector; "
            "print(json.dumps({'python': platform.python_version(), 'mitmproxy': m.VERSION, "
            "'inspector': inspector.__version__, 'pyyaml': yaml.__version__, "
            "'libyaml': hasattr(yaml, 'CSafeLoader'), 'inspector_path': inspector.__file__}))")
    out = json.loads(subprocess.run([PY, "-c", code], env=bench_env(inspector_src=inspector_src),
                                    capture_output=True, check=True, timeout=60).stdout)
    out["inspector"] += f" (from {inspector_src})" if inspector_src else f" ({_commit()})"
    return out


def _commit() -> str:
    """HEAD, and whether inspector/ differs from it (other files do not change what is measured)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30).stdout.strip()

    changed = git("status", "--porcelain", "--", "inspector")
    return git("rev-parse", "--short", "HEAD") + (", with uncommitted changes in inspector/" if changed else "")


def bench_env(confdir: str | None = None, inspector_src: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in SCRUBBED_ENV and not k.startswith(("ANTHROPIC_", "CLAUDE_", "INSPECTOR_"))}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    if confdir:
        env["INSPECTOR_CONFDIR"] = confdir
    if inspector_src:  # a scratch copy of the repository, for before/after figures
        env["PYTHONPATH"] = inspector_src
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    """End a process we started: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# ---------------------------------------------------------------- upstreams


class _FastHandler(BaseHTTPRequestHandler):
    """Reads the request body and answers 200 with a small JSON, in one write, keep-alive."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    REPLY = b'{"id":"msg_bench","type":"message","role":"assistant","content":[],"stop_reason":"end_turn"}'
    RAW = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
           % (len(REPLY), REPLY))

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.wfile.write(self.RAW)

    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def fast_upstream():
    """A minimal fast upstream on 127.0.0.1 (threaded stdlib server); yields its URL."""
    server = ThreadingHTTPServer((HOST, 0), _FastHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="fast-upstream", daemon=True).start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def fake_upstream(pause: float = 0.0):
    """inspector's own Anthropic-compatible fake (SSE when the body says stream); yields its URL."""
    from inspector.fake_upstream import FakeUpstream, UpstreamConfig

    server = FakeUpstream(UpstreamConfig(require_auth="none", pause_after_first_event=pause)).start()
    try:
        yield server.url
    finally:
        server.stop()


# ---------------------------------------------------------------- proxies and clients


@contextlib.contextmanager
def mitmdump(confdir: str):
    """Bare mitmdump: same mitmproxy, no addon, lazy connections, quiet; yields its proxy URL."""
    port = free_port()
    proc = subprocess.Popen([MITMDUMP, "-q", "--listen-host", HOST, "-p", str(port),
                             "--set", "connection_strategy=lazy", "--set", f"confdir={confdir}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=bench_env())
    try:
        wait_port(port, proc)
        yield f"http://{HOST}:{port}"
    finally:
        stop(proc)


def client(args: list[str], env: dict[str, str], timeout: float = 600) -> dict:
    """Run bench/client.py and return the JSON line it prints."""
    proc = subprocess.run([PY, CLIENT, *args], env=env, capture_output=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"client failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def _vmhwm_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def _writer_pid(pid: int) -> int | None:
    children = " ".join(p.read_text() for p in Path(f"/proc/{pid}/task").glob("*/children"))  # any thread's
    for child in children.split():
        if b"inspector.writer" in Path(f"/proc/{child}/cmdline").read_bytes():
            return int(child)
    return None


def record(args: list[str], capture: Path, env: dict[str, str], timeout: float = 900) -> tuple[dict, dict]:
    """`inspector record --offline -o CAPTURE -- python client.py ARGS`: the client's JSON, and the
    peak RSS (MB) of inspector's two processes (proxy, writer) as /proc/PID/status VmHWM last showed it."""
    argv = [INSPECTOR, "record", "--offline", "-o", str(capture), "--", PY, CLIENT, *args]
    out_path, err_path = capture.with_suffix(".out"), capture.with_suffix(".err")
    hwm_kb = {"proxy": 0, "writer": 0}
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, cwd=capture.parent)
        writer, deadline = None, time.monotonic() + timeout
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError, StopIteration, ValueError):  # gone between poll and read
                    hwm_kb["proxy"] = _vmhwm_kb(proc.pid)
                    writer = writer or _writer_pid(proc.pid)
                    if writer:
                        hwm_kb["writer"] = _vmhwm_kb(writer)
                time.sleep(0.05)
        finally:
            stop(proc)
    if proc.returncode:
        raise RuntimeError(f"inspector record failed ({proc.returncode}): {err_path.read_text()[-2000:]}")
    return json.loads(out_path.read_bytes().splitlines()[-1]), {k: v / 1024 for k, v in hwm_kb.items()}
