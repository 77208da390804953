"""docs/plugins.md's handler and its test, run as a plugin author would copy them: the two
marked code blocks become ``registry_hub_teams.py`` and ``test_teams.py`` in an empty
directory, and pytest runs there with its default settings (not the hub's)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
GUIDE = ROOT / "docs" / "plugins.md"
MARKED = re.compile(r"<!-- plugin-guide:(?P<kind>\w+) (?P<file>[\w.]+) -->\n```python\n"
                    r"(?P<code>.*?)\n```", re.S)


def marked_blocks() -> dict[str, str]:
    return {m["file"]: m["code"] + "\n" for m in MARKED.finditer(GUIDE.read_text())}


def test_the_guide_marks_a_handler_and_its_test() -> None:
    blocks = marked_blocks()
    assert set(blocks) == {"registry_hub_teams.py", "test_teams.py"}
    assert "from registry_hub_teams import" in blocks["test_teams.py"]


def test_the_guides_plugin_test_passes_as_written(tmp_path: Path) -> None:
    for name, code in marked_blocks().items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_teams.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b6 passed\b", result.stdout), result.stdout
