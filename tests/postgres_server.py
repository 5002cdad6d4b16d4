"""A real PostgreSQL server on 127.0.0.1 for the tests (a session fixture).

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user (through
``runuser``), in a temporary folder that user can write. Host connections need the password
(scram-sha-256), so tests see real authentication. Tests skip, saying why, where no server
binary exists.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

PASSWORD = "s3cret-Pg-pw"


@attrs.frozen
class PostgresServer:
    port: int
    password: str

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql+psycopg://postgres:{secret}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self._dsn(database), autocommit=True) as connection:
            connection.execute(sql)  # type: ignore[arg-type]  (test SQL is trusted)

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres password={self.password} dbname={database}"


def find_postgres_bin() -> Path | None:
    """The folder with ``initdb`` and ``postgres``: Debian's versioned folder, or PATH."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
    found = shutil.which("postgres")
    if found:
        candidates.append(Path(found).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    return None


def _version(path: Path) -> int:
    name = path.parent.name
    return int(name) if name.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user() -> list[str]:
    """The command prefix that runs the server as a user it accepts (never root)."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("PostgreSQL cannot run as root and there is no 'postgres' user")
    if runuser is None:
        pytest.skip("PostgreSQL cannot run as root and runuser is not installed")
    return [runuser, "-u", "postgres", "--"]


def _wait_ready(server: PostgresServer, process: subprocess.Popen[bytes], log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited with {process.returncode}: {log.read_text()}")
        try:
            with psycopg.connect(server._dsn("postgres"), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session, on a free port of 127.0.0.1."""
    folder = find_postgres_bin()
    if folder is None:
        pytest.skip("no PostgreSQL server binaries (initdb, postgres) found: install postgresql")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'defstate[sql]')")
    prefix = _as_server_user()
    # tempfile's folder, not tmp_path: pytest's base folder is private to root
    base = Path(tempfile.mkdtemp(prefix="defstate-pg-"))
    data, log = base / "data", base / "postgres.log"
    if prefix:
        shutil.chown(base, "postgres")
    pwfile = base / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if prefix:
        shutil.chown(pwfile, "postgres")
    subprocess.run(
        [*prefix, str(folder / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile),
         "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    server = PostgresServer(_free_port(), PASSWORD)
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [*prefix, str(folder / "postgres"), "-D", str(data), "-p", str(server.port),
             "-h", "127.0.0.1", "-k", str(base), "-c", "fsync=off", "-c", "autovacuum=off"],
            stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_ready(server, process, log)
        yield server
    finally:
        process.terminate()  # SIGTERM: smart shutdown; the sessions are closed by then
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(OSError):
            shutil.rmtree(base)
