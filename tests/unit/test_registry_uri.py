"""Registry URIs as MLflow users write them: which driver opens a database URI, what a
missing driver says, what counts as a file store (hub.detect.registry_uri)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.detect.registry_uri import is_file_store, resolve
from hub.errors import SourceError

SQLALCHEMY_21 = {"postgresql": "psycopg", "mysql": "mysqldb", "mssql": "pyodbc",
                 "sqlite": "pysqlite"}.__getitem__
SQLALCHEMY_20 = {"postgresql": "psycopg2", "mysql": "mysqldb"}.__getitem__


def having(*modules: str) -> Callable[[str], bool]:
    return {"sqlite3", *modules}.__contains__


@pytest.mark.parametrize(("uri", "default", "installed", "opened"), [
    # the default install: SQLAlchemy 2.1 and psycopg 3
    ("postgresql://u:pw@db:5432/mlflow", SQLALCHEMY_21, having("psycopg"),
     "postgresql://u:pw@db:5432/mlflow"),
    # an older SQLAlchemy picks psycopg2, which the default install lacks
    ("postgresql://u:pw@db/mlflow", SQLALCHEMY_20, having("psycopg"),
     "postgresql+psycopg://u:pw@db/mlflow"),
    ("postgresql://u:pw@db/mlflow", SQLALCHEMY_20, having("psycopg", "psycopg2"),
     "postgresql://u:pw@db/mlflow"),
    # registry-hub[mysql]: PyMySQL stands in for mysqlclient, query and all kept
    ("mysql://u:p%40ss@db:3306/mlflow?charset=utf8mb4", SQLALCHEMY_21, having("pymysql"),
     "mysql+pymysql://u:p%40ss@db:3306/mlflow?charset=utf8mb4"),
    ("mysql://u:pw@db/mlflow", SQLALCHEMY_21, having("pymysql", "MySQLdb"),
     "mysql://u:pw@db/mlflow"),
    # a driver the URI names is used as written
    ("mysql+pymysql://u:pw@db/mlflow", SQLALCHEMY_21, having("pymysql"),
     "mysql+pymysql://u:pw@db/mlflow"),
    ("postgresql+pg8000://u:pw@db/mlflow", SQLALCHEMY_21, having(),
     "postgresql+pg8000://u:pw@db/mlflow"),  # not one the hub knows: SQLAlchemy decides
    ("sqlite:///mlflow.db", SQLALCHEMY_21, having(), "sqlite:///mlflow.db"),
    ("http://mlflow:5000", SQLALCHEMY_21, having(), "http://mlflow:5000"),
    ("databricks", SQLALCHEMY_21, having(), "databricks"),
    ("file:///srv/mlruns", SQLALCHEMY_21, having(), "file:///srv/mlruns"),
])
def test_a_database_uri_opens_with_an_installed_driver(
        uri: str, default: Callable[[str], str], installed: Callable[[str], bool],
        opened: str) -> None:
    assert resolve(uri, default_driver=default, installed=installed) == opened


def test_a_plain_path_is_an_absolute_file_uri(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve("mlruns", default_driver=SQLALCHEMY_21, installed=having()) == \
        (tmp_path / "mlruns").as_uri()
    assert resolve("/srv/mlruns", default_driver=SQLALCHEMY_21, installed=having()) == \
        "file:///srv/mlruns"


@pytest.mark.parametrize(("uri", "store"), [
    ("file:///srv/mlruns", True), ("./mlruns", True), ("/srv/mlruns", True),
    ("C:\\mlruns", True), ("sqlite:///mlflow.db", False), ("http://h:5000", False),
    ("postgresql://h/db", False), ("databricks", False), ("databricks-uc", False),
])
def test_what_counts_as_a_file_store(uri: str, store: bool) -> None:
    assert is_file_store(uri) is store


def test_mysql_without_a_driver_names_the_extra_and_hides_the_password() -> None:
    with pytest.raises(SourceError) as raised:
        resolve("mysql://hub:hunter2@db:3306/mlflow", default_driver=SQLALCHEMY_21,
                installed=having())
    message = str(raised.value)
    assert message.startswith("the registry mysql://***@db:3306/mlflow is a MySQL database "
                              "and no driver for it is installed")
    assert "pip install 'registry-hub[mysql]'" in message
    assert "mysqlclient" in message
    assert "hunter2" not in message


def test_a_named_driver_that_is_missing_says_what_to_install_and_what_would_work() -> None:
    with pytest.raises(SourceError, match=r"names the SQLAlchemy driver 'psycopg2', which is "
                       r"not installed: pip install psycopg2-binary, or write "
                       r"postgresql\+psycopg:// \(installed\)"):
        resolve("postgresql+psycopg2://u:pw@db/mlflow", default_driver=SQLALCHEMY_21,
                installed=having("psycopg"))


def test_postgres_without_psycopg_points_at_the_default_install() -> None:
    with pytest.raises(SourceError, match=r"psycopg\[binary\]"):
        resolve("postgresql://u:pw@db/mlflow", default_driver=SQLALCHEMY_21,
                installed=having())


@given(text=st.text(max_size=20),
       scheme=st.sampled_from(["mysql", "mysql+mysqldb", "postgresql", "mssql"]))
def test_no_error_shows_the_password(text: str, scheme: str) -> None:
    password = "Z9#" + text  # quoted, "Z9%23..." appears nowhere else in a message
    uri = f"{scheme}://user:{quote(password, safe='')}@db.example:5432/mlflow"
    with pytest.raises(SourceError) as raised:
        resolve(uri, default_driver=SQLALCHEMY_21, installed=having())
    assert quote(password, safe="") not in str(raised.value)
    assert "***@db.example:5432/mlflow" in str(raised.value)
