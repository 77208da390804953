"""What the hub must settle about a registry URI before MLflow opens it.

MLflow users write registry URIs the short way: ``postgresql://``, ``mysql://``,
``file:///srv/mlruns`` or a plain path. Three things stand between such a URI and a scan:

* **The database driver.** SQLAlchemy picks a default driver per database: psycopg 3 for
  ``postgresql://`` from SQLAlchemy 2.1 (psycopg2 before), mysqlclient (a C build) for
  ``mysql://``. When the default is not installed and another known driver is, the URI is
  rewritten to name that one (``mysql://`` → ``mysql+pymysql://`` with ``registry-hub[mysql]``);
  when none is, reading the registry fails with an error saying what to install. A URI that
  names its driver (``postgresql+psycopg2://``) is used as written, or refused the same way.
* **The file store.** MLflow 3 refuses ``file:`` registries ("maintenance mode") unless
  ``MLFLOW_ALLOW_FILE_STORE`` is true. A file registry in the hub's configuration is the
  user's explicit choice, so the hub allows it (unless the variable is set otherwise).
* **MLflow's process-wide URI.** MLflow's file store reads logged models through
  ``MlflowClient()``, i.e. the process-wide tracking URI, which defaults to
  ``sqlite:///mlflow.db`` in the working directory: a stray database, created and migrated
  (10-16 s) by the first scan that sees a version. The hub makes the tracking and registry
  URIs it reads MLflow's process-wide ones.

:func:`resolve` is pure (what is installed is passed in); :func:`prepare` applies the result
to the process. A URI in a message always goes through :func:`~hub.redaction.redact_url`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hub.config import MlflowConfig
from hub.errors import SourceError
from hub.redaction import redact_url

SERVER_NAMES = frozenset({"databricks", "databricks-uc", "uc"})
"""Registry URIs without a scheme that MLflow reads as a service, not a path."""


@dataclass(frozen=True)
class Driver:
    module: str
    """The DB-API module SQLAlchemy imports for it."""
    install: str
    """What to install to get it."""


DRIVERS = {
    "psycopg": Driver("psycopg", "pip install 'psycopg[binary]' (part of registry-hub's "
                                 "default install)"),
    "psycopg2": Driver("psycopg2", "pip install psycopg2-binary"),
    "mysqldb": Driver("MySQLdb", "pip install mysqlclient (a C build: needs the MySQL "
                                 "client headers)"),
    "pymysql": Driver("pymysql", "pip install 'registry-hub[mysql]' (PyMySQL, pure Python)"),
    "pyodbc": Driver("pyodbc", "pip install pyodbc (and an ODBC driver for SQL Server)"),
    "pysqlite": Driver("sqlite3", "a Python built with sqlite3"),
}
"""SQLAlchemy driver names the hub knows: a driver it does not know is left to SQLAlchemy."""

CHOICES = {"postgresql": ("psycopg", "psycopg2"), "mysql": ("pymysql", "mysqldb")}
"""Drivers tried, in order, for a URI naming none whose SQLAlchemy default is missing."""

DATABASE_NAMES = {"postgresql": "Postgres", "mysql": "MySQL", "mssql": "SQL Server",
                  "sqlite": "SQLite"}
"""The database dialects MLflow can keep a registry in."""


def is_file_store(uri: str) -> bool:
    """A ``file:`` URI or a plain path (MLflow's file store), not a server or a database."""
    if uri in SERVER_NAMES:
        return False
    scheme = urlsplit(uri).scheme
    return scheme == "file" or scheme == "" or (len(scheme) == 1 and scheme.isalpha())


def database(uri: str) -> tuple[str, str | None] | None:
    """``(dialect, driver or None)`` for a database URI MLflow opens with SQLAlchemy, else
    ``None``: ``postgresql+psycopg2://...`` → ``("postgresql", "psycopg2")``."""
    scheme = urlsplit(uri).scheme.lower()
    dialect, plus, driver = scheme.partition("+")
    if dialect not in DATABASE_NAMES:
        return None
    return dialect, driver if plus else None


def resolve(uri: str, *, default_driver: Callable[[str], str],
            installed: Callable[[str], bool]) -> str:
    """The URI for MLflow to open ``uri`` with: a plain path as an absolute ``file:`` URI; a
    database URI naming no driver, with one that is installed when SQLAlchemy's default
    (``default_driver(dialect)``) is not (``installed(module)``). Anything else unchanged.

    Raises :class:`SourceError` saying what to install when no driver for the database is.
    """
    if is_file_store(uri):
        return uri if urlsplit(uri).scheme == "file" else Path(uri).absolute().as_uri()
    found = database(uri)
    if found is None:
        return uri
    dialect, named = found
    if named is not None:
        known = DRIVERS.get(named)
        if known is None or installed(known.module):
            return uri
        raise SourceError(
            f"the registry {redact_url(uri)} names the SQLAlchemy driver {named!r}, which is "
            f"not installed: {known.install}" + _instead(dialect, named, installed))
    candidates = list(dict.fromkeys([default_driver(dialect), *CHOICES.get(dialect, ())]))
    for driver in candidates:
        known = DRIVERS.get(driver)
        if known is None or installed(known.module):
            if driver == candidates[0]:
                return uri  # SQLAlchemy's own choice
            return f"{dialect}+{driver}{uri[len(urlsplit(uri).scheme):]}"
    advice = "; or ".join(DRIVERS[d].install for d in dict.fromkeys(
        [*CHOICES.get(dialect, ()), *candidates]) if d in DRIVERS)
    raise SourceError(
        f"the registry {redact_url(uri)} is a {DATABASE_NAMES[dialect]} database and no driver "
        f"for it is installed (SQLAlchemy's default for {dialect}:// is {candidates[0]}): "
        f"{advice}")


def _instead(dialect: str, named: str, installed: Callable[[str], bool]) -> str:
    others = [d for d in CHOICES.get(dialect, ()) if d != named and installed(DRIVERS[d].module)]
    return f", or write {dialect}+{others[0]}:// (installed)" if others else ""


def prepare(tracking_uri: str, registry_uri: str | None = None) -> tuple[str, str]:
    """:func:`resolve` both URIs (the registry's defaults to the tracking one) against this
    process's SQLAlchemy and packages, then set MLflow up for them: the file store allowed
    when either is one, and both made MLflow's process-wide URIs. Returns ``(tracking,
    registry)`` to give ``MlflowClient``."""
    import mlflow

    tracking, registry = (resolve(uri, default_driver=_sqlalchemy_default, installed=_installed)
                          for uri in (tracking_uri, registry_uri or tracking_uri))
    if is_file_store(tracking) or is_file_store(registry):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)
    return tracking, registry


def open_client(config: MlflowConfig, *, tracking_uri: str | None = None,
                registry_uri: str | None = None) -> Any:
    """An ``MlflowClient`` on the configured registry (or the URIs given): the URIs
    :func:`prepare`-d, and MLflow's HTTP client kept from stalling for minutes behind its
    default retry policy on a failing server (``mlflow.request_retries``, a timeout of
    ``mlflow.scan_timeout_s``), unless the user set MLflow's variables otherwise."""
    from mlflow.tracking import MlflowClient  # heavy import, only when first needed

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(config.request_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(config.scan_timeout_s)))
    tracking, registry = prepare(tracking_uri or config.tracking_uri,
                                 registry_uri or config.registry)
    return MlflowClient(tracking_uri=tracking, registry_uri=registry)


def _sqlalchemy_default(dialect: str) -> str:
    from sqlalchemy.engine import make_url

    return str(make_url(f"{dialect}://").get_dialect().driver)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


__all__ = ["is_file_store", "open_client", "prepare", "resolve"]
