"""Run every benchmark on 127.0.0.1 and rewrite docs/BENCHMARKS.md (issue #7).

    .venv/bin/python bench/run.py                      everything; about 7 minutes on 2 cores
    .venv/bin/python bench/run.py --only overhead sse  some benchmarks; prints JSON, leaves the doc alone
    .venv/bin/python bench/run.py --inspector-src DIR  benchmark another checkout (a before/after figure)

Each benchmark takes the median of --runs runs (at least 5); each ratio is taken within one run.
Not run by CI, and no test asserts on time.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import profiling as prof  # noqa: E402
from common import HOST, INSPECTOR, PY, ROOT, bench_env, median  # noqa: E402

DOC = ROOT / "docs" / "BENCHMARKS.md"
PROFILE_DIR = ROOT / "docs" / "profile"
COMMAND = ".venv/bin/python bench/run.py"
POSTS = 500
SESSION_FLOWS = 1000
SLICE_FLOWS = 100  # the pure-Python YAML fallback runs at ~2 MB/s, so it is timed on a slice
SSE_PAUSE = 2.0
BISECT_NS = (8, 32, 128)
SESSION_ID = "00000000-0000-4000-8000-000000000000"  # client.py puts a new uuid here in every run


def overhead(ctx) -> dict:
    """500 sequential 85 KB POSTs: direct, through bare mitmdump, through `inspector record`."""
    runs = []
    with common.fast_upstream() as up:
        args = ["posts", f"{up}/v1/messages", str(POSTS), str(ctx.body)]
        for i in range(ctx.runs):
            run = {"direct": common.client(args, bench_env())["ms_per_request"]}
            with common.mitmdump(ctx.confdir) as proxy:
                run["mitmdump"] = common.client(args, bench_env(HTTP_PROXY=proxy))["ms_per_request"]
            run["record"] = common.record(args, ctx.work / f"overhead-{i}.yaml", ctx.env)[0]["ms_per_request"]
            runs.append(run)
            ctx.log(f"overhead run {i + 1}: {run}")
    return {"requests": POSTS, "body_bytes": ctx.body.stat().st_size, "runs": runs,
            "median": {k: median([r[k] for r in runs]) for k in runs[0]},
            "record_vs_mitmdump": median([r["record"] / r["mitmdump"] for r in runs]),
            "mitmdump_vs_direct": median([r["mitmdump"] / r["direct"] for r in runs]),
            "record_vs_direct": median([r["record"] / r["direct"] for r in runs])}


def sse(ctx) -> dict:
    """Time to the first SSE event when the upstream pauses 2 s after it: direct, record, bare mitmdump."""
    runs = []
    with common.fake_upstream(pause=SSE_PAUSE) as up:
        args = ["sse", f"{up}/v1/messages", str(ctx.body)]
        for i in range(ctx.runs):
            run = {"direct": common.client(args, bench_env())["first_event_ms"]}
            run["record"] = common.record(args, ctx.work / f"sse-{i}.yaml", ctx.env)[0]["first_event_ms"]
            with common.mitmdump(ctx.confdir) as proxy:
                run["mitmdump"] = common.client(args, bench_env(HTTP_PROXY=proxy))["first_event_ms"]
            runs.append(run)
            ctx.log(f"sse run {i + 1}: {run}")
    return {"pause_s": SSE_PAUSE, "runs": runs, "median": {k: median([r[k] for r in runs]) for k in runs[0]},
            "record_minus_direct": median([r["record"] - r["direct"] for r in runs])}


def memory(ctx) -> dict:
    """A 1,000-flow session (85 KB requests, SSE responses) through record: peak RSS of inspector."""
    runs = []
    with common.fake_upstream() as up:
        args = ["posts", f"{up}/v1/messages", str(SESSION_FLOWS), str(ctx.body), "0"]
        for i in range(ctx.runs):
            capture = ctx.work / f"session-{i}.yaml"
            result, hwm = common.record(args, capture, ctx.env)
            ends = _ends(capture)
            proxy_mb = float(re.search(r"\n  peak_rss_mb: ([\d.]+)", ends)[1])
            writer_mb = float(re.search(r"\n  writer_peak_rss_mb: ([\d.]+)", ends)[1])
            runs.append({"meta_proxy_mb": proxy_mb, "meta_writer_mb": writer_mb, "meta_total_mb": proxy_mb + writer_mb,
                         "vmhwm_proxy_mb": round(hwm["proxy"], 1), "vmhwm_writer_mb": round(hwm["writer"], 1),
                         "ms_per_request": result["ms_per_request"],
                         "flows": int(re.search(r"^summary:\n  flows: (\d+)", ends, re.M)[1]),
                         "capture_mb": capture.stat().st_size / 1e6})
            ctx.captures.append(capture)
            ctx.log(f"memory run {i + 1}: {runs[-1]}")
    return {"flows": SESSION_FLOWS, "runs": runs, "median": {k: median([r[k] for r in runs]) for k in runs[0]}}


def _ends(path: Path, n: int = 8192) -> str:
    """A capture's first and last n bytes: its final meta, and its summary."""
    with open(path, "rb") as fh:
        head = fh.read(n)
        fh.seek(max(0, path.stat().st_size - n))
        return head.decode(errors="replace") + fh.read().decode(errors="replace")


def capture_io(ctx) -> dict:
    """The 1,000-flow capture: inspector's load and write; any YAML reader's load of the same file,
    libyaml (C) against pure Python on a 100-flow slice; and the block-YAML layout it replaced."""
    import yaml
    from inspector import serialize

    full = ctx.captures[0]
    cap = serialize.load_capture(full)
    part, block = ctx.work / "slice.yaml", ctx.work / "block.yaml"
    serialize.write_capture(serialize.Capture(cap.meta, cap.flows[:SLICE_FLOWS], cap.summary), part)
    as_dict = cap.to_dict()
    block.write_text(serialize.dump_yaml(as_dict))  # every flow in block YAML, as captures were written before
    c_loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    ops = {
        "load": (full, lambda: serialize.load_capture(full)),
        "write": (full, lambda: serialize.write_capture(cap, ctx.work / "written.yaml")),
        "slice_yaml_c": (part, lambda: yaml.load(part.read_bytes(), Loader=c_loader)),
        "slice_yaml_py": (part, lambda: yaml.load(part.read_bytes(), Loader=yaml.SafeLoader)),
        "block_load": (block, lambda: yaml.load(block.read_bytes(), Loader=c_loader)),
        "block_write": (block, lambda: serialize.dump_yaml(as_dict)),
    }
    runs = []
    for i in range(ctx.runs):
        run = {}
        for name, (_, fn) in ops.items():
            gc.disable()  # as load_capture does: the collector would rescan the growing tree
            start = time.perf_counter()
            fn()
            run[name] = time.perf_counter() - start
            gc.enable()
        runs.append(run)
        ctx.log(f"capture I/O run {i + 1}: {run}")
    mb = {name: path.stat().st_size / 1e6 for name, (path, _) in ops.items()}
    return {"flows": SESSION_FLOWS, "slice_flows": SLICE_FLOWS, "mb": mb, "runs": runs,
            "mb_per_s": {k: median([mb[k] / r[k] for r in runs]) for k in ops},
            "seconds": {k: median([r[k] for r in runs]) for k in ops},
            "c_vs_py": median([r["slice_yaml_py"] / r["slice_yaml_c"] for r in runs]),
            "load_vs_block": median([r["block_load"] / r["load"] for r in runs]),
            "write_vs_block": median([r["block_write"] / r["write"] for r in runs])}


def diff(ctx) -> dict:
    """`inspector diff` of two 1,000-flow captures (two recordings of the same session)."""
    base, other = ctx.captures[:2]
    runs = []
    for i in range(ctx.runs):
        start = time.perf_counter()
        proc = subprocess.run([INSPECTOR, "diff", str(base), str(other), "--format", "json"], env=ctx.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=1800)
        runs.append(time.perf_counter() - start)
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"inspector diff failed: {proc.stderr.decode()[-2000:]}")
        ctx.log(f"diff run {i + 1}: {runs[-1]:.1f} s (exit {proc.returncode})")
    return {"flows": SESSION_FLOWS, "runs": runs, "median_s": median(runs), "exit_code": proc.returncode}


def bisect(ctx) -> dict:
    """Requests `inspector bisect` sends to find one culprit among n differences, for every culprit position.

    The search is deterministic, so this counts requests rather than timing them."""
    try:
        from inspector.bisect import request_bound, requests_needed
    except ImportError as e:
        return {"pending": f"inspector/bisect.py not yet available ({e})"}
    rows = []
    for n in BISECT_NS:
        counts = [requests_needed(n, culprit) for culprit in range(n)]
        bound = 2 * math.ceil(math.log2(n)) + 4
        assert request_bound(n) == bound, "inspector.bisect promises another bound than issue #7"
        rows.append({"n": n, "worst": max(counts), "median": median(counts), "best": min(counts), "bound": bound})
        ctx.log(f"bisect n={n}: {rows[-1]}")
    return {"rows": rows}


def profile(ctx) -> dict:
    """py-spy (or cProfile) of the record path under the overhead load, and of the diff."""
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    ext = "pyspy.txt" if prof.PY_SPY else "prof"
    out = {}
    with common.fast_upstream() as up:
        argv = [INSPECTOR, "record", "--offline", "-o", str(ctx.work / "profiled.yaml"), "--",
                PY, common.CLIENT, "posts", f"{up}/v1/messages", str(POSTS), str(ctx.body)]
        proc = prof.run(argv, PROFILE_DIR / f"record.{ext}", subprocesses=True, env=ctx.env, capture_output=True,
                        timeout=900)
        ctx.log(f"profiled record: exit {proc.returncode}; {proc.stdout.decode().strip()}")
    profiled = ["record"]
    if prof.PY_SPY:  # the proxy and the writer are two processes: one profile each
        prof.split_processes(PROFILE_DIR / f"record.{ext}", {"writer": "inspector.writer", "proxy": " record "})
        profiled = ["record-proxy", "record-writer"]
    if len(ctx.captures) >= 2:
        argv = [INSPECTOR, "diff", str(ctx.captures[0]), str(ctx.captures[1]), "--format", "json"]
        prof.run(argv, PROFILE_DIR / f"diff.{ext}", env=ctx.env, capture_output=True, timeout=1800)
        profiled.append("diff")
    for name in profiled:
        prof.compact(PROFILE_DIR / f"{name}.{ext}")
        out[name] = prof.summarise(PROFILE_DIR / f"{name}.{ext}")
    return out


BENCHMARKS = {"overhead": overhead, "sse": sse, "memory": memory, "capture_io": capture_io,
              "diff": diff, "bisect": bisect, "profile": profile}
NEEDS_CAPTURES = {"capture_io", "diff", "profile"}


class Context:
    def __init__(self, runs: int, work: Path, inspector_src: str | None):
        self.runs, self.work = runs, work
        self.confdir = str(work / "confdir")
        self.env = bench_env(self.confdir, inspector_src)
        self.captures: list[Path] = []
        self.body = work / "body.json"
        self.body.write_bytes(agent_body())

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def agent_body() -> bytes:
    """Claude Code's real 85 KB main request, with a session id the client renews in every run."""
    from inspector.serialize import load_capture

    flow = next(f for f in load_capture(common.AGENT_CAPTURE).flows if f.request.path.startswith("/v1/messages"))
    body = dict(flow.request.body["json"], stream=True)
    user = json.loads(body["metadata"]["user_id"])
    body["metadata"] = {"user_id": json.dumps(dict(user, session_id=SESSION_ID))}
    return json.dumps(body).encode()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="runs per benchmark; the median is reported (>= 5)")
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run these only; print JSON, keep the doc")
    ap.add_argument("--inspector-src", help="benchmark the inspector package in this directory instead")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (captures, logs)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally blocks stop what we started
    if args.runs < 5 and not args.only:
        ap.error("the doc reports medians of at least 5 runs; use --only for quicker looks")
    if args.inspector_src:
        args.inspector_src = str(Path(args.inspector_src).resolve())
        sys.path.insert(0, args.inspector_src)  # capture I/O runs in this process
    names = args.only or list(BENCHMARKS)
    if NEEDS_CAPTURES & set(names) and "memory" not in names:
        names.insert(0, "memory")  # its captures are the input of capture I/O and diff
    work = Path(tempfile.mkdtemp(prefix="inspector-bench-"))
    ctx = Context(args.runs, work, args.inspector_src)
    started = time.monotonic()
    results = {"generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "runs": args.runs,
               "machine": common.machine(), "versions": common.versions(args.inspector_src),
               "profiler": prof.tool(), "host": HOST}
    try:
        for name in BENCHMARKS:
            if name in names:
                ctx.log(f"{name} ...")
                results[name] = BENCHMARKS[name](ctx)
    finally:
        if args.keep:
            ctx.log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["duration_min"] = round((time.monotonic() - started) / 60, 1)
    if args.only:
        print(json.dumps(results, indent=2))
    else:
        import doc

        DOC.write_text(doc.render(results, COMMAND))
        ctx.log(f"wrote {DOC.relative_to(ROOT)} in {results['duration_min']} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
