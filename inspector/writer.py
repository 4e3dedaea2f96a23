"""The capture's writer, in a process of its own.

Converting, redacting, flagging and serializing a flow costs milliseconds of CPU. On mitmproxy's
event loop (or in a thread of its process, which shares the GIL) that time is added to every
request; here it runs on another core. The proxy side only copies each finished flow into plain
data and pickles it onto a queue; a feeder thread writes the queue into this process's stdin.

Frames (parent → writer, stdin): 8-byte length, then a pickle of one message:
    ("start", config)   first: output path, meta, secrets, rules; the writer answers "ready" or "error"
    ("raw", snapshot)   a flow as `capture.snapshot` copied it, converted here
    ("flow", Flow)      a flow that is already a model Flow (TLS refusals, bypass connections)
    ("close", meta)     final meta: the capture is rewritten complete, then the writer exits
Lines (writer → parent, stdout): JSON, one per flow written: {"host", "status", "flags"}, so the
status line and summary are counted where they are shown.

If the parent dies, the writer reads EOF, leaves the capture as it is (`complete: false`, every
flow it was given) and exits. The writer ignores the terminal's signals (its own process group).
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import resource
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from .model import InspectorError

MAX_QUEUED = 32 * 1024 * 1024  # bytes of pickled flows waiting for the writer; past it the proxy waits
_LEN = 8


class WriterProcess:
    """The proxy side: start the writer, hand it messages without blocking, collect its counts."""

    def __init__(self, config: dict, on_flow: Callable[[dict], None]):
        package_root = str(Path(__file__).resolve().parent.parent)  # so `mitmdump -s` from a checkout works too
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen([sys.executable, "-m", "inspector.writer"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, process_group=0)
        self.on_flow = on_flow
        self.failure: str | None = None
        self._frames: collections.deque[bytes | None] = collections.deque()
        self._queued = 0
        self._cond = threading.Condition()
        _write_frame(self.proc.stdin, pickle.dumps(("start", config)))
        answer = json.loads(self.proc.stdout.readline() or b'{"error": "the capture writer did not start"}')
        if "error" in answer:
            self.proc.wait()
            raise InspectorError(answer["error"])
        self._feeder = threading.Thread(target=self._feed, name="inspector-feeder")
        self._reader = threading.Thread(target=self._read, name="inspector-counts", daemon=True)
        self._feeder.start()
        self._reader.start()

    def send(self, kind: str, payload) -> None:
        frame = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
        with self._cond:
            while self._queued and self._queued + len(frame) > MAX_QUEUED and self.failure is None:
                self._cond.wait()
            self._frames.append(frame)
            self._queued += len(frame)
            self._cond.notify_all()

    def close(self, meta: dict) -> str | None:
        """Finish the capture with this final meta; wait for the writer; return why it failed, if it did."""
        self.send("close", meta)
        with self._cond:
            self._frames.append(None)
            self._cond.notify_all()
        self._feeder.join()
        code = self.proc.wait()
        self._reader.join()
        if code != 0 and self.failure is None:
            self.failure = f"the capture writer exited with status {code}"
        return self.failure

    def _feed(self) -> None:
        stdin = self.proc.stdin
        while True:
            with self._cond:
                while not self._frames:
                    self._cond.wait()
                frame = self._frames.popleft()
            if frame is None:
                break
            try:
                _write_frame(stdin, frame)
            except OSError as e:  # the writer died; its exit status says more
                self.failure = self.failure or f"the capture writer stopped ({e.strerror})"
            with self._cond:
                self._queued -= len(frame)
                self._cond.notify_all()
        try:
            stdin.close()
        except OSError:
            pass

    def _read(self) -> None:
        for line in self.proc.stdout:
            message = json.loads(line)
            if "error" in message:
                self.failure = message["error"]
            else:
                self.on_flow(message)


def _write_frame(stream, frame: bytes) -> None:
    stream.write(len(frame).to_bytes(_LEN, "big"))
    stream.write(frame)
    stream.flush()


def _read_frame(stream):
    head = stream.read(_LEN)
    if len(head) < _LEN:
        return None
    size = int.from_bytes(head, "big")
    body = stream.read(size)
    return pickle.loads(body) if len(body) == size else None  # short: the parent died mid-frame


def peak_rss_mb() -> float:
    """This process's peak RSS. Not getrusage's, which counts the memory its parent had at fork."""
    try:
        status = Path("/proc/self/status").read_text()
        return round(int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1]) / 1024, 1)
    except (OSError, StopIteration):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> int:
    """The writer process (`python -m inspector.writer`): see the module docstring."""
    from .convert import to_flow
    from .flags import RuleContext, flags_for
    from .model import Origin
    from .redact import Redactor
    from .serialize import CaptureWriter

    stdin, out = sys.stdin.buffer, sys.stdout
    start = _read_frame(stdin)
    if start is None:
        return 0
    config = start[1]
    try:
        writer = CaptureWriter(config["output"], config["meta"])
    except OSError as e:
        out.write(json.dumps({"error": f"cannot write the capture {config['output']}: {e.strerror}; "
                                       "choose another path with -o"}) + "\n")
        return 1
    base = Origin.parse(config["base_url"]) if config["base_url"] else None
    redactor = Redactor(config["secrets"], enabled=config["redact"])
    rules = RuleContext(base=base, raw_secrets={} if config["redact"] else config["secrets"])
    out.write('{"ready": true}\n')
    out.flush()
    try:
        while (message := _read_frame(stdin)) is not None:
            kind, payload = message
            if kind == "close":
                payload["writer_peak_rss_mb"] = peak_rss_mb()
                writer.close(**payload)
                break
            flow = to_flow(payload, redactor, config["body_limit"]) if kind == "raw" else payload
            flow.flags = flags_for(flow, rules)
            writer.write(flow)
            out.write(json.dumps({"host": f"{flow.request.host}:{flow.request.port}", "status": flow.status,
                                  "flags": [f.code for f in flow.flags]}) + "\n")
            out.flush()
    except Exception as e:  # noqa: BLE001 - the parent reports it in one line; the capture keeps what was written
        out.write(json.dumps({"error": f"the capture writer failed: {type(e).__name__}: {e}"}) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the capture ends
    os.nice(10)  # the proxy, which the client waits for, gets a busy CPU first; the writer catches up after
    sys.exit(main())
