"""A throwaway PostgreSQL cluster on 127.0.0.1 in a temporary folder, for the tests and benchmarks.

Debian's PostgreSQL (``make test`` installs the ``postgresql`` package when it is missing) is
started with its own ``initdb`` and ``pg_ctl`` in a fresh folder, listening on a free loopback
port only, and thrown away afterwards. PostgreSQL refuses to run as root: as root the cluster
runs as the ``postgres`` user the package made.

    with Cluster() as pg:
        url = pg.new_database("t1")   # postgresql://geo@127.0.0.1:PORT/t1
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["Cluster", "postgres_bin"]


def postgres_bin() -> Path | None:
    """The folder of the newest installed PostgreSQL's server programs, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A PostgreSQL server of its own: ``start()`` (or ``with``), ``new_database()``, ``stop()``."""

    def __init__(self, settings: dict[str, str] | None = None):
        self.bin = postgres_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (make test "
                               "does it)")
        self.root = Path(tempfile.mkdtemp(prefix="geo-engine-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = "geo"
        self.settings = {"listen_addresses": "127.0.0.1", "port": str(self.port),
                         "unix_socket_directories": str(self.root), "max_connections": "300",
                         "shared_buffers": "128MB", **(settings or {})}
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> Cluster:
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "-A", "trust",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        opts = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                  str(self.root / "server.log"), "-w", "-t", "60", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str, template: str | None = None) -> str:
        """Create an empty database (or a copy of ``template``); return its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
