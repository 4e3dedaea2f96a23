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

import re
import shutil
import subprocess
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
    probe = subprocess.run([exe, "-f", "--seccomp-bpf", "-qq", "-e", "trace=connect", "-o", "/dev/null", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["it failed"])[-1]
        return f"strace cannot trace here ({last}); ptrace may be forbidden (kernel.yama.ptrace_scope, seccomp)"
    return None


def traced(argv: list[str], log_path: str) -> list[str]:
    """argv run under strace, logging every connect() of the child and its descendants."""
    # -I3: strace ignores fatal signals (they are forwarded to the traced program instead), so it
    # never detaches and leaves the program running; it exits with the program's own status.
    return ["strace", "-I3", "-f", "--seccomp-bpf", "-qq", "-yy", "-Y", "-ttt", "-e", "trace=connect",
            "-e", "signal=none", "-o", log_path, "--", *argv]


def tracee(strace_pid: int) -> int | None:
    """The program strace started, which is where signals meant for the child must go."""
    try:
        children = open(f"/proc/{strace_pid}/task/{strace_pid}/children").read().split()
    except OSError:
        return None
    return int(children[0]) if children else None


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
