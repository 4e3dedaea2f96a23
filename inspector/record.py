"""`inspector record`: run a command behind the embedded proxy and write its capture."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import termios
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from . import bypass
from .capture import DEFAULT_BODY_LIMIT, Recorder, default_output
from .flags import Summary
from .model import InspectorError, Origin
from .proxy import EmbeddedProxy

# Exit codes of our own, as `env` and `docker run` use them; otherwise record exits with the child's code.
EXIT_INSPECTOR_ERROR = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class RecordOptions:
    command: Sequence[str]
    base_url: str | None = None
    output: Path | None = None
    offline: bool = False
    body_limit: int = DEFAULT_BODY_LIMIT
    redact: bool = True
    bypass_detection: str = "auto"  # auto: on when strace works here; on: fail if it does not; off
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


def child_env(env: Mapping[str, str], proxy: EmbeddedProxy) -> dict[str, str]:
    """The child's environment: every runtime pointed at the proxy and trusting its CA."""
    out = dict(env)
    proxy_url = f"http://127.0.0.1:{proxy.proxy_port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        out[name] = proxy_url
    out["NODE_USE_ENV_PROXY"] = "1"  # Node >= 22.21 / 24.5 fetch honours the proxy variables with this
    out["NODE_EXTRA_CA_CERTS"] = str(proxy.ca_cert)  # Node and Bun add it to their roots
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        out[name] = str(proxy.ca_bundle)  # these replace the roots, so the bundle has the system's too
    if proxy.base and proxy.reverse_port:
        # Node 20's fetch ignores HTTPS_PROXY; the base URL's traffic is caught by the reverse listener.
        out["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{proxy.reverse_port}{proxy.base.path}"
    return out


def resolve_command(command: Sequence[str], env: Mapping[str, str]) -> list[str]:
    if not command:
        raise InspectorError("no command given; usage: inspector record [OPTIONS] -- COMMAND [ARGS]...")
    exe = command[0]
    found = shutil.which(exe, path=env.get("PATH", os.defpath))
    if found is None:
        code = EXIT_NOT_EXECUTABLE if os.path.exists(exe) else EXIT_NOT_FOUND
        what = "is not executable" if code == EXIT_NOT_EXECUTABLE else "was not found on PATH"
        raise InspectorError(f"command {exe!r} {what}; check its name, or give its full path", code)
    return [found, *command[1:]]


class StatusLine:
    """A live `N requests · M flags` line on a terminal's stderr; silent elsewhere."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.live = stream.isatty()
        self.shown = False

    def __call__(self, summary: Summary) -> None:
        if self.live:
            self.stream.write(f"\r\x1b[K[inspector] {summary.flows} requests · {summary.flag_count} flags")
            self.stream.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def record(opts: RecordOptions, stderr: TextIO = sys.stderr) -> int:
    """Run the command behind the proxy; return its exit code."""
    env = dict(opts.env)
    argv = resolve_command(opts.command, env)
    base_url = opts.base_url or env.get("ANTHROPIC_BASE_URL") or None
    base = Origin.parse(base_url) if base_url else None
    output = Path(opts.output) if opts.output else default_output(opts.command[0])
    status = StatusLine(stderr)
    recorder, proxy, cenv = start_recording(env, base, output, opts.offline, opts.body_limit, opts.redact,
                                            meta={"exit_code": None}, on_flow=status, command=list(opts.command))
    tracer = start_bypass_detection(opts.bypass_detection, recorder.meta)
    code = None
    try:
        code = run_child(tracer.wrap(argv) if tracer else argv, cenv)
    finally:
        recorder.meta["exit_code"] = code
        if tracer:
            listeners = {("127.0.0.1", p) for p in (proxy.proxy_port, proxy.reverse_port) if p}
            recorder.late_flows = bypass.as_flows(tracer.finish(listeners), 0)
        proxy.stop()
        status.clear()
    if recorder.failure:
        raise InspectorError(f"{recorder.failure}; {output} holds the flows written until then")
    note = "" if base else " (no base URL: set ANTHROPIC_BASE_URL or --base-url to check hosts)"
    stderr.write(f"inspector: {recorder.summary.line()}{note}; capture: {output}\n")
    return code


def start_recording(env: dict[str, str], base: Origin | None, output: Path | str, offline: bool, body_limit: int,
                    redact: bool, meta: dict, on_flow=None,
                    command: list[str] | None = None) -> tuple[Recorder, EmbeddedProxy, dict[str, str]]:
    """Start the recorder behind the embedded proxy; return both and the environment a client needs."""
    recorder = Recorder(env=env, meta=meta, on_flow=on_flow, command=command)
    proxy = EmbeddedProxy(recorder, base, {
        "inspector_base_url": base.url if base else "",
        "inspector_output": str(output),
        "inspector_offline": offline,
        "inspector_body_limit": body_limit,
        "inspector_redact": redact,
    })
    proxy.start()
    recorder.meta["listeners"] = {"proxy": f"127.0.0.1:{proxy.proxy_port}",
                                  "reverse": f"127.0.0.1:{proxy.reverse_port}" if proxy.reverse_port else None}
    client_env = child_env(env, proxy)
    recorder.meta["injected_env"] = {k: v for k, v in client_env.items() if env.get(k) != v}
    return recorder, proxy, client_env


def start_bypass_detection(mode: str, meta: dict) -> bypass.Tracer | None:
    """A tracer when bypass detection runs; meta says whether it does, and why not."""
    why_not = "turned off with --bypass-detection off" if mode == "off" else bypass.unavailable()
    if why_not:
        if mode == "on":
            raise InspectorError(f"bypass detection is unavailable: {why_not}; use --bypass-detection auto or off")
        meta["bypass_detection"] = {"enabled": False, "reason": why_not}
        return None
    meta["bypass_detection"] = {"enabled": True, "mechanism": "strace: connect() of the command and its children"}
    return bypass.Tracer()


def run_child(argv: list[str], env: dict[str, str]) -> int:
    """Run the child with our stdio; forward signals; exit code as a shell reports it."""
    tty = _controlling_tty()
    try:
        # On a terminal the child gets its own foreground process group, so a Ctrl-C reaches
        # it once (from the terminal) rather than twice (terminal, then our forwarding).
        child = subprocess.Popen(argv, env=env, process_group=0 if tty is not None else None)
    except OSError as e:
        raise InspectorError(f"cannot run {argv[0]!r}: {e.strerror}", EXIT_NOT_EXECUTABLE) from None
    received = []

    def forward(sig, _frame):
        # A child that ignores two signals is killed by the third, so Ctrl-C always ends a run.
        received.append(sig)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL if len(received) >= 3 else sig)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    if tty is not None:
        _give_terminal(tty, child.pid)
    try:
        code = child.wait()
    finally:
        if tty is not None:
            _give_terminal(tty, os.getpgrp())
            os.close(tty)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def _controlling_tty() -> int | None:
    """Our terminal's fd when we are its foreground job and stdin is on it, else None."""
    if not sys.stdin.isatty():
        return None
    try:
        fd = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        return None
    if os.tcgetpgrp(fd) != os.getpgrp():
        os.close(fd)
        return None
    return fd


def _give_terminal(fd: int, pgrp: int) -> None:
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, pgrp)
    except (OSError, termios.error):
        pass
    finally:
        signal.signal(signal.SIGTTOU, old)
