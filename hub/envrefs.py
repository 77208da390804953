"""``${VAR}`` references in handler options: the one expansion, and who may use it.

A subscription of the configuration file (or ``HUB_SUBSCRIPTIONS``) is written by the
operator, who may keep secrets out of the file with ``token: ${GH_TOKEN}``: the
configuration layer takes the variables it references from the environment when it loads
(:attr:`hub.config.SubscriptionConfig.environment`). A runtime subscription is written
through the admin API by anyone holding its token; resolving its references would let that
caller read any variable of the hub's environment (``X-Exfil: ${HUB_INGEST__MLFLOW_SECRET}``)
and have it delivered to a receiver of their choice. So a runtime subscription holding a
reference in *any* option is refused (``environment is None`` → :data:`REFUSAL`), by the API
(422 naming the field), and by every process that finds one in the subscriptions topic,
written by an older version (its lane is not started; ``substore.refused``).

Handlers say which options take references (``HandlerOptions.env_options``); the options
are expanded by :func:`expand_options` when they are validated, before any other check.
Pure: the environment is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
CONTEXT_KEY = "registry_hub.environment"
"""Validation-context key of the variables a subscription's options may reference; absent
or ``None``: references are refused."""
ERROR_TYPE = "environment_reference"
REFUSAL = "environment references (${...}) are only allowed in the configuration file"
REFUSAL_HINT = ("give the value itself (it is stored in the subscriptions topic: protect it), "
                "or define this subscription in the configuration file")


def references(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """``(field path, variable)`` of every reference in an options tree, in order; paths
    are dotted (``headers.X-Exfil``, ``secret.0``)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        return [(".".join(path), name) for name in ENV_REF.findall(value)]
    found: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            found += references(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found += references(item, (*path, str(index)))
    return found


def fields_with_references(value: Any) -> list[str]:
    """The dotted paths of an options tree that hold a reference, each once, in order."""
    return list(dict.fromkeys(path for path, _ in references(value)))


def variables(value: Any, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` that ``value`` references (what the config layer keeps)."""
    return {name: environ[name] for _, name in references(value) if name in environ}


def expand(value: str, environment: Mapping[str, str] | None) -> str:
    """``value`` with every ``${NAME}`` replaced by the variable's value.

    Raises ``ValueError`` (the caller names the field) when ``environment`` is ``None``
    (references refused), or a variable is unset, or **empty**: an empty variable is almost
    always a secret missing from the deployment (docker compose turns an unset ``${X}`` into
    an empty value), and expanding it would send an unauthenticated request at every event
    instead of failing at start-up; a value that is meant to be empty can be written as is.
    ``$NAME`` and ``{NAME}`` are left alone; there is no escape for a literal ``${``.
    """
    names = ENV_REF.findall(value)
    if not names:
        return value
    if environment is None:
        raise ValueError(REFUSAL)
    for name in names:
        if name not in environment:
            raise ValueError(f"environment variable {name} (from ${{{name}}}) is not set; "
                             f"export {name}=... before starting the hub")
        if not environment[name]:
            raise ValueError(f"environment variable {name} (from ${{{name}}}) is empty; "
                             "set it, or write the value without a reference")
    return ENV_REF.sub(lambda m: environment[m.group(1)], value)


def expand_options(data: Any, fields: tuple[str, ...], context: Any, *, title: str) -> Any:
    """Options ``data`` (before validation) with the references in ``fields`` expanded:
    strings, the strings of a list, the values of a mapping. Every failure is reported at
    its own location (``headers.Authorization``)."""
    if not fields or not isinstance(data, Mapping):
        return data
    environment = context.get(CONTEXT_KEY) if isinstance(context, Mapping) else None
    errors: list[InitErrorDetails] = []

    def one(value: Any, loc: tuple[str | int, ...]) -> Any:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str):
            return value
        try:
            return expand(text, environment)
        except ValueError as exc:
            errors.append(InitErrorDetails(
                type=PydanticCustomError(ERROR_TYPE, "{reason}", {"reason": str(exc)}),
                loc=loc, input="***"))
            return value

    expanded = dict(data)
    for name in fields:
        value = data.get(name)
        if isinstance(value, Mapping):
            expanded[name] = {k: one(v, (name, str(k))) for k, v in value.items()}
        elif isinstance(value, list):
            expanded[name] = [one(v, (name, i)) for i, v in enumerate(value)]
        elif value is not None:
            expanded[name] = one(value, (name,))
    if errors:
        raise ValidationError.from_exception_data(title, errors)
    return expanded


__all__ = ["CONTEXT_KEY", "ENV_REF", "ERROR_TYPE", "REFUSAL", "REFUSAL_HINT", "expand",
           "expand_options", "fields_with_references", "references", "variables"]
