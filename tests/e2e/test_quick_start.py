"""The README's quick start, exactly as written, on a fresh copy of the project in a fresh
venv — not the test venv, whose extra packages (full ``mlflow``) would hide a broken
default install:

1. the README's run command (``python3 -m venv .venv && .venv/bin/pip install -e . &&
   .venv/bin/registry-hub run``), verbatim, in a copy of the working tree;
2. the ready line;
3. the README's change command (the MLflow client from that same venv) → the console line;
4. Ctrl-C → a graceful exit.

Both commands are read from the README (the blocks after ``<!-- quickstart:run -->`` and
``<!-- quickstart:change -->``), so the README cannot drift from what is tested.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.hub_process import HubProcess, clean_env, console_event

ROOT = Path(__file__).resolve().parents[2]
INSTALL_AND_READY_TIMEOUT_S = 900.0  # a fresh venv and pip install, then the first scan

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def readme_command(marker: str) -> str:
    """The shell command in the first ```bash block after ``<!-- quickstart:<marker> -->``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- quickstart:{marker} -->\s*```bash\n(.+?)\n```", readme, re.S)
    assert match, f"README.md has no bash block after <!-- quickstart:{marker} -->"
    return match.group(1).strip()


def copy_working_tree(destination: Path) -> None:
    """What a fresh clone would hold (tracked and new, unignored files) — no venv, no
    egg-info, no databases."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def test_readme_quick_start_works_as_written_in_a_fresh_venv(
    tmp_path: Path, start_hub: Callable[..., HubProcess]
) -> None:
    run, change = readme_command("run"), readme_command("change")
    assert run.startswith("python3 -m venv .venv") and "pip install -e . " in run, run
    clone = tmp_path / "registry-hub"
    copy_working_tree(clone)
    env = clean_env()

    started = time.monotonic()
    hub = start_hub([], clone, env, command=["bash", "-c", run])
    ready = hub.wait_line("stdout", lambda line: line.startswith("registry-hub ready"),
                          "the ready line", INSTALL_AND_READY_TIMEOUT_S)
    print(f"\ninstall + start to ready: {time.monotonic() - started:.0f} s; {ready}")
    assert "watching sqlite:///mlflow.db" in ready, ready
    installed = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-m", "pip", "list"],
                               capture_output=True, text=True, check=True).stdout
    assert re.search(r"^mlflow-skinny\s", installed, re.M), installed
    assert not re.search(r"^mlflow\s", installed, re.M), \
        "the default install should not need the full MLflow server package"

    result = subprocess.run(["bash", "-c", change], cwd=clone, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    hub.wait_line("stdout", console_event("registered_model.created", "iris"),
                  "the console line for iris")

    code = hub.terminate(sig=signal.SIGINT, group=True)
    assert code == 0, hub.dump()
    assert any(re.search(r"\]\s+hub\.stopped", line) for line in hub.lines("stderr")), hub.dump()
