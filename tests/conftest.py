"""Shared fixtures: one real Kafka broker (Tansu) and one real ``mlflow server`` per session.

Both run as plain subprocesses from sync fixtures, so no fixture depends on an event loop.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hub.broker.embedded import free_port, start_broker_process, stop_process, wait_kafka_ready
from tests.support.mlflow_globals import mlflow_globals_restored
from tests.support.mlflow_server import MlflowServer, MlflowServerFactory, MlflowServerProcess
from tests.support.postgres import PostgresCluster, running_postgres
from tests.support.receiver import Receiver, running_receiver

if TYPE_CHECKING:  # importing mlflow costs ~2 s: only the tests that need it pay for it
    from mlflow.tracking import MlflowClient


@pytest.fixture(scope="session", autouse=True)
def _isolated_mlflow_env() -> Iterator[None]:
    """Keep the developer's MLflow settings out of the tests (and telemetry off)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            mp.delenv(name, raising=False)
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield


@pytest.fixture(autouse=True)
def _mlflow_process_uri() -> Iterator[None]:
    """No test inherits the previous test's registry as MLflow's process-wide default."""
    with mlflow_globals_restored():
        yield


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on 127.0.0.1 that checks signatures and records hits."""
    async with running_receiver() as r:
        yield r


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``"127.0.0.1:PORT"`` of one in-memory Tansu broker shared by the whole session."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("kafka") / "tansu.log"
    proc = start_broker_process(port, log_path)
    bootstrap = f"127.0.0.1:{port}"
    try:
        wait_kafka_ready(bootstrap, timeout_s=20, proc=proc, log_path=log_path)
        yield bootstrap
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def _mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow database: a copy spares each new server ~1.3 s of migrations."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    path = tmp_path_factory.mktemp("mlflow-template") / "template.db"
    SqlAlchemyStore(f"sqlite:///{path}").engine.dispose()
    return path


@pytest.fixture(scope="session")
def mlflow_server(
    tmp_path_factory: pytest.TempPathFactory, _mlflow_template_db: Path
) -> Iterator[MlflowServer]:
    """One real ``mlflow server`` on a fresh sqlite database for the whole session."""
    root = tmp_path_factory.mktemp("mlflow")
    db_path = root / "mlflow.db"
    shutil.copyfile(_mlflow_template_db, db_path)
    server = MlflowServerProcess(f"sqlite:///{db_path}", free_port(), root / "artifacts")
    server.start()
    try:
        yield MlflowServer(server.url, db_path, server.db_uri, server.artifact_root)
    finally:
        server.stop()


@pytest.fixture
def mlflow_server_factory(
    tmp_path: Path, _mlflow_template_db: Path
) -> Iterator[MlflowServerFactory]:
    """Build extra MLflow servers, stopped at teardown.

    ``factory(db_path=None, port=None, *, start=True, env=None, python=None)``: a fresh
    database under ``tmp_path`` unless ``db_path`` is given (seeded empty if that file does
    not exist). ``python``: another MLflow release's interpreter (``old_mlflow_python``);
    its server creates its own database (this release's schema is newer than it knows).
    ``stop()``/``start()`` on the result simulates an outage: it restarts on the same port
    and database.
    """
    servers: list[MlflowServerProcess] = []

    def factory(
        db_path: Path | None = None,
        port: int | None = None,
        *,
        start: bool = True,
        env: dict[str, str] | None = None,
        python: Path | None = None,
    ) -> MlflowServerProcess:
        n = len(servers)
        db = db_path or tmp_path / f"mlflow-{n}.db"
        if not db.exists() and python is None:
            shutil.copyfile(_mlflow_template_db, db)
        server = MlflowServerProcess(
            f"sqlite:///{db}", port or free_port(), tmp_path / f"artifacts-{n}", env=env,
            python=python,
        )
        servers.append(server)
        if start:
            server.start()
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway Postgres cluster on a loopback port for the session; the tests using it
    are skipped, saying why, where Postgres is not installed or cannot start."""
    yield from running_postgres()


@pytest.fixture(scope="session")
def old_mlflow_python() -> Path:
    """The python of a cached venv with the oldest MLflow server supported (built on first
    use, about a minute; see :mod:`tests.support.mlflow_versions`). Skips only if the
    package index cannot be reached to build it."""
    from tests.support.mlflow_versions import OLDEST, IndexUnreachable, server_python

    try:
        return server_python(OLDEST)
    except IndexUnreachable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def mlflow_client(mlflow_server: MlflowServer) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name unique to this test run, readable in broker logs."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80]
    return f"test-{slug}-{uuid.uuid4().hex[:12]}"
