"""The README's Flower example runs as written: its code block is
examples/flower/quickstart.py, which runs a Flower simulation through
sealroom in a fresh directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_flower_example_is_the_quickstart_and_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- flower-example -->")
    block = readme[start:].split("```python\n", 1)[1].split("```", 1)[0]
    quickstart = ROOT / "examples" / "flower" / "quickstart.py"
    assert block == quickstart.read_text(), "README's Flower example differs from examples/flower/quickstart.py"
    run = subprocess.run(
        [sys.executable, str(quickstart)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "sealroom round 3 included 3 of 3 clients" in run.stdout + run.stderr
