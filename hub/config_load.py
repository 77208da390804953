"""Loading the configuration: the YAML file, the environment, and errors that name the field.

:func:`load_config` validates the :class:`~hub.config.HubConfig` tree; every problem becomes one
:class:`~hub.errors.ConfigError` that names the field, says what is wrong and what to do
(:func:`describe_errors`, also used for a subscription's handler options).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hub.config import HubConfig
from hub.errors import ConfigError
from hub.redaction import is_secret_key, redact_text

CONFIG_ENV = "HUB_CONFIG"


def config_path_from_env() -> Path | None:
    value = os.environ.get(CONFIG_ENV)
    return Path(value) if value else None


def load_config(path: Path | None = None) -> HubConfig:
    """Load and validate; every problem becomes a :class:`ConfigError` naming the field."""
    _refuse_unknown_env()
    data = _read_yaml(path) if path is not None else {}
    try:
        config = HubConfig(**data)
    except ValidationError as exc:
        raise _to_config_error(exc, path) from None
    config._source_path = path
    return config


def _refuse_unknown_env() -> None:
    """pydantic-settings ignores unknown top-level ``HUB_*`` variables; a typo such as
    ``HUB_KAFKA_TOPIC`` (one underscore) must not be silently ignored either."""
    sections = {name.upper() for name in HubConfig.model_fields}
    for key in os.environ:
        upper = key.upper()
        if not upper.startswith("HUB_") or upper == CONFIG_ENV:
            continue
        if upper[4:].split("__", 1)[0] not in sections:
            raise ConfigError(
                "unknown setting in the environment", field=key,
                hint="use HUB_<SECTION>__<KEY> (two underscores between the parts), e.g. "
                     "HUB_KAFKA__TOPIC; sections: " + ", ".join(sorted(HubConfig.model_fields)))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", field="--config",
                          hint="pass an existing YAML file or unset HUB_CONFIG") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}", field="--config",
                          hint=str(getattr(exc, "problem", exc))) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, got a "
                          f"{type(data).__name__}", field="--config",
                          hint="start from config/hub.example.yaml (keys such as mlflow:, "
                               "kafka:, subscriptions:)")
    return data


_HINTS = {
    "extra_forbidden": "unknown key; check the spelling against config/hub.example.yaml",
    "missing": "this key is required",
    "environment_reference": "${VAR} is read from the hub's environment when the "
                             "configuration is loaded, for its own subscriptions only",
}
DEFAULT_HINT = "see config/hub.example.yaml"
_NOT_ECHOED = ("missing", "value_error", "extra_forbidden", "environment_reference")


def describe_errors(exc: ValidationError, prefix: str = "",
                    hints: dict[str, str] | None = None) -> tuple[list[str], str | None]:
    """Each validation error as ``field: message\n  hint: ...``; and the first field's path.

    Inputs are echoed only when they are scalars of a field whose path holds no secret-like
    name (:func:`hub.redaction.is_secret_key`: a misspelt ``sasl_pasword`` must not print
    the password), and then redacted like every message (URL credentials and query values).
    """
    lines = []
    fields = []
    for err in exc.errors():
        path = [str(x) for x in err["loc"]]
        field = ".".join(p for p in (prefix, *path) if p) or "<root>"
        fields.append(field)
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        echo = (
            err["type"] not in _NOT_ECHOED
            and isinstance(value, str | int | float | bool)
            and not any(is_secret_key(p) for p in path)
        )
        if echo:
            msg = f"{msg} (got {value!r})"
        hint = (hints or {}).get(err["type"]) or _HINTS.get(err["type"], DEFAULT_HINT)
        lines.append(redact_text(f"{field}: {msg}\n  hint: {hint}"))
    return lines, (fields[0] if fields else None)


def _to_config_error(exc: ValidationError, path: Path | None) -> ConfigError:
    lines, first = describe_errors(exc)
    origin = f" ({path})" if path else ""
    error = ConfigError(f"invalid configuration{origin}:\n" + "\n".join(lines))
    error.field = first
    return error
