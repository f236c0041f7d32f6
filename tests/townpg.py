# A private PostgreSQL server for tests and benches: initdb into a temporary folder, pg_ctl start on a free port.
# PostgreSQL refuses to run as root: as root, the server runs as the `postgres` system user (or `nobody`).
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

SUPERUSER = "town"


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl: $PG_BINDIR, the PATH, or Debian's /usr/lib/postgresql/<v>/bin."""
    for cand in [os.environ.get("PG_BINDIR"), *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        if cand and (Path(cand) / "initdb").is_file() and (Path(cand) / "pg_ctl").is_file():
            return Path(cand)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


class PgServer:
    """start() → url(dbname); create_db() gives each test its own database; stop() removes everything."""

    def __init__(self, bindir: Path, *, fsync: bool = False):
        self.bindir, self.fsync = bindir, fsync
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="town-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._n = 0

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        return ["runuser", "-u", self.user, "--", *cmd] if self.user else cmd

    def start(self) -> PgServer:
        if self.user:
            u = pwd.getpwnam(self.user)
            os.chown(self.root, u.pw_uid, u.pw_gid)
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        subprocess.run(self._cmd("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                                 "--no-sync"), check=True, capture_output=True, env=env, cwd=self.root)
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=60"
        opts += "" if self.fsync else " -c fsync=off -c synchronous_commit=off"
        subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", opts,
                                 "-w", "-t", "60", "start"), check=True, capture_output=True, env=env,
                       cwd=self.root)
        return self

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_db(self) -> str:
        import psycopg

        self._n += 1
        name = f"town_{os.getpid()}_{self._n}"
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                       capture_output=True, cwd=self.root)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server():
    """One private PostgreSQL for the test session; skipped (with the reason) only without server binaries."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): run scripts/setup, or set PG_BINDIR")
    server = PgServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty database on the session's server."""
    return pg_server.create_db()
