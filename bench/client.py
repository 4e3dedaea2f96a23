"""The benchmark client: http.client on one keep-alive connection, through $HTTP_PROXY when set.

    client.py posts URL N BODY_FILE [WARMUP]  N sequential POSTs after WARMUP (5) untimed ones; ms per request
    client.py sse URL BODY_FILE               one POST answered with SSE; ms to the first event and to the end

It prints one JSON line. The proxy variable is the one `inspector record` injects into its child.
Like a new agent session, each run puts a new session id in the body (so two runs' captures differ).
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
import uuid
from urllib.parse import urlsplit

SESSION_ID = b"00000000-0000-4000-8000-000000000000"  # the placeholder bench/run.py writes


def load_body(path: str) -> bytes:
    return open(path, "rb").read().replace(SESSION_ID, str(uuid.uuid4()).encode())


def connect(url: str) -> tuple[http.client.HTTPConnection, str]:
    """A connection to the proxy (absolute-form target) or straight to the server."""
    proxy = os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy")
    target = urlsplit(url)
    where = urlsplit(proxy) if proxy else target
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=120)
    return conn, url if proxy else (target.path or "/")


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> http.client.HTTPResponse:
    conn.request("POST", path, body=body, headers={"content-type": "application/json"})
    return conn.getresponse()


def posts(url: str, n: int, body: bytes, warmup: int = 5) -> dict:
    conn, path = connect(url)
    statuses: dict[int, int] = {}
    start = time.perf_counter()
    for i in range(warmup + n):
        if i == warmup:
            start = time.perf_counter()
        resp = post(conn, path, body)
        resp.read()
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
    elapsed = time.perf_counter() - start
    if set(statuses) != {200}:
        sys.exit(f"unexpected statuses: {statuses}")
    return {"requests": n, "ms_per_request": elapsed * 1000 / n}


def sse(url: str, body: bytes) -> dict:
    start = time.perf_counter()
    conn, path = connect(url)
    resp = post(conn, path, body)
    seen = b""
    while b"\n\n" not in seen:  # bounded: read1 returns b"" at the end of the body
        chunk = resp.read1(65536)
        if not chunk:
            sys.exit("the stream ended before its first event")
        seen += chunk
    first = time.perf_counter()
    resp.read()
    end = time.perf_counter()
    return {"first_event_ms": (first - start) * 1000, "total_ms": (end - start) * 1000, "status": resp.status}


def main(argv: list[str]) -> None:
    mode, url = argv[0], argv[1]
    if mode == "posts":
        result = posts(url, int(argv[2]), load_body(argv[3]), *map(int, argv[4:5]))
    elif mode == "sse":
        result = sse(url, load_body(argv[2]))
    else:
        sys.exit(f"unknown mode {mode!r}; see the docstring")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
