"""docker-compose.yml cannot run here (no Docker engine), so it is checked against the hub's
real CLI parser and config schema: commands, environment, mounted files, ports, the MLflow
webhook wiring, the network the SSRF guard must allow, and pinned images."""

from __future__ import annotations

import base64
import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel

from hub.cli import _parser
from hub.config import HubConfig
from hub.config_load import load_config
from hub.errors import ConfigError
from hub.plugins import validate_options

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
HUB_IMAGE = "registry-hub"
INGEST_PATH = "/ingest/mlflow"
DEFAULT_ADMIN_PORT = 8080
KAFKA_MIN_SESSION_TIMEOUT_MS = 6000  # Apache Kafka's group.min.session.timeout.ms default
#: values for the variables the user must export (``${VAR:?...}``)
USER_VARS = {"MLFLOW_WEBHOOK_SECRET": "s3cr3t-for-tests",
             "REGISTRY_HUB_ADMIN_TOKEN": "admin-token-for-tests",
             "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": "a" * 43 + "="}
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""
    def sub(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        if env.get(name):
            return env[name]
        if op in (":-", "-"):
            return arg
        raise AssertionError(f"${{{name}}} is required: {arg}")
    return _VAR.sub(sub, value).replace("$$", "$")


def variables(value: str) -> set[str]:
    return {m["name"] for m in _VAR.finditer(value)}


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def hub_services() -> list[str]:
    """Services running the hub's CLI (the hub image, its own entrypoint)."""
    return [name for name, svc in SERVICES.items()
            if str(svc.get("image", "")).startswith(f"{HUB_IMAGE}:")
            and "entrypoint" not in svc]


def container_port(mapping: str) -> int:
    return int(str(mapping).split("/")[0].rsplit(":", 1)[-1])


def options(argv: list[str]) -> dict[str, str]:
    """``--flag value`` pairs of a command line (flags without a value map to "")."""
    found: dict[str, str] = {}
    for i, token in enumerate(argv):
        if token.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else ""
            found[token] = "" if nxt.startswith("--") else nxt
    return found


def admin_port(service: str) -> int:
    return int(environment(service).get("HUB_ADMIN__PORT", DEFAULT_ADMIN_PORT))


def healthcheck_url(service: str) -> str:
    test = " ".join(SERVICES[service]["healthcheck"]["test"])
    match = re.search(r"https?://[^'\" ]+", test)
    assert match, f"{service}: no URL in the healthcheck {test!r}"
    return match.group(0)


def mounted(service: str, container_path: str) -> Path:
    for volume in SERVICES[service].get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if target == container_path and source.startswith("."):
            return ROOT / source
    raise AssertionError(f"{service}: nothing from the repository is mounted at {container_path}")


def unknown_hub_keys(env: dict[str, str]) -> list[str]:
    """``HUB_*`` variables that name no configuration key. (HubConfig rejects an unknown key
    inside a known section, but silently ignores an unknown top-level name.)"""
    unknown = []
    for name in env:
        if not name.startswith("HUB_") or name == "HUB_CONFIG":
            continue
        model: type[BaseModel] | None = HubConfig
        for part in name[len("HUB_"):].lower().split("__"):
            field = model.model_fields.get(part) if model is not None else None
            if field is None:
                unknown.append(name)
                break
            annotation = field.annotation
            model = annotation if isinstance(annotation, type) and \
                issubclass(annotation, BaseModel) else None
    return unknown


def hub_config(service: str, monkeypatch: pytest.MonkeyPatch) -> HubConfig:
    """The configuration ``service`` would run with: its environment (user variables filled
    in) over its mounted config file, validated like the CLI does (handler options too)."""
    import os

    for name in list(os.environ):
        if name.startswith("HUB_"):
            monkeypatch.delenv(name)
    env = {k: interpolate(v, USER_VARS) for k, v in environment(service).items()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = mounted(service, env["HUB_CONFIG"]) if "HUB_CONFIG" in env else None
    config = load_config(path)
    for index, sub in enumerate(config.subscriptions):
        validate_options(sub, index)
    return config


# --- the tests -------------------------------------------------------------------------

def test_the_stack_has_every_part() -> None:
    assert {"kafka", "postgres", "mlflow", "hub-detector", "hub-worker",
            "mlflow-webhook-setup", "receiver"} <= set(SERVICES)
    assert set(hub_services()) == {"hub-detector", "hub-worker", "mlflow-webhook-setup"}
    assert SERVICES["hub-worker"]["deploy"]["replicas"] >= 2


@pytest.mark.parametrize("service", hub_services())
def test_hub_commands_are_real_cli_subcommands(service: str) -> None:
    command = SERVICES[service]["command"]
    args = _parser().parse_args(command)  # SystemExit(2) on an unknown command or flag
    expected = {"hub-detector": "detect", "hub-worker": "deliver",
                "mlflow-webhook-setup": "mlflow-webhook"}[service]
    assert args.command == expected


@pytest.mark.parametrize("service", hub_services())
def test_hub_environment_maps_to_real_config_keys_and_validates(
        service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment(service)
    assert unknown_hub_keys(env) == []
    config = hub_config(service, monkeypatch)
    assert config.kafka.bootstrap_servers == env["HUB_KAFKA__BOOTSTRAP_SERVERS"]
    assert config.admin.host == "0.0.0.0", "the admin port must be reachable from other containers"
    assert config.kafka.session_timeout_ms >= KAFKA_MIN_SESSION_TIMEOUT_MS
    assert not config.kafka.embedded
    assert config.admin.token is not None, "a container must not keep a generated token"
    assert variables(env["HUB_ADMIN__TOKEN"]) == {"REGISTRY_HUB_ADMIN_TOKEN"}


def test_unknown_hub_variables_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    typos = {"HUB_KAFKA__BOOTSTRAPSERVERS": "kafka:9092", "HUB_KAFAK__TOPIC": "t",
             "HUB_LOGLEVEL": "DEBUG", "HUB_ADMIN__PORT__X": "1"}
    assert sorted(unknown_hub_keys(typos)) == sorted(typos)
    assert unknown_hub_keys({"HUB_CONFIG": "/x", "HUB_LOG_LEVEL": "DEBUG",
                             "HUB_DELIVERY__ALLOWED_NETWORKS": "[]"}) == []
    monkeypatch.setenv("HUB_KAFKA__BOOTSTRAPSERVERS", "kafka:9092")
    with pytest.raises(ConfigError, match="bootstrapservers"):
        load_config(None)


def test_mounted_config_files_exist_and_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    for service in hub_services():
        path = mounted(service, environment(service)["HUB_CONFIG"])
        assert path.is_file(), path
        assert path == ROOT / "config" / "compose.yaml"
    config = hub_config("hub-worker", monkeypatch)
    assert {s.handler for s in config.subscriptions} >= {"webhook"}


def test_admin_ports_health_checks_and_published_port() -> None:
    detector = SERVICES["hub-detector"]
    port = admin_port("hub-detector")
    assert [container_port(p) for p in detector["ports"]] == [port]
    assert all(str(p).startswith("127.0.0.1:") for p in detector["ports"]), \
        "the admin port is published on the host's loopback only"
    for service in ("hub-detector", "hub-worker"):
        url = urlsplit(healthcheck_url(service))
        assert url.port == admin_port(service)
    assert urlsplit(healthcheck_url("hub-detector")).path == "/readyz"
    assert urlsplit(healthcheck_url("hub-worker")).path == "/healthz"


def test_depends_on_references_existing_services() -> None:
    for name, svc in SERVICES.items():
        deps = svc.get("depends_on") or {}
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            assert dep != name
        if isinstance(deps, dict):
            for dep, cond in deps.items():
                if cond.get("condition") == "service_healthy":
                    assert "healthcheck" in SERVICES[dep], f"{dep} has no healthcheck"


def test_mlflow_webhook_points_at_the_detector_ingest_with_the_same_secret() -> None:
    command = SERVICES["mlflow-webhook-setup"]["command"]
    args = _parser().parse_args(command)
    assert args.webhook_action == "install"
    url = urlsplit(args.url)
    assert url.hostname == "hub-detector" and url.port == admin_port("hub-detector")
    assert url.path == INGEST_PATH
    assert getattr(args, "secret", None) is None, "secrets do not belong on a command line"
    detector = environment("hub-detector")["HUB_INGEST__MLFLOW_SECRET"]
    setup = environment("mlflow-webhook-setup")["HUB_INGEST__MLFLOW_SECRET"]
    assert variables(detector) == variables(setup) == {"MLFLOW_WEBHOOK_SECRET"}
    assert interpolate(detector, USER_VARS) == interpolate(setup, USER_VARS)
    with pytest.raises(AssertionError, match="required"):  # no silent default secret
        interpolate(detector, {})


def test_mlflow_serves_the_hub_and_may_push_to_it() -> None:
    hub_uri = urlsplit(environment("hub-detector")["HUB_MLFLOW__TRACKING_URI"])
    assert hub_uri.hostname == "mlflow"
    command = [str(c) for c in SERVICES["mlflow"]["command"]]
    opts = options(command[2:])
    assert command[:2] == ["mlflow", "server"] and int(opts["--port"]) == hub_uri.port
    assert opts["--host"] == "0.0.0.0"
    assert f"mlflow:{hub_uri.port}" in opts["--allowed-hosts"].split(",")
    backend = urlsplit(interpolate(opts["--backend-store-uri"], {}))
    assert backend.scheme.startswith("postgresql") and backend.hostname == "postgres"
    pg = environment("postgres")
    assert backend.username == pg["POSTGRES_USER"] and backend.path == f"/{pg['POSTGRES_DB']}"
    assert backend.password == interpolate(pg["POSTGRES_PASSWORD"], {})
    env = environment("mlflow")
    assert "http" in env["MLFLOW_WEBHOOK_ALLOWED_SCHEMES"].split(",")
    assert env["MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"] == "true"
    assert variables(env["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"])  # from the user, not the file


def test_kafka_is_a_consistent_single_kraft_node() -> None:
    env = environment("kafka")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == env["KAFKA_NODE_ID"]
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
                     .split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert voter == f"kafka:{listeners[controller].lstrip(':')}"
    assert set(listeners) <= set(protocols) and controller not in advertised
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    for service in hub_services():
        for server in environment(service)["HUB_KAFKA__BOOTSTRAP_SERVERS"].split(","):
            assert server in advertised.values(), f"{service}: {server} is not advertised"
    assert env["KAFKA_LOG_DIRS"] in [str(v).split(":")[1] for v in SERVICES["kafka"]["volumes"]]


def test_the_receiver_subscription_reaches_the_example_receiver(
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = hub_config("hub-worker", monkeypatch)
    (sub,) = [s for s in config.subscriptions if s.name == "example-receiver"]
    url = urlsplit(sub.options["url"])
    receiver = environment("receiver")
    assert url.hostname == "receiver" and url.port == int(receiver["PORT"])
    assert receiver["HOST"] == "0.0.0.0", "the receiver defaults to loopback: the workers " \
        "in other containers reach it only if it listens on every interface"
    assert sub.options["secret"] == receiver["WEBHOOK_SECRET"]
    assert SERVICES["receiver"]["entrypoint"][-1] == "/app/examples/receiver.py"
    assert (ROOT / "examples" / "receiver.py").is_file()
    subnets = [ipaddress.ip_network(c["subnet"])
               for c in COMPOSE["networks"]["default"]["ipam"]["config"]]
    allowed = [ipaddress.ip_network(n) for n in config.delivery.allowed_networks]
    assert subnets and all(any(s.subnet_of(a) for a in allowed) for s in subnets), \
        "the SSRF guard must allow the compose network, or deliveries to the receiver fail"


def test_images_are_pinned() -> None:
    for name, svc in SERVICES.items():
        image = str(svc.get("image", ""))
        assert image, f"{name} has no image name"
        _, _, tag = image.rpartition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
    dockerfile = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert bases
    for base in bases:
        tag = base.rpartition(":")[2]
        assert ":" in base and tag != "latest" and re.search(r"\d", tag), base
    targets = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile, flags=re.MULTILINE))
    for name, svc in SERVICES.items():
        if "build" in svc:
            assert svc["build"]["target"] in targets, name


def test_the_mlflow_server_matches_the_hub_s_mlflow_client() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (version,) = re.findall(r"^FROM ghcr\.io/mlflow/mlflow:v(\S+)", dockerfile, re.MULTILINE)
    pyproject = (ROOT / "pyproject.toml").read_text()
    low, high = re.search(r'"mlflow-skinny>=([\d.]+),<([\d.]+)"', pyproject).groups()  # type: ignore[union-attr]

    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))

    assert key(low) <= key(version) < key(high)
    assert SERVICES["mlflow"]["image"].endswith(f":{version}")
