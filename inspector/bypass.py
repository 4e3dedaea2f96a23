"""Bypass detection: TCP connections the child opens around inspector's listeners.

A proxy only sees what is sent to it. Node 20's fetch ignores HTTPS_PROXY, Go and Bun skip the
proxy for loopback, and any client may hard-code a host. To see those connections we trace the
child's connect() calls with strace (`-f`, so descendants too; `--seccomp-bpf`, so only connect
stops the child). Why strace: it is one package, needs no kernel features beyond ptrace and works
unprivileged for one's own processes; a network namespace would *force* traffic through the proxy
but needs root, a TUN or veth device and a transparent-mode proxy; mitmproxy's local mode needs
eBPF and mitmproxy >= 11.1. strace observes and does not stop a bypass: in --offline mode a
connection that skips the proxy still reaches its destination.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

from .model import Flow, Request, iso

# 26819<HTTP Client> 1733342400.123456 connect(17<TCP:[98942]>, {sa_family=AF_INET, sin_port=htons(8765),
#   sin_addr=inet_addr("127.0.0.1")}, 16) = -1 EINPROGRESS (Operation now in progress)
LINE = re.compile(
    r"^(?P<pid>\d+)<(?P<comm>[^>]*)> (?P<ts>\d+\.\d+) connect\(\d+<(?P<proto>TCP|TCPv6)[^>]*>, "
    r"\{sa_family=AF_INET6?, sin6?_port=htons\((?P<port>\d+)\), .*?"
    r"(?:inet_addr\(\"(?P<ip4>[^\"]+)\"\)|inet_pton\(AF_INET6, \"(?P<ip6>[^\"]+)\")"
    r".*\) = (?P<result>.*)$")


@dataclass
class Connection:
    pid: int
    program: str
    host: str
    port: int
    at: float
    result: str


def unavailable() -> str | None:
    """Why bypass detection cannot run here, or None if it can."""
    exe = shutil.which("strace")
    if exe is None:
        return "strace is not installed (apt-get install strace)"
    probe = subprocess.run([exe, "-DD", "-f", "--seccomp-bpf", "-qq", "-e", "trace=connect", "-o", "/dev/null", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["it failed"])[-1]
        return f"strace cannot trace here ({last}); ptrace may be forbidden (kernel.yama.ptrace_scope, seccomp)"
    return None


class Tracer:
    """strace as a detached grandchild (-DD): the command stays inspector's own child, so its exit
    code and signals are untouched, and a background process it leaves behind does not hold up the
    end of the recording. When the command exits, strace is told to detach and the log is read."""

    def __init__(self):
        fd, self.log_path = tempfile.mkstemp(prefix="inspector-strace-", suffix=".log")
        os.close(fd)

    def _tracers(self) -> list[int]:
        """strace runs as a detached grandchild: find it by the log path only it was given."""
        found = []
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and self.log_path.encode() in open(f"/proc/{entry}/cmdline", "rb").read():
                    found.append(int(entry))
            except OSError:
                continue
        return found

    def wrap(self, argv: list[str]) -> list[str]:
        # -I1: strace may be stopped by SIGTERM; -DD keeps it in its own process group, away
        # from the terminal's Ctrl-C. --seccomp-bpf: only connect() stops the command.
        return ["strace", "-DD", "-I1", "-f", "--seccomp-bpf", "-qq", "-yy", "-Y", "-ttt", "-e", "trace=connect",
                "-e", "signal=none", "-o", self.log_path, "--", *argv]

    def finish(self, listeners: set[tuple[str, int]], timeout: float = 2.0) -> list[Connection]:
        """Detach strace from what is left running, then return the connections that bypassed."""
        tracers = self._tracers()
        for pid in tracers:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while any(pid_alive(p) for p in tracers) and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            return parse(open(self.log_path, errors="replace").read(), listeners)
        finally:
            os.unlink(self.log_path)


def pid_alive(pid: int) -> bool:
    """True while a process runs; a zombie (finished, not yet reaped) counts as gone."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


def parse(log: str, listeners: set[tuple[str, int]]) -> list[Connection]:
    """TCP connections in an strace log that did not go to one of our listeners."""
    found = []
    for line in log.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        host = m.group("ip4") or m.group("ip6")
        port = int(m.group("port"))
        if (host, port) in listeners or (host in ("::1", "::ffff:127.0.0.1") and ("127.0.0.1", port) in listeners):
            continue
        found.append(Connection(int(m.group("pid")), m.group("comm"), host, port, float(m.group("ts")),
                                m.group("result").strip()))
    return found


def as_flows(connections: list[Connection], first_id: int) -> list[Flow]:
    """Each bypass as a flow of its own (method CONNECT, via: bypass), so it is listed and flagged."""
    flows = []
    for i, c in enumerate(connections):
        netloc = f"[{c.host}]:{c.port}" if ":" in c.host else f"{c.host}:{c.port}"
        request = Request("CONNECT", f"tcp://{netloc}", "tcp", c.host, c.port, "", {}, "", [])
        ok = c.result == "0" or "EINPROGRESS" in c.result
        flows.append(Flow(id=first_id + i, started_at=iso(c.at), request=request, via="bypass",
                          error=None if ok else f"connect() = {c.result}",
                          process={"pid": c.pid, "program": c.program}))
    return flows
