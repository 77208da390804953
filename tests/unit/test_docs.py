"""The README's generated sections (configuration reference, event catalog) match the code."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_readme_generated_sections_are_current() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "reference.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_catalog_shows_every_event_type() -> None:
    reference = runpy.run_path(str(ROOT / "docs" / "reference.py"))
    rendered = reference["render_catalog"]()
    from hub.events import EVENT_TYPES

    for event_type in EVENT_TYPES:
        assert f"#### `{event_type}`" in rendered
