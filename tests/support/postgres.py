"""A throwaway Postgres cluster on a free loopback port, for tests of the hub reading a
Postgres registry directly.

It uses the server binaries of Debian's ``postgresql`` package (``/usr/lib/postgresql/*/bin``;
``.ci/run`` installs it when missing). Postgres refuses to run as root, so under root the
cluster belongs to the package's ``postgres`` user and every server command runs through
``runuser``; its directory is then made under the system temp dir, not pytest's (which is
private to root). ``pg_ctl start -w`` returns once the server accepts connections, and
``pg_isready`` confirms it on the TCP port the tests use. Where no binaries exist or the
cluster cannot start, the tests that need it are skipped, saying why.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from hub.broker.embedded import free_port

SUPERUSER = "hub"
PASSWORD = "pg-Secret-4711"  # distinctive, so a test can look for it in errors and logs
SERVER_USER = "postgres"  # Debian's package makes it; Postgres will not run as root


def server_binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding initdb and pg_ctl."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin")
             if (p / "initdb").exists() and (p / "pg_ctl").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


@dataclass
class PostgresCluster:
    bin_dir: Path
    root: Path
    port: int
    run_as: str | None  # the user every server command runs as (None: the current one)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def uri(self, database: str, *, scheme: str = "postgresql") -> str:
        """``postgresql://hub:<password>@127.0.0.1:<port>/<database>``, as MLflow users write it."""
        return f"{scheme}://{SUPERUSER}:{quote(PASSWORD, safe='')}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """A new database, empty or a copy of ``template`` (which nobody may be connected
        to); returns its URI."""
        import psycopg

        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER,
                             password=PASSWORD, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')  # type: ignore[arg-type]
        return self.uri(name)

    def _run(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              cwd=self.root, check=False)

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} failed ({result.returncode}): {result.stderr.strip()}"
                               f"\n{tail}")

    def start(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self.run_as is not None:
            user = pwd.getpwnam(self.run_as)
            for path in (self.root, pwfile):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._check(self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER,
                              f"--pwfile={pwfile}", "--auth=scram-sha-256", "--no-locale",
                              "-E", "UTF8", "--no-sync"), "initdb")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        log = str(self.root / "server.log")
        self._check(self._run("pg_ctl", "-D", str(self.data_dir), "-l", log, "-o", options,
                              "-w", "-t", "30", "start"), "pg_ctl start")
        self._check(self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-t", "10"),
                    "pg_isready")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")


def running_postgres() -> Iterator[PostgresCluster]:
    """For a fixture: a started cluster, stopped and removed at teardown; skips the test with
    the reason where Postgres is not installed or cannot start here."""
    bin_dir = server_binaries()
    if bin_dir is None:
        pytest.skip("Postgres is not installed (no /usr/lib/postgresql/*/bin/initdb); "
                    "`apt-get install postgresql` (as .ci/run does as root) enables these tests")
    run_as: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            pytest.skip(f"running as root and there is no {SERVER_USER!r} user to run "
                        "Postgres as (Postgres refuses to run as root)")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without `runuser` to start Postgres as another user")
        run_as = SERVER_USER
    root = Path(tempfile.mkdtemp(prefix="registry-hub-pg-"))
    cluster = PostgresCluster(bin_dir, root, free_port(), run_as)
    try:
        try:
            cluster.start()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"Postgres ({bin_dir}) could not start here: {exc}")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
