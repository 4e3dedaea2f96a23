"""An embedded mitmproxy, bound to loopback, running in a background thread."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from pathlib import Path

import certifi
from mitmproxy import addons, master, options

from .capture import Recorder
from .model import InspectorError, Origin

CA_CERT = "mitmproxy-ca-cert.pem"
CA_KEY = "mitmproxy-ca.pem"
CA_BUNDLE = "ca-bundle.pem"
LISTEN_HOST = "127.0.0.1"
QUIET_LOGGERS = ("mitmproxy", "asyncio")


def config_dir() -> Path:
    """Per-user directory for the CA: $INSPECTOR_CONFDIR, else $XDG_CONFIG_HOME/inspector."""
    if env := os.environ.get("INSPECTOR_CONFDIR"):
        return Path(env)
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "inspector"


def free_port(udp_too: bool = False) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LISTEN_HOST, 0))
        port = s.getsockname()[1]
    if udp_too:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((LISTEN_HOST, port))
    return port


class _LogCollector(logging.Handler):
    """Keeps mitmproxy's log away from the child's terminal; errors are kept for messages."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        kept = self.errors if record.levelno >= logging.ERROR else self.warnings
        if record.levelno >= logging.WARNING and len(kept) < 100:  # bounded: sessions can be long
            kept.append(record.getMessage())


class _Ready:
    def __init__(self):
        self.event = threading.Event()

    def running(self):
        self.event.set()


class EmbeddedProxy:
    """A regular proxy listener, plus a reverse listener for the base URL when there is one."""

    def __init__(self, recorder: Recorder, base: Origin | None, settings: dict, confdir: Path | None = None):
        self.recorder = recorder
        self.base = base
        self.settings = settings
        self.confdir = confdir or config_dir()
        self.proxy_port = 0
        self.reverse_port: int | None = None
        self._master: master.Master | None = None
        self._thread: threading.Thread | None = None
        self._ready = _Ready()
        self._log = _LogCollector()
        self._crash: BaseException | None = None

    @property
    def ca_cert(self) -> Path:
        return self.confdir / CA_CERT

    @property
    def ca_bundle(self) -> Path:
        return self.confdir / CA_BUNDLE

    def start(self, timeout: float = 30) -> None:
        self.confdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.proxy_port = free_port()
        modes = [f"regular@{LISTEN_HOST}:{self.proxy_port}"]
        if self.base:
            self.reverse_port = free_port(udp_too=self.base.scheme == "https")
            modes.append(f"reverse:{self.base.scheme}://{self.base.host}:{self.base.port}@{LISTEN_HOST}:{self.reverse_port}")
        # mitmproxy's log, and asyncio's about tasks cut short at shutdown, must not reach the
        # child's terminal (a traceback there would look like the child's own).
        for name in QUIET_LOGGERS:
            logging.getLogger(name).addHandler(self._log)
            logging.getLogger(name).propagate = False
        self._thread = threading.Thread(target=self._run, args=(modes,), name="mitmproxy", daemon=True)
        self._thread.start()
        while not self._ready.event.wait(0.05) and not self.recorder.failure:
            timeout -= 0.05
            if not self._thread.is_alive() or timeout <= 0:
                self.stop()
                why = self._crash or "; ".join(self._log.errors) or "it did not start in time"
                raise InspectorError(f"the embedded mitmproxy could not start: {why}")
        if self.recorder.failure:  # e.g. the capture file cannot be written
            self.stop()
            raise InspectorError(self.recorder.failure)
        if self._log.errors:  # e.g. a listener failed to bind
            self.stop()
            raise InspectorError(f"the embedded mitmproxy could not listen: {'; '.join(self._log.errors)}")
        os.chmod(self.confdir / CA_KEY, 0o600)
        self._write_bundle()

    def _run(self, modes: list[str]) -> None:
        async def main():
            opts = options.Options(confdir=str(self.confdir), listen_host=LISTEN_HOST, mode=modes)
            m = master.Master(opts)
            m.addons.add(*addons.default_addons())
            m.addons.add(self.recorder, self._ready)
            # Options of built-in addons exist only once the addons are loaded.
            opts.update(connection_strategy="lazy", **self.settings)
            self._master = m
            await m.run()

        try:
            asyncio.run(main())
        except BaseException as e:  # reported by start(); the thread must not die silently
            self._crash = e

    def _write_bundle(self) -> None:
        """System roots plus our CA, for runtimes whose CA variable replaces the default store."""
        system = Path(os.environ.get("SSL_CERT_FILE") or certifi.where())
        if system.resolve() == self.ca_bundle.resolve():
            system = Path(certifi.where())
        data = system.read_bytes() + b"\n" + self.ca_cert.read_bytes()
        tmp = self.ca_bundle.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.ca_bundle)

    def stop(self) -> None:
        if self._master is not None and self._thread is not None and self._thread.is_alive():
            self._master.shutdown()
        if self._thread is not None:
            self._thread.join()  # done() waits for the writer to finish the capture
        for name in QUIET_LOGGERS:
            logging.getLogger(name).removeHandler(self._log)
