"""``${VAR}`` in handler options: one expansion for every handler, for subscriptions of the
configuration file only; anything else (a runtime subscription) is refused, naming the
field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.config import HubConfig, SubscriptionConfig
from hub.config_load import load_config
from hub.envrefs import CONTEXT_KEY, REFUSAL, expand, fields_with_references, references
from hub.errors import ConfigError
from hub.plugins import validate_options


def test_expand() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert expand("x${A}y${A}", env) == "x1y1"
    assert expand("$A {A} $${A}", env) == "$A {A} $1"
    assert expand("no reference", None) == "no reference"
    with pytest.raises(ValueError, match=r"B \(from \$\{B\}\) is not set"):
        expand("${B}", env)
    with pytest.raises(ValueError, match=r"EMPTY .* is empty"):
        expand("Bearer ${EMPTY}", env)
    with pytest.raises(ValueError, match="only allowed in the configuration file"):
        expand("${A}", None)


def test_references_name_every_field() -> None:
    options = {"url": "https://h/${U}", "headers": {"X-A": "${A}", "X-B": "b"},
               "secret": ["s", "${S}"], "body": {"deep": {"x": "${D} ${E}"}}, "n": 1}
    assert references(options) == [("url", "U"), ("headers.X-A", "A"), ("secret.1", "S"),
                                   ("body.deep.x", "D"), ("body.deep.x", "E")]
    assert fields_with_references(options) == ["url", "headers.X-A", "secret.1", "body.deep.x"]


def _hook(**options: Any) -> dict[str, Any]:
    return {"name": "hook", "handler": "webhook", "url": "https://h.example/x", **options}


def test_the_configuration_keeps_the_variables_its_subscriptions_reference(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "t0k")
    monkeypatch.setenv("UNRELATED", "u")
    config = HubConfig(subscriptions=[_hook(headers={"Authorization": "Bearer ${HOOK_TOKEN}"}),
                                      {"name": "c", "handler": "console"}])
    hook, console = config.subscriptions
    assert hook.environment == {"HOOK_TOKEN": "t0k"} and console.environment == {}
    _, options = validate_options(hook, 0)
    assert options.headers["Authorization"].get_secret_value() == "Bearer t0k"
    monkeypatch.delenv("HOOK_TOKEN")  # taken when loaded: a later change does not matter
    _, options = validate_options(hook, 0)
    assert options.headers["Authorization"].get_secret_value() == "Bearer t0k"
    assert SubscriptionConfig(name="r", handler="console").environment is None

    path = tmp_path / "hub.yaml"
    path.write_text("subscriptions:\n  - {name: d, handler: deploy, target: github_dispatch,"
                    " repo: a/b, event_type: x, token: '${GH_TOKEN}'}\n", encoding="utf-8")
    monkeypatch.setenv("GH_TOKEN", "ghp_x")
    _, deploy = validate_options(load_config(path).subscriptions[0], 0)
    assert deploy.token.get_secret_value() == "ghp_x"


@pytest.mark.parametrize(("environment", "field", "why"), [
    ({}, "subscriptions.0.headers.Authorization",
     "environment variable HOOK_TOKEN (from ${HOOK_TOKEN}) is not set"),
    ({"HOOK_TOKEN": ""}, "subscriptions.0.headers.Authorization", "is empty"),
])
def test_configuration_errors_name_the_field_and_the_variable(
        monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], field: str,
        why: str) -> None:
    monkeypatch.delenv("HOOK_TOKEN", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    config = HubConfig(subscriptions=[_hook(headers={"Authorization": "Bearer ${HOOK_TOKEN}"})])
    with pytest.raises(ConfigError) as info:
        validate_options(config.subscriptions[0], 0)
    assert info.value.field == field and why in str(info.value)


@pytest.mark.parametrize(("options", "field"), [
    ({"handler": "webhook", "url": "https://h.example/x",
      "headers": {"X-Exfil": "${HUB_INGEST__MLFLOW_SECRET}"}}, "headers.X-Exfil"),
    ({"handler": "webhook", "url": "https://h.example/x", "secret": "${S}"}, "secret"),
    ({"handler": "webhook", "url": "https://h.example/x?k=${S}"}, "url"),
    ({"handler": "deploy", "target": "github_dispatch", "repo": "a/b", "event_type": "x",
      "token": "${GH}"}, "token"),
    ({"handler": "deploy", "target": "http", "url": "https://h.example/",
      "body": {"image": "${IMAGE}"}}, "body.image"),
    ({"handler": "slack", "token": "${SLACK}", "channel": "#m"}, "token"),
    ({"handler": "no-such-handler", "anything": ["${X}"]}, "anything.0"),
])
def test_a_runtime_subscription_may_not_reference_the_environment(
        monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], field: str) -> None:
    for name in ("HUB_INGEST__MLFLOW_SECRET", "S", "GH", "IMAGE", "SLACK", "X"):
        monkeypatch.setenv(name, "set")
    sub = SubscriptionConfig.model_validate({"name": "r", **options})
    with pytest.raises(ConfigError) as info:
        validate_options(sub, 0)
    assert info.value.field == f"subscriptions.0.{field}"
    assert f"{field}: {REFUSAL}" in str(info.value)


def test_options_validated_without_an_environment_refuse_references() -> None:
    from handlers.slack import SlackOptions

    with pytest.raises(ValueError, match="only allowed in the configuration file"):
        SlackOptions.model_validate({"token": "${SLACK}", "channel": "#m"})
    options = SlackOptions.model_validate({"token": "${SLACK}", "channel": "#m"},
                                          context={CONTEXT_KEY: {"SLACK": "xoxb-1"}})
    assert options.token is not None and options.token.get_secret_value() == "xoxb-1"
