"""Databricks-style upper-case registry webhook event names, as aliases of the event catalog.

Code written against Databricks-style registry webhooks subscribes to names such as
``MODEL_VERSION_TRANSITIONED_TO_PRODUCTION``. A subscription (config file or admin API) may
use them in ``events``; :func:`expand` rewrites them into catalog types plus ``when``
conditions, so routing only ever sees catalog globs:

* ``MODEL_VERSION_CREATED`` → ``model_version.created``
* ``MODEL_VERSION_TRANSITIONED_STAGE`` → ``model_version.stage_transitioned``
* ``MODEL_VERSION_TRANSITIONED_TO_STAGING`` / ``_TO_PRODUCTION`` / ``_TO_ARCHIVED`` →
  ``model_version.stage_transitioned`` with ``when: {to_stage: Staging | Production |
  Archived}``
* ``REGISTERED_MODEL_CREATED`` → ``registered_model.created``
* ``MODEL_VERSION_TAG_SET`` → ``model_version_tag.set``

Every catalog type is also reachable by its upper-case name (``MODEL_VERSION_ALIAS_CREATED``
→ ``model_version_alias.created``), the names the ``databricks`` body format sends.
Transition requests and comments exist only in Databricks workspaces: those names are refused
with an explanation. Everything here is pure.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from hub.events import EventType

_ALIAS = re.compile(r"^[A-Z][A-Z0-9_]*$")
_STAGE = EventType.MODEL_VERSION_STAGE_TRANSITIONED.value

ALIASES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    **{t.name: ((t.value,), {}) for t in EventType},
    "MODEL_VERSION_TRANSITIONED_STAGE": ((_STAGE,), {}),
    "MODEL_VERSION_TRANSITIONED_TO_STAGING": ((_STAGE,), {"to_stage": "Staging"}),
    "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION": ((_STAGE,), {"to_stage": "Production"}),
    "MODEL_VERSION_TRANSITIONED_TO_ARCHIVED": ((_STAGE,), {"to_stage": "Archived"}),
}
"""Alias → (catalog globs, extra ``when`` condition)."""

_REQUESTS = ("stage transition requests are a Databricks workspace feature that the "
             "open-source MLflow registry does not have; subscribe to "
             "MODEL_VERSION_TRANSITIONED_STAGE (or ..._TO_<STAGE>) to hear about the "
             "transition itself")
UNSUPPORTED: dict[str, str] = {
    "TRANSITION_REQUEST_CREATED": _REQUESTS,
    "TRANSITION_REQUEST_TO_STAGING_CREATED": _REQUESTS,
    "TRANSITION_REQUEST_TO_PRODUCTION_CREATED": _REQUESTS,
    "TRANSITION_REQUEST_TO_ARCHIVED_CREATED": _REQUESTS,
    "COMMENT_CREATED": "comments on model versions are a Databricks workspace feature that "
                       "the open-source MLflow registry does not have",
}


def is_alias(name: str) -> bool:
    """Upper-case names are aliases; catalog types and globs are lower-case."""
    return bool(_ALIAS.match(name))


def resolve(name: str) -> tuple[list[str], dict[str, Any]]:
    """``(event_globs, extra_when)`` for one name; a catalog glob resolves to itself.

    Raises ``ValueError`` for an upper-case name that is unknown or has no equivalent.
    """
    if not is_alias(name):
        return [name], {}
    if name in UNSUPPORTED:
        raise ValueError(f"{name} has no equivalent: {UNSUPPORTED[name]}")
    if name not in ALIASES:
        raise ValueError(f"{name!r} is not a known event name; known upper-case names: "
                         f"{', '.join(sorted(ALIASES))} (or a catalog type such as "
                         f"'model_version.created')")
    globs, when = ALIASES[name]
    return list(globs), dict(when)


def expand(events: list[str], when: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Rewrite aliases in ``events`` into catalog globs and merge their conditions into
    ``when``. Idempotent; lists without aliases come back unchanged.

    Conditions of several aliases on the same key become an any-of list
    (``TO_STAGING`` + ``TO_PRODUCTION`` → ``{to_stage: [Staging, Production]}``). A condition
    is dropped when another entry already takes every event of that type
    (``MODEL_VERSION_TRANSITIONED_STAGE`` + ``..._TO_PRODUCTION``). ``ValueError`` when the
    result is not expressible as one subscription (a stage condition beside other event
    types) or contradicts ``when``.
    """
    if not any(is_alias(e) for e in events):
        return events, when
    plain: list[str] = []
    conditioned: list[tuple[str, str, dict[str, Any]]] = []  # (alias, glob, condition)
    for name in events:
        globs, condition = resolve(name)
        for glob in globs:
            if condition:
                conditioned.append((name, glob, condition))
            elif glob not in plain:
                plain.append(glob)
    remaining = [c for c in conditioned if not any(fnmatch.fnmatchcase(c[1], p) for p in plain)]
    if not remaining:
        return plain, when
    aliases = ", ".join(dict.fromkeys(name for name, _, _ in remaining))
    if plain:
        raise ValueError(
            f"{aliases}: a condition on the payload ('when') cannot be combined with other "
            f"event types ({', '.join(plain)}) in one subscription; create one subscription "
            "for each")
    globs = list(dict.fromkeys(glob for _, glob, _ in remaining))
    keys = {frozenset(condition) for _, _, condition in remaining}
    if len(globs) > 1 or len(keys) > 1:
        raise ValueError(f"{aliases} cannot share one subscription; create one for each")
    merged = dict(when)
    for key in sorted(next(iter(keys))):
        options = list(dict.fromkeys(condition[key] for _, _, condition in remaining))
        merged[key] = _intersect(key, when.get(key), options, aliases)
    return globs, merged


def _intersect(key: str, given: Any, options: list[Any], aliases: str) -> Any:
    """What both the user's ``when[key]`` and the aliases accept (routing compares text)."""
    if given is None:
        kept = options
    elif isinstance(given, list):
        texts = {str(v) for v in given}
        kept = [o for o in options if str(o) in texts]
    elif isinstance(given, dict):
        kept = []
    else:
        kept = [given] if str(given) in {str(o) for o in options} else []
    if not kept:
        raise ValueError(f"when.{key} = {given!r} contradicts {aliases}: the subscription "
                         "could never match")
    return kept[0] if len(kept) == 1 else kept


__all__ = ["ALIASES", "UNSUPPORTED", "expand", "is_alias", "resolve"]
