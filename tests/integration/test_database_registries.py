"""The hub reading a registry database directly, with the URI written as MLflow users write
it: ``postgresql://user:pass@host:port/db`` against a real Postgres (a throwaway cluster,
tests/support/postgres.py), and ``mysql://`` opened by PyMySQL (``registry-hub[mysql]``)
where mysqlclient is not installed. The password in the URI shows up nowhere: not in an
event, an error, a structured log or anything the process prints."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from structlog.testing import capture_logs

from hub.app import Hub, Roles
from hub.broker.embedded import free_port
from hub.detect.detector import Detector
from hub.detect.registry_uri import prepare
from hub.errors import SourceError
from hub.ready import not_ready
from tests.support.detector import Running, hub_config
from tests.support.postgres import PASSWORD, SUPERUSER, PostgresCluster
from tests.support.wait import until

pytestmark = pytest.mark.timeout(120)

TEMPLATE = "mlflow_template"


@pytest.fixture(scope="module")
def _pg_template(postgres: PostgresCluster) -> str:
    """An empty, migrated MLflow database to copy: MLflow's migrations take seconds on
    Postgres, a copy a tenth of one."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(postgres.create_database(TEMPLATE)).engine.dispose()
    return TEMPLATE


@pytest.fixture
def pg_registry(postgres: PostgresCluster, _pg_template: str) -> str:
    """``postgresql://hub:<password>@127.0.0.1:<port>/<fresh database>``."""
    return postgres.create_database(f"registry_{uuid.uuid4().hex[:12]}", template=_pg_template)


def _admin(postgres: PostgresCluster, *statements: str) -> None:
    with psycopg.connect(host="127.0.0.1", port=postgres.port, user=SUPERUSER,
                         password=PASSWORD, dbname="postgres", autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


@pytest.fixture
def shown(capfd: pytest.CaptureFixture[str]) -> Iterator[Callable[..., str]]:
    """Everything the test can see leave the process, as one text: structured logs (captured
    while the test runs), what was printed (MLflow's and SQLAlchemy's own logging included),
    plus whatever the test adds."""
    with capture_logs() as logs:
        def text(*extra: Any) -> str:
            out, err = capfd.readouterr()
            return "\n".join([out, err, json.dumps(logs, default=repr), *map(repr, extra)])
        yield text


@pytest.mark.slow
async def test_the_hub_sees_a_postgres_registry_workflow_made_with_the_mlflow_client(
        kafka_bootstrap: str, topic_name: str, pg_registry: str, shown: Callable[..., str]
) -> None:
    from mlflow.tracking import MlflowClient

    assert pg_registry.startswith(f"postgresql://{SUPERUSER}:{quote(PASSWORD)}@127.0.0.1:")
    client = MlflowClient(tracking_uri=pg_registry, registry_uri=pg_registry)
    client.create_registered_model("existing")  # part of the baseline: never an event
    async with Hub(hub_config(pg_registry, kafka_bootstrap, topic_name),
                   Roles(deliver=False)) as hub:
        detector = hub.detector
        assert isinstance(detector, Detector)
        assert await detector.poll_once() == []
        seen: list[Any] = []

        async def step(*expected: tuple[str, str | None]) -> None:
            events = await detector.poll_once()
            assert [(e.type, e.version) for e in events] == list(expected)
            seen.extend(events)

        name = "iris"
        client.create_registered_model(name, tags={"team": "ml"})
        await step(("registered_model.created", None))
        for n in (1, 2):
            client.create_model_version(name, source=f"s3://models/iris/{n}")
        await step(("model_version.created", "1"), ("model_version.created", "2"))
        client.set_model_version_tag(name, "1", "validated", "true")
        await step(("model_version_tag.set", "1"))
        client.transition_model_version_stage(name, "1", "Production")
        await step(("model_version.stage_transitioned", "1"))
        client.set_registered_model_alias(name, "champion", "1")
        await step(("model_version_alias.created", "1"))
        client.set_registered_model_alias(name, "champion", "2")
        await step(("model_version_alias.created", "2"))
        client.delete_model_version(name, "1")
        await step(("model_version.deleted", "1"))
        client.delete_registered_model(name)
        await step(("registered_model.deleted", None))  # its versions go with it

    moved = next(e for e in seen if e.type == "model_version_alias.created"
                 and e.version == "2")
    assert (moved.data["alias"], moved.data["previous_version"]) == ("champion", "1")
    staged = next(e for e in seen if e.type == "model_version.stage_transitioned")
    assert (staged.data["from_stage"], staged.data["to_stage"]) == ("None", "Production")
    # the source every event names is the URI without its password
    assert {e.data["tracking_uri"] for e in seen} == {
        pg_registry.replace(f"{SUPERUSER}:{quote(PASSWORD)}@", "***@")}
    assert quote(PASSWORD) not in shown(*seen)


@pytest.mark.slow
async def test_a_postgres_outage_is_reported_without_the_password_and_recovers(
        kafka_bootstrap: str, topic_name: str, postgres: PostgresCluster, pg_registry: str,
        shown: Callable[..., str]) -> None:
    database = pg_registry.rsplit("/", 1)[1]
    config = hub_config(pg_registry, kafka_bootstrap, topic_name)
    async with Running(config) as hub:
        detector = hub.detector
        assert detector is not None
        _admin(postgres, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false',
               "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
               f"WHERE datname = '{database}'")
        await until(lambda: detector.consecutive_failures >= 2, "scans failing")
        error = detector.last_error or ""
        with pytest.raises(SourceError) as raised:
            await detector.poll_once()
        _admin(postgres, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await until(lambda: detector.consecutive_failures == 0, "scans recovered")
    assert "is not currently accepting connections" in error
    assert error.startswith("reading the registry at postgresql://***@127.0.0.1:")
    text = shown(error, raised.value)
    assert "detector.scan_failed" in text and "detector.scan_recovered" in text
    assert quote(PASSWORD) not in text and PASSWORD not in text


@pytest.mark.skipif(importlib.util.find_spec("pymysql") is None,
                    reason="PyMySQL is not installed (pip install 'registry-hub[mysql]')")
@pytest.mark.skipif(importlib.util.find_spec("MySQLdb") is not None,
                    reason="mysqlclient is installed: mysql:// needs no stand-in here")
def test_mysql_uri_opens_with_pymysql_when_mysqlclient_is_missing() -> None:
    import pymysql
    import sqlalchemy

    port = free_port()  # nothing listens there: the driver gets as far as the wire
    uri, _ = prepare(f"mysql://hub:{quote(PASSWORD)}@127.0.0.1:{port}/mlflow")
    assert uri == f"mysql+pymysql://hub:{quote(PASSWORD)}@127.0.0.1:{port}/mlflow"
    engine = sqlalchemy.create_engine(uri)
    with pytest.raises(sqlalchemy.exc.OperationalError) as raised:
        engine.connect()
    assert isinstance(raised.value.orig, pymysql.err.OperationalError)
    assert "Can't connect to MySQL server on '127.0.0.1'" in str(raised.value)


@pytest.mark.skipif(importlib.util.find_spec("MySQLdb") is not None,
                    reason="mysqlclient is installed: its driver is not missing here")
async def test_a_missing_driver_is_a_start_up_error_saying_what_to_install(
        kafka_bootstrap: str, topic_name: str, shown: Callable[..., str]) -> None:
    uri = f"mysql+mysqldb://hub:{quote(PASSWORD)}@127.0.0.1:{free_port()}/mlflow"
    async with Hub(hub_config(uri, kafka_bootstrap, topic_name), Roles(deliver=False)) as hub:
        detector = hub.detector
        assert detector is not None
        run = asyncio.create_task(hub.run())
        await until(lambda: detector.consecutive_failures >= 1, "a failed first scan")
        reason = not_ready(hub)
        hub.stop()
        await asyncio.wait_for(run, 20)
    assert reason is not None and reason.problem
    assert "cannot read the registry mysql+mysqldb://***@127.0.0.1:" in reason.reason
    assert "names the SQLAlchemy driver 'mysqldb', which is not installed: pip install " \
        "mysqlclient" in reason.reason
    text = shown(reason)
    assert "detector.scan_failed" in text
    assert "Traceback" not in text, "said in words, not as a stack trace"
    assert quote(PASSWORD) not in text
