"""Regenerate the golden outputs of `inspector diff` (tests/golden/diff/); never edit them by hand.

    .venv/bin/python tests/golden/regen_diff.py

Writes the diff of the synthetic SDK and Claude Code captures built in tests/test_diff.py, and of
the committed tests/golden/captures/sdk.yaml and agent.yaml (a snapshot of the demo's captures/) when they exist, in text, Markdown and JSON.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

from test_diff import GOLDEN, golden_outputs  # noqa: E402


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        outputs = golden_outputs(Path(tmp))
    for name, text in sorted(outputs.items()):
        path = GOLDEN / name
        changed = not path.exists() or path.read_text() != text
        path.write_text(text)
        print(f"{'wrote' if changed else 'same '} {path.relative_to(TESTS.parent)}")


if __name__ == "__main__":
    main()
