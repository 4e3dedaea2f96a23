"""Profile a command with py-spy (sampling, all threads) or, without py-spy, cProfile in every thread.

    profiling.py cprofile OUT.prof -- COMMAND [ARGS]   run a Python console script under cProfile

`run(argv, out)` profiles a command and `summarise(path)` names its top costs.
"""

from __future__ import annotations

import collections
import cProfile
import pstats
import re
import runpy
import shutil
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY_SPY = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
# Frames of inspector's own work (the addon and what it calls), as opposed to mitmproxy's or the CLI's.
OWN_FILES = ("inspector/capture.py", "inspector/writer.py", "inspector/convert.py", "inspector/model.py",
             "inspector/redact.py", "inspector/flags.py", "inspector/serialize.py", "inspector/diff.py",
             "inspector/diff_render.py")
# cProfile counts waiting as time; py-spy leaves idle threads out. Leave waiting out of cProfile too.
IDLE = re.compile(r"poll|select|wait|acquire|sleep|accept|recv|read(?:line|into)?\b")


def tool() -> str:
    return "py-spy" if PY_SPY else "cProfile"


def run(argv: list[str], out: Path, subprocesses: bool = False, **popen) -> subprocess.CompletedProcess:
    """Profile argv (a Python console script and its arguments) into out; returns the process.
    With subprocesses, py-spy samples its children too (cProfile cannot: it sees argv's process only)."""
    if PY_SPY:
        wrapper = [PY_SPY, "record", "--rate", "200", "--nonblocking", "--format", "raw", "--output", str(out),
                   *(["--subprocesses"] if subprocesses else []), "--"]
    else:
        wrapper = [sys.executable, __file__, "cprofile", str(out), "--"]
    return subprocess.run([*wrapper, *argv], **popen)


def _key(frame: str) -> str:
    """`func (path/to/file.py:12)` → `func (inspector/capture.py)`: one row per function, not per line."""
    frame = re.sub(r"[\x00-\x1f\x7f]", "", frame)
    m = re.fullmatch(r"(.*) \((.*?)(?::\d+)?\)", frame)
    if m is None:  # already a key
        return frame.strip() or "(frame without a name)"
    name, path = m.groups()
    if not path and "/" in name:  # --nonblocking: py-spy read the frame while Python changed it
        return f"(unreadable frame in {_short(name)})"
    return f"{name} ({_short(path)})" if name.strip() else "(frame without a name)"


def _short(path: str) -> str:
    path = path.split("site-packages/")[-1].split("lib/python3")[-1]
    return path.replace(f"{ROOT}/", "").lstrip("0123456789./")


def split_processes(path: Path, kinds: dict[str, str]) -> dict[str, Path]:
    """py-spy --subprocesses stacks, one file per kind of process: a stack belongs to the first kind
    whose text is in its innermost `process PID:"command line"` frame; other processes are dropped."""
    lines: dict[str, list[str]] = {kind: [] for kind in kinds}
    if PY_SPY:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            processes = [f for f in frames if f.startswith("process ")] or [""]
            kind = next((k for k, text in kinds.items() if text in processes[-1]), None)
            if kind and (inside := [f for f in frames if not f.startswith("process ")]):
                lines[kind].append(f"{';'.join(inside)} {count}")
    out = {kind: path.with_name(f"{path.name.split('.')[0]}-{kind}{''.join(path.suffixes)}") for kind in kinds}
    for kind, found in lines.items():
        out[kind].write_text("".join(f"{x}\n" for x in found))
    path.unlink()
    return out


def compact(path: Path) -> None:
    """Rewrite py-spy's collapsed stacks with one frame per function and recursion folded (a function
    already on the stack is left out, except as the last frame); self and inclusive shares are kept."""
    if not PY_SPY:
        return
    stacks: collections.Counter = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_key(f) for f in stack.split(";")]
        kept = [f for i, f in enumerate(frames[:-1]) if f not in frames[:i]]
        stacks[";".join(kept + frames[-1:])] += int(count)
    path.write_text("".join(f"{stack} {n}\n" for stack, n in sorted(stacks.items())))


def summarise(path: Path, top: int = 10) -> dict:
    """Share of samples (py-spy) or of time (cProfile) per function: self, inclusive, and inspector's own."""
    self_t: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    own = total = 0.0
    if PY_SPY:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            n = int(count)
            frames = [_key(f) for f in stack.split(";")]  # idempotent on compacted stacks
            total += n
            self_t[frames[-1]] += n
            for f in set(frames):
                incl[f] += n
            if any(own_file in f for f in frames for own_file in OWN_FILES):
                own += n
    else:
        stats = pstats.Stats(str(path)).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}
        for (file, _, name), (_, _, tt, ct, callers) in stats.items():
            key = f"{name} ({_short(file)})" if file != "~" else name
            if IDLE.search(name):
                continue
            total += tt
            self_t[key] += tt
            incl[key] += ct
            # Inspector's own time: functions of our files called from outside them (entry points).
            if _short(file) in OWN_FILES and not any(_short(c[0]) in OWN_FILES for c in callers):
                own += ct
    share = lambda v: round(100 * v / total, 1) if total else 0.0  # noqa: E731
    ours = [(k, v) for k, v in incl.items() if any(f in k for f in OWN_FILES) and ".<locals>.<" not in k]
    return {
        "tool": tool(), "file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "samples": int(total) if PY_SPY else round(total, 2),
        "own_share": share(own),
        "top_self": [(k, share(v)) for k, v in sorted(self_t.items(), key=lambda kv: (-kv[1], kv[0]))[:top]],
        "top_own": [(k, share(v)) for k, v in sorted(ours, key=lambda kv: (-kv[1], kv[0]))[:top]],
        "inclusive": {k.split(" (")[0]: share(v) for k, v in incl.items() if share(v) >= 0.5},
    }


def _cprofile_main(out: str, argv: list[str]) -> None:
    """Run a console script with cProfile enabled in every thread, merged into one stats file."""
    profiles = [cProfile.Profile()]
    thread_run = threading.Thread.run

    def profiled_run(self):
        profiles.append(cProfile.Profile())
        profiles[-1].runcall(thread_run, self)

    threading.Thread.run = profiled_run
    sys.argv = argv
    code = 0
    try:
        profiles[0].runcall(runpy.run_path, shutil.which(argv[0]) or argv[0], run_name="__main__")
    except SystemExit as e:
        code = e.code
    finally:
        stats = pstats.Stats(profiles[0])
        for p in profiles[1:]:
            try:
                stats.add(p)
            except TypeError:  # a thread that never ran
                pass
        stats.dump_stats(out)
    sys.exit(code)


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[1] != "cprofile" or sys.argv[3] != "--":
        sys.exit(__doc__)
    _cprofile_main(sys.argv[2], sys.argv[4:])
