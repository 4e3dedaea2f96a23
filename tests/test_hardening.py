"""Crash safety, odd traffic and TLS trust: each case leaves a clean recording or one line."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mitmproxy.net import encoding

from conftest import INSPECTOR, base_env, flag_codes
from inspector.serialize import load_capture

PY = sys.executable


def serve(handler) -> tuple[str, ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


class DiesMidStream(BaseHTTPRequestHandler):
    """Sends one SSE event, then the upstream 'crashes' (the socket is cut)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        event = b'event: message_start\ndata: {"type": "message_start"}\n\n'
        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.flush()
        time.sleep(0.3)
        self.connection.shutdown(socket.SHUT_RDWR)


def test_upstream_dying_mid_sse_leaves_partial_events_marked_incomplete(record):
    url, server = serve(DiesMidStream)
    run = record(["curl", "-sN", f"{url}/stream"], env=base_env(ANTHROPIC_BASE_URL=url))
    server.shutdown()
    (flow,) = run.capture.flows
    assert flow.incomplete is True and flow.error
    assert flow.response.status == 200
    assert flow.response.body["events"] == [{"event": "message_start", "data": {"type": "message_start"}}]


CHILD_WAITS_ON_STREAM = textwrap.dedent("""
    import os, sys, urllib.request
    resp = urllib.request.urlopen(urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages",
                                  data=b'{"stream": true}', headers={"x-api-key": "k" * 12}))
    print(resp.readline().decode().strip(), flush=True)   # the first event; the rest is 30 s away
    resp.read()
""")


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL-child"])
def test_signals_leave_a_valid_capture_with_the_open_flow_incomplete(tmp_path, upstream, how):
    gw = upstream(pause_after_first_event=30)
    out = tmp_path / "c.yaml"
    child = tmp_path / "child.py"
    child.write_text(CHILD_WAITS_ON_STREAM)
    proc = subprocess.Popen(
        [INSPECTOR, "record", "--offline", "-o", str(out), "--", "sh", "-c",
         f"curl -s {gw.url}/v1/models -o /dev/null; exec {PY} {child}"],
        env=base_env(ANTHROPIC_BASE_URL=gw.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"event: message_start\n"
    if how == "SIGKILL-child":
        child = int(subprocess.check_output(["pgrep", "-P", str(proc.pid), "-f", str(child)]).split()[0])
        subprocess.run(["kill", "-KILL", str(child)], check=True)
        expected = 128 + signal.SIGKILL
    else:
        sig = getattr(signal, how)
        proc.send_signal(sig)
        expected = 128 + sig
    proc.wait(timeout=30)
    assert proc.returncode == expected, proc.stderr.read()
    cap = load_capture(out)
    assert cap.meta["complete"] is True and cap.meta["exit_code"] == expected
    finished, streaming = sorted(cap.flows, key=lambda f: f.id)
    assert finished.status == 401 and not finished.incomplete  # /v1/models without a key
    assert streaming.incomplete is True and streaming.response.body["events"][0]["event"] == "message_start"


def test_capture_of_a_killed_inspector_is_still_valid_yaml(tmp_path, upstream):
    """SIGKILL cannot be caught: the file is as the last finished flow left it."""
    gw = upstream()
    out = tmp_path / "c.yaml"
    proc = subprocess.Popen([INSPECTOR, "record", "--offline", "-o", str(out), "--", "sh", "-c",
                             f"curl -s {gw.url}/ -o /dev/null; echo go; sleep 30"],
                            env=base_env(), stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"go\n"
    for _ in range(100):
        if '"id": 1,' in out.read_text():
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    cap = load_capture(out)
    assert cap.meta["complete"] is False and [f.request.path for f in cap.flows] == ["/"]
    subprocess.run(["pkill", "-f", "sleep 30"])


def test_a_dead_writer_is_one_line_and_exit_125_and_the_capture_keeps_its_flows(tmp_path, upstream):
    gw = upstream()
    out = tmp_path / "c.yaml"
    proc = subprocess.Popen([INSPECTOR, "record", "--offline", "-o", str(out), "--", "sh", "-c",
                             f"curl -s {gw.url}/first -o /dev/null; echo go; read _; curl -s {gw.url}/second"],
                            env=base_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"go\n"
    for _ in range(100):
        if '"id": 1,' in out.read_text():
            break
        time.sleep(0.05)
    subprocess.run(["pkill", "-KILL", "-P", str(proc.pid), "-f", "inspector.writer"], check=True)
    _, err = proc.communicate(b"\n", timeout=60)
    assert proc.returncode == 125
    assert err.decode().strip().count("\n") == 0 and "the capture writer" in err.decode(), err
    assert "Traceback" not in err.decode()
    cap = load_capture(out)
    assert cap.meta["complete"] is False and [f.request.path for f in cap.flows] == ["/first"]


class Encoded(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        enc = self.path.strip("/")
        body = encoding.encode(json.dumps({"encoding": enc, "text": "é" * 50}).encode(), enc)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-encoding", enc)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_compressed_bodies_are_decoded_and_say_so(record):
    url, server = serve(Encoded)
    names = ["gzip", "br", "zstd", "deflate"]
    run = record(["curl", "-s", "-o", "/dev/null", *[f"{url}/{n}" for n in names]])
    server.shutdown()
    bodies = {f.request.path.strip("/"): f.response.body for f in run.capture.flows}
    for name in names:
        assert bodies[name]["decoded_from"] == name
        assert bodies[name]["json"] == {"encoding": name, "text": "é" * 50}


def test_http2_client_huge_and_invalid_utf8_bodies(record, upstream, tmp_path):
    gw = upstream()
    big = "x" * (3 * 1024 * 1024)
    script = textwrap.dedent(f"""
        import os, urllib.request
        base = os.environ["ANTHROPIC_BASE_URL"]
        for body in (b'{{"system": "{big}"}}', b"\\xff\\xfe not utf-8 \\xc3"):
            try:
                urllib.request.urlopen(urllib.request.Request(base + "/v1/messages", data=body,
                                       headers={{"x-api-key": "k" * 12, "content-type": "application/json"}}))
            except Exception:
                pass
    """)
    (tmp_path / "client.py").write_text(script)
    run = record(["sh", "-c", f"curl -s --http2 https://api.anthropic.com/h2 -o /dev/null; {PY} {tmp_path}/client.py"],
                 "--body-limit", "1m", env=base_env(ANTHROPIC_BASE_URL=gw.url))
    h2, huge, binary = sorted(run.capture.flows, key=lambda f: f.id)
    assert h2.request.http_version == "HTTP/2.0" and h2.response.synthetic == "offline"
    assert huge.request.body["truncated"] is True and huge.request.body["size"] == len(big) + 14
    assert len(huge.request.body["text"]) == 1024 * 1024 and len(huge.request.body["sha256"]) == 64
    assert binary.request.body["base64"].startswith("//4gbm90")
    assert run.capture_path.stat().st_size < 2 * 1024 * 1024


def test_client_without_the_ca_is_flagged_tls_untrusted(record):
    run = record(["curl", "-s", "--cacert", "/etc/ssl/certs/ca-certificates.crt", "https://api.anthropic.com/"])
    assert run.proc.returncode != 0
    (flow,) = run.capture.flows
    assert flow.request.method == "CONNECT" and flow.request.host == "api.anthropic.com"
    (flag,) = [f for f in flow.flags if f.code == "tls-untrusted"]
    assert "api.anthropic.com" in flag.message and "NODE_EXTRA_CA_CERTS" in flag.message
    assert "no-response" not in flag_codes(flow)


def test_websocket_messages_are_recorded(record):
    import wsproto
    from wsproto.events import AcceptConnection, CloseConnection, Message, Request, TextMessage

    def ws_server(sock):
        conn, _ = sock.accept()
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        while True:
            data = conn.recv(65536)
            if not data:
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Request):
                    conn.sendall(ws.send(AcceptConnection()))
                elif isinstance(event, Message):
                    conn.sendall(ws.send(TextMessage(data=f"echo: {event.data}")))
                elif isinstance(event, CloseConnection):
                    conn.sendall(ws.send(event.response()))
                    conn.close()
                    return

    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=ws_server, args=(listener,), daemon=True).start()
    port = listener.getsockname()[1]
    client = textwrap.dedent(f"""
        import os, socket, wsproto
        from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage
        proxy = os.environ["HTTP_PROXY"].rsplit(":", 1)
        sock = socket.create_connection((proxy[0][7:], int(proxy[1])))
        sock.sendall(b"CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\n\\r\\n")
        assert b" 200 " in sock.recv(4096)
        ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        sock.sendall(ws.send(Request(host="127.0.0.1", target="/chat")))
        def events():
            ws.receive_data(sock.recv(65536))
            return list(ws.events())
        assert isinstance(events()[0], AcceptConnection)
        sock.sendall(ws.send(TextMessage(data="hello")))
        print(events()[0].data, flush=True)
        sock.sendall(ws.send(CloseConnection(code=1000)))
        events()
    """)
    run = record([PY, "-c", client])
    listener.close()
    assert run.proc.stdout == b"echo: hello\n", run.proc.stderr
    (flow,) = run.capture.flows
    assert flow.response.status == 101
    assert [(m["from"], m["text"]) for m in flow.websocket] == [("client", "hello"), ("server", "echo: hello")]
