"""A tracking server's search pages read as JSON, for the full scan.

MLflow's ``RestStore`` turns every page it fetches into protobuf messages and then into
``RegisteredModel`` / ``ModelVersion`` objects, which the scan turns into snapshot values
at once: at 100,000 versions that double conversion was a fifth of a full scan (84 s against
67 s for the bare requests, issue 12). :class:`JsonSearch` makes the requests the store makes
— its endpoints, and MLflow's own ``http_request`` with the store's credentials, retries,
TLS settings and headers, and ``verify_rest_response`` for its errors — and turns the JSON
straight into snapshot values.

It is used only when the registry store is MLflow's plain ``RestStore`` (an ``http(s)://``
tracking server); Databricks, Unity Catalog, SQL and file stores keep the store's own
search. Anything it cannot find in the store (another MLflow release arranging it
differently) means ``None``: the store's own search is used, as before.
"""

from __future__ import annotations

from typing import Any

from hub.detect.snapshot import ModelState, Version, VersionState


class Page(list[Any]):
    """One page of search results, with the token of the next (``None`` on the last)."""

    def __init__(self, items: list[Any], token: str | None) -> None:
        super().__init__(items)
        self.token = token


class JsonSearch:
    """``search_registered_models`` / ``search_model_versions`` of a ``RestStore``, as
    JSON. Not thread-safe beyond what ``requests`` is: one per reading thread."""

    def __init__(self, store: Any, models_endpoint: tuple[str, str],
                 versions_endpoint: tuple[str, str]) -> None:
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        self._credentials = store.get_host_creds
        self._models = models_endpoint
        self._versions = versions_endpoint
        self._request = http_request
        self._verify = verify_rest_response

    @classmethod
    def of(cls, store: Any) -> JsonSearch | None:
        """For MLflow's plain ``RestStore``; ``None`` for any other store."""
        try:
            from mlflow.protos.model_registry_pb2 import (
                SearchModelVersions,
                SearchRegisteredModels,
            )
            from mlflow.store.model_registry.rest_store import RestStore
        except ImportError:
            return None
        if type(store) is not RestStore:  # Databricks' subclasses ask other things
            return None
        try:
            return cls(store, store._get_endpoint_from_method(SearchRegisteredModels),
                       store._get_endpoint_from_method(SearchModelVersions))
        except (AttributeError, KeyError, TypeError, ImportError):
            return None

    def search_registered_models(self, filter_string: str | None, max_results: int,
                                 page_token: str | None) -> Page:
        body = self._get(self._models, filter_string, max_results, page_token)
        return Page(body.get("registered_models", []), body.get("next_page_token") or None)

    def search_model_versions(self, filter_string: str | None, max_results: int,
                              page_token: str | None) -> Page:
        body = self._get(self._versions, filter_string, max_results, page_token)
        return Page(body.get("model_versions", []), body.get("next_page_token") or None)

    def _get(self, endpoint: tuple[str, str], query: str | None, max_results: int,
             token: str | None) -> dict[str, Any]:
        path, method = endpoint
        params: dict[str, Any] = {"max_results": max_results}
        if query is not None:
            params["filter"] = query
        if token is not None:
            params["page_token"] = token
        arguments = {"params": params} if method == "GET" else {"json": params}
        response = self._verify(
            self._request(self._credentials(), path, method, **arguments), path)
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError(f"{path} answered {type(body).__name__}, not a JSON object")
        return body


def _pairs(raw: Any, key: str, value: str) -> list[tuple[str, str]]:
    """``[{"key": k, "value": v}, ...]`` (tags) or ``[{"alias": a, "version": v}]`` as pairs;
    the JSON leaves out an empty value."""
    return [(str(item[key]), str(item.get(value, ""))) for item in raw or ()]


def version_of_json(mv: dict[str, Any]) -> Version:
    """A ``ModelVersion`` as the server's JSON has it, like ``source.version_of``."""
    return (mv["name"], VersionState.reported(
        version=mv["version"], creation_timestamp=mv.get("creation_timestamp"),
        run_id=mv.get("run_id"), source=mv.get("source"), user_id=mv.get("user_id"),
        status=mv.get("status"), stage=mv.get("current_stage"),
        description=mv.get("description"), tags=_pairs(mv.get("tags"), "key", "value")))


def model_of_json(rm: dict[str, Any]) -> ModelState:
    """A ``RegisteredModel`` as the server's JSON has it, like ``source.model_of``."""
    return ModelState.reported(
        name=rm["name"], creation_timestamp=rm.get("creation_timestamp"),
        description=rm.get("description"), tags=_pairs(rm.get("tags"), "key", "value"),
        aliases=_pairs(rm.get("aliases"), "alias", "version"))
