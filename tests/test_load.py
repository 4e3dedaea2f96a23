"""Load: 10,000 requests at concurrency 50 through `record` give exactly 10,000 flows."""

from __future__ import annotations

import sys
import textwrap

from conftest import base_env

PY = sys.executable
CLIENT = textwrap.dedent("""
    import http.client, os, sys, threading
    from urllib.parse import urlsplit
    base = urlsplit(os.environ["ANTHROPIC_BASE_URL"])
    total, workers = int(sys.argv[1]), int(sys.argv[2])
    ok, lock = [], threading.Lock()
    def work(start):
        conn = http.client.HTTPConnection(base.hostname, base.port, timeout=60)
        for seq in range(start, total, workers):
            conn.request("GET", "/v1/models", headers={"x-api-key": "k" * 12, "x-seq": str(seq)})
            resp = conn.getresponse()
            resp.read()
            with lock:
                ok.append(resp.status)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(len(ok), ok.count(200))
""")


def test_ten_thousand_requests_at_concurrency_fifty(record, upstream, tmp_path):
    gw = upstream()
    (tmp_path / "client.py").write_text(CLIENT)
    run = record([PY, str(tmp_path / "client.py"), "10000", "50"], env=base_env(ANTHROPIC_BASE_URL=gw.url),
                 timeout=900)
    assert run.proc.stdout.split() == [b"10000", b"10000"], run.proc.stderr
    cap = run.capture
    seqs = sorted(int(f.request.header("x-seq")) for f in cap.flows)
    assert seqs == list(range(10000))  # none lost, none duplicated
    assert sorted(f.id for f in cap.flows) == list(range(1, 10001))
    assert cap.summary["flows"] == 10000 and cap.summary["by_status"] == {"200": 10000}
    peak = cap.meta["peak_rss_mb"] + cap.meta["writer_peak_rss_mb"]
    print(f"\npeak RSS of inspector (proxy + writer) for 10,000 flows: {peak:.1f} MB")
    # Flows are streamed to disk, not held: memory stays far below what 10,000 flows would take.
    assert peak < 200
