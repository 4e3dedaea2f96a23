"""Regenerate the `inspector report` golden files from a snapshot of the demo captures (tests/golden/captures); never edit them by hand.

    .venv/bin/python tests/golden/regen_report.py

tests/test_report.py compares the builders' output with these files through `golden_files()`.
The mitm format has no golden file: its bytes depend on the mitmproxy version; the tests read it
back with mitmdump instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from inspector.report import render  # noqa: E402
from inspector.serialize import load_capture  # noqa: E402

CAPTURES = ("tests/golden/captures/sdk.yaml", "tests/golden/captures/agent.yaml")  # relative, as a user would name them
HERE = Path(__file__).resolve().parent / "report"
SUFFIXES = {"markdown": ".md", "har": ".har"}


def golden_files() -> dict[Path, bytes]:
    """Each golden file and the bytes it should hold, built from the committed demo captures."""
    out = {}
    for name in CAPTURES:
        capture = load_capture(ROOT / name)
        for fmt, suffix in SUFFIXES.items():
            out[HERE / (Path(name).stem + suffix)] = render(capture, fmt, source=name)
    return out


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    for path, data in golden_files().items():
        path.write_bytes(data)
        print(f"wrote {path.relative_to(ROOT)} ({len(data):,} bytes)")


if __name__ == "__main__":
    main()
