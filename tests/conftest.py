"""Shared fixtures: project folders, warehouses on DuckDB and PostgreSQL, a live server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tailorkit.profile.materialized import KEPT_PROFILES
from tailorkit.project import Project, load_project
from tailorkit.project.init import write_project
from tailorkit.store.warehouse import SEGMENT_SIZES, Warehouse

PG_ADMIN_URL = os.environ.get("TAILORKIT_TEST_PG", "postgres://postgres@127.0.0.1:5432/test")


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A fresh project folder from ``tailorkit init``."""
    return write_project(tmp_path / "shop")


@pytest.fixture
def project(project_dir: Path) -> Project:
    """The loaded fresh project."""
    return load_project(project_dir)


@contextmanager
def throwaway_database(prefix: str = "tk_test") -> Iterator[str]:
    """A new database on the local PostgreSQL server, dropped afterwards; yields its URL."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway PostgreSQL database on the local server; yields its URL."""
    with throwaway_database() as url:
        yield url


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    """An empty warehouse on each tested backend."""
    if request.param == "duckdb":
        yield Warehouse(f"duckdb://{tmp_path / 'wh.duckdb'}")
        return
    url = request.getfixturevalue("pg_database")
    wh = Warehouse(url)
    yield wh
    for table in ("events", "identities", "ingest_stats", *KEPT_PROFILES, SEGMENT_SIZES):
        wh.con.drop_table(table, force=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """A ``tailorkit serve`` subprocess on loopback."""

    project: Project
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def ingest_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.project.settings.ingest_keys[0]}"}

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.project.settings.admin_keys[0]}"}

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def stop(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(timeout=30)


def start_server(project_dir: Path, log_path: Path, port: int | None = None) -> LiveServer:
    """Start ``tailorkit serve`` and wait until /healthz answers with profiles rebuilt."""
    port = port or free_port()
    log = log_path.open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tailorkit.cli.main",
            "serve",
            "--project",
            str(project_dir),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
        try:
            health = httpx.get(f"{url}/healthz", timeout=1)
            if health.status_code == 200 and health.json()["profiles"] == "ready":
                return LiveServer(load_project(project_dir), url, process, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


@pytest.fixture
def live_server(project_dir: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """A running server for the fresh project."""
    server = start_server(project_dir, tmp_path / "server.log")
    yield server
    server.stop()


REDIS_URL = os.environ.get("TAILORKIT_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix on the local Redis; its keys are deleted afterwards."""
    import redis

    prefix = f"tk-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
