"""``check-config`` as a user runs it: every bad configuration exits with code 2 and says on
stderr which field is wrong and what to do; secrets are never echoed; good ones exit 0.

Every command runs as a real subprocess (``python -m hub`` and, once, the ``registry-hub``
console script). They are independent, so a module fixture runs them all concurrently and
each test only inspects its result: the whole module takes about as long as the slowest run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "config" / "hub.example.yaml"
EXIT_OK, EXIT_CONFIG = 0, 2
TIMEOUT_S = 60


@dataclass(frozen=True)
class Run:
    """One CLI invocation. ``yaml`` is written to ``<id>.yaml``; ``args`` may use ``{file}``."""

    id: str
    yaml: str | None = None
    args: tuple[str, ...] = ("check-config", "--config", "{file}")
    env: Mapping[str, str] = field(default_factory=dict)
    script: bool = False  # run the ``registry-hub`` console script instead of ``python -m hub``


@dataclass(frozen=True)
class Bad:
    """A bad configuration: the field path stderr must name, the hint it must give, and a
    secret value that must appear nowhere in the output."""

    run: Run
    field: str
    hints: tuple[str, ...] = ("hint:",)
    secret: str | None = None


SUBSCRIPTION = "subscriptions:\n  - name: x\n    handler: console\n"

BAD = [
    Bad(Run("unknown-top-level-key", "kafak:\n  topic: t\n"), "kafak", ("hint:", "unknown key")),
    Bad(Run("unknown-nested-key", "kafka:\n  topik: t\n"), "kafka.topik",
        ("hint:", "unknown key")),
    Bad(Run("bad-bootstrap-servers", "kafka:\n  bootstrap_servers: nope\n"),
        "kafka.bootstrap_servers", ("hint:", "host:port", "'nope'")),
    Bad(Run("negative-poll-interval", "detector:\n  poll_interval_s: -2.5\n"),
        "detector.poll_interval_s", ("hint:", "greater than 0")),
    Bad(Run("events-glob-matches-nothing", SUBSCRIPTION + "    events: ['model_verson.*']\n"),
        "subscriptions.0.events", ("hint:", "'model_verson.*' matches no event type",
                                   "model_version.created")),
    Bad(Run("duplicate-subscription-names", SUBSCRIPTION + "  - name: x\n    handler: console\n"),
        "subscriptions", ("hint:", "'x'", "twice")),
    Bad(Run("unknown-handler", "subscriptions:\n  - name: x\n    handler: consol\n"),
        "subscriptions.0.handler", ("'consol'", "known handlers:", "console")),
    Bad(Run("console-stream-not-a-string", SUBSCRIPTION + "    stream: 5\n"),
        "subscriptions.0.stream"),
    Bad(Run("console-unknown-option", SUBSCRIPTION + "    colour: red\n"),
        "subscriptions.0.colour"),
    Bad(Run("yaml-syntax-error", "kafka:\n  topic: t\nlog_level: [INFO\nmlflow: {}\n"),
        "--config", ("not valid YAML", "line 4")),
    Bad(Run("file-does-not-exist", None, ("check-config", "--config", "{missing}")),
        "--config", ("cannot read", "hint:", "existing YAML file")),
    Bad(Run("top-level-list", "- kafka\n- detector\n"), "--config",
        ("must hold a mapping", "got a list")),
    Bad(Run("env-override-bad-value", None, ("check-config",),
            env={"HUB_DETECTOR__POLL_INTERVAL_S": "-1"}),
        "detector.poll_interval_s", ("hint:", "greater than 0")),
    Bad(Run("env-typo-single-underscore", None, ("check-config",),
            env={"HUB_KAFKA_TOPIC": "typo"}),
        "HUB_KAFKA_TOPIC", ("hint:", "HUB_<SECTION>__<KEY>")),
    Bad(Run("console-script", "detector:\n  poll_interval_s: 0\n", script=True),
        "detector.poll_interval_s", ("hint:", "greater than 0")),
    # Secrets: a wrong type, a misspelt secret key, a misspelt section holding a secret.
    Bad(Run("secret-wrong-type", "kafka:\n  sasl_password: [s3cr3t-in-a-list]\n"),
        "kafka.sasl_password", secret="s3cr3t-in-a-list"),
    Bad(Run("secret-under-misspelt-key", "kafka:\n  sasl_pasword: s3cr3t-misspelt-key\n"),
        "kafka.sasl_pasword", ("hint:", "unknown key"), secret="s3cr3t-misspelt-key"),
    Bad(Run("secret-under-misspelt-section", "kafak:\n  sasl_password: s3cr3t-in-section\n"),
        "kafak", ("hint:", "unknown key"), secret="s3cr3t-in-section"),
    # URLs with credentials and query secrets: named, shown redacted
    Bad(Run("deploy-url-with-credentials", "subscriptions:\n  - {name: d, handler: deploy, "
            "target: http, url: 'ftp://u:s3cr3t-url-pw@h.example/x?token=s3cr3t-q'}\n"),
        "subscriptions.0.url", ("ftp://***@h.example/x?token=***",), secret="s3cr3t-"),
    Bad(Run("slack-base-url-with-credentials", "subscriptions:\n  - {name: s, handler: slack, "
            "token: xoxb-1, channel: '#m', api_base_url: 'ftp://u:s3cr3t-pw@h?api_key=s3cr3t'}"
            "\n"), "subscriptions.0.api_base_url", ("ftp://***@h?api_key=***",),
        secret="s3cr3t"),
    Bad(Run("url-echoed-in-a-type-error", "subscriptions:\n  - {name: w, handler: webhook, url: "
            "'https://h.example/x', timeout_s: 'https://u:s3cr3t-pw@h.example/?sig=s3cr3t'}\n"),
        "subscriptions.0.timeout_s", ("(got 'https://***@h.example/?sig=***')",),
        secret="s3cr3t"),
    # ${VAR} of the file: an unset variable is named with the field, at check-config already
    Bad(Run("unset-environment-reference", "subscriptions:\n  - {name: w, handler: webhook, "
            "url: 'https://h.example/x', headers: {X-Token: '${WEBHOOK_TEST_UNSET_VARIABLE}'}}\n"),
        "subscriptions.0.headers.X-Token",
        ("WEBHOOK_TEST_UNSET_VARIABLE (from ${WEBHOOK_TEST_UNSET_VARIABLE}) is not set",)),
    Bad(Run("empty-environment-reference", "subscriptions:\n  - {name: d, handler: deploy, "
            "target: github_dispatch, repo: a/b, event_type: x, token: '${GH_TEST_EMPTY}'}\n",
            env={"GH_TEST_EMPTY": ""}),
        "subscriptions.0.token", ("GH_TEST_EMPTY (from ${GH_TEST_EMPTY}) is empty",)),
]

GOOD_YAML = "kafka:\n  topic: from-file\n" + SUBSCRIPTION
BAD_YAML = "detector:\n  poll_interval_s: -7\n"
GOOD = [
    Run("empty-file", ""),
    Run("example-config", None, ("check-config", "--config", str(EXAMPLE_CONFIG)),
        env={"CI_HOOK_TOKEN": "from-the-environment"}),  # its ${CI_HOOK_TOKEN}
    Run("config-before-subcommand", GOOD_YAML, ("--config", "{file}", "check-config")),
    Run("config-after-subcommand", GOOD_YAML, ("check-config", "--config", "{file}")),
    Run("short-option", GOOD_YAML, ("check-config", "-c", "{file}")),
    Run("hub-config-env", GOOD_YAML, ("check-config",), env={"HUB_CONFIG": "{file}"}),
    Run("env-overrides-file", GOOD_YAML, env={"HUB_KAFKA__TOPIC": "from-env"}),
    Run("option-overrides-hub-config-env", GOOD_YAML,
        env={"HUB_CONFIG": "{bad}"}),
    Run("hub-config-env-bad-file", BAD_YAML, ("check-config",), env={"HUB_CONFIG": "{file}"}),
]


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:
        return (f"exit {self.returncode} after {self.seconds:.2f} s\n--- stdout\n{self.stdout}"
                f"--- stderr\n{self.stderr}")


def clean_env() -> dict[str, str]:
    """The caller's environment without anything that configures the hub or MLflow."""
    drop = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    return {k: v for k, v in os.environ.items() if not k.startswith("HUB_") and k not in drop}


def console_script() -> str:
    found = shutil.which("registry-hub", path=str(Path(sys.executable).parent))
    assert found, f"registry-hub is not installed next to {sys.executable}"
    return found


def execute(run: Run, tmp: Path) -> Result:
    names = {"file": str(tmp / f"{run.id}.yaml"), "missing": str(tmp / "no" / "such.yaml"),
             "bad": str(tmp / "bad.yaml")}
    if run.yaml is not None:
        Path(names["file"]).write_text(run.yaml, encoding="utf-8")
    program = [console_script()] if run.script else [sys.executable, "-m", "hub"]
    env = clean_env() | {k: v.format(**names) for k, v in run.env.items()}
    started = time.monotonic()
    proc = subprocess.run(
        program + [a.format(**names) for a in run.args], cwd=tmp, env=env,
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    tmp = tmp_path_factory.mktemp("check-config")
    (tmp / "bad.yaml").write_text(BAD_YAML, encoding="utf-8")
    runs = [b.run for b in BAD] + [g for g in GOOD
                                   if g.id != "example-config" or EXAMPLE_CONFIG.exists()]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        done = pool.map(lambda r: (r.id, execute(r, tmp)), runs)
        return dict(done)


def _params(table: list[Bad]) -> list[object]:
    return [pytest.param(b, id=b.run.id) for b in table]


@pytest.mark.parametrize("bad", _params(BAD))
def test_bad_config_exits_2_naming_the_field(bad: Bad, results: dict[str, Result]) -> None:
    result = results[bad.run.id]
    assert result.returncode == EXIT_CONFIG, result
    assert "configuration error" in result.stderr, result
    assert bad.field in result.stderr, result
    assert "Traceback" not in result.stderr, result
    assert result.stdout == "", result


@pytest.mark.parametrize("bad", _params(BAD))
def test_bad_config_gives_a_hint(bad: Bad, results: dict[str, Result]) -> None:
    result = results[bad.run.id]
    for hint in bad.hints:
        assert hint in result.stderr, f"missing {hint!r}\n{result}"


@pytest.mark.parametrize("bad", _params([b for b in BAD if b.secret]))
def test_bad_config_never_echoes_a_secret(bad: Bad, results: dict[str, Result]) -> None:
    result = results[bad.run.id]
    assert result.returncode == EXIT_CONFIG, result
    assert bad.field in result.stderr, result
    assert bad.secret and bad.secret not in result.stderr + result.stdout, result


def ok(results: dict[str, Result], run_id: str) -> Result:
    result = results[run_id]
    assert result.returncode == EXIT_OK, result
    assert result.stdout.startswith("configuration OK"), result
    return result


def test_empty_file_is_the_builtin_default(results: dict[str, Result]) -> None:
    result = ok(results, "empty-file")
    assert "1 subscription(s)" in result.stdout  # the built-in console subscription
    assert "kafka=embedded" in result.stdout
    assert "topic=mlflow.registry.events" in result.stdout


def test_example_config_is_valid(results: dict[str, Result]) -> None:
    if not EXAMPLE_CONFIG.exists():
        pytest.skip(f"{EXAMPLE_CONFIG.relative_to(ROOT)} is not written yet")
    ok(results, "example-config")


def test_example_config_watches_the_quick_start_registry(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """Copied as is, the example watches what the quick start watches: the local sqlite
    registry, or ``$MLFLOW_TRACKING_URI`` when it is set."""
    from hub.config_load import load_config

    for name in [k for k in os.environ if k.upper().startswith("HUB_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert load_config(EXAMPLE_CONFIG).mlflow.tracking_uri == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example.com:5000")
    assert load_config(EXAMPLE_CONFIG).mlflow.tracking_uri == "http://mlflow.example.com:5000"


@pytest.mark.parametrize("run_id", ["config-before-subcommand", "config-after-subcommand",
                                    "short-option", "hub-config-env"])
def test_config_file_is_read_wherever_it_is_given(run_id: str, results: dict[str, Result]
                                                  ) -> None:
    assert "topic=from-file" in ok(results, run_id).stdout


def test_environment_overrides_the_file(results: dict[str, Result]) -> None:
    assert "topic=from-env" in ok(results, "env-overrides-file").stdout


def test_config_option_wins_over_hub_config_env(results: dict[str, Result]) -> None:
    assert "topic=from-file" in ok(results, "option-overrides-hub-config-env").stdout


def test_hub_config_env_file_is_validated(results: dict[str, Result]) -> None:
    result = results["hub-config-env-bad-file"]
    assert result.returncode == EXIT_CONFIG, result
    assert "detector.poll_interval_s" in result.stderr, result
    assert "hub-config-env-bad-file.yaml" in result.stderr, result  # says which file


def test_every_run_is_fast(results: dict[str, Result]) -> None:
    """A configuration check should answer within seconds (the hub imports lazily)."""
    slowest = max(results.items(), key=lambda item: item[1].seconds)
    assert slowest[1].seconds < 15, f"{slowest[0]} took {slowest[1].seconds:.1f} s"
