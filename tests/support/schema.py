"""The deploy-request/v1 JSON Schema (``docs/deploy-request.schema.json``), checked with
``jsonschema`` (Draft 2020-12, formats included: ``rfc3339-validator`` checks
``date-time``)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "deploy-request.schema.json"


@cache
def load_schema() -> dict[str, Any]:
    if "date-time" not in jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers:
        raise RuntimeError("date-time would go unchecked: install the test extra "
                           "(pip install -e '.[test]'), which has rfc3339-validator")
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def schema_errors(instance: Any, schema: dict[str, Any] | None = None) -> list[str]:
    """Every way ``instance`` breaks the schema (default: the deploy request's), as
    ``path: message``; empty when it is valid."""
    validator = jsonschema.Draft202012Validator(
        schema or load_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(instance)]
