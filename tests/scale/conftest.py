"""Event-bus fixtures: a project on PostgreSQL + Redis Streams, workers, an own Redis."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from tailorkit.project.init import write_project
from tests.conftest import REDIS_URL, free_port, throwaway_database

SHARED_REDIS = REDIS_URL
CLI = (sys.executable, "-m", "tailorkit.cli.main")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (servers and workers share it)."""
    with throwaway_database("tk_bus") as url:
        yield url


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    """A key prefix on the shared Redis (stream, profiles); its keys are deleted afterwards."""
    return redis_prefix


@pytest.fixture
def reaper() -> Iterator[list[Any]]:
    """Processes a test started (``Popen`` or ``LiveServer``); any still running is killed."""
    started: list[Any] = []
    yield started
    for item in started:
        process = getattr(item, "process", item)
        if process.poll() is None:
            process.kill()
            process.wait(30)


def bus_project(
    root: Path,
    pg_url: str,
    redis_url: str,
    prefix: str,
    segments: dict[str, Any] | None = None,
    placements: dict[str, Any] | None = None,
    claim_idle_seconds: float = 30.0,
) -> Path:
    """A project whose servers publish to a stream under ``prefix`` and whose workers store."""
    project = write_project(root)
    settings = yaml.safe_load((project / "tailorkit.yaml").read_text())
    settings["store"] = {"url": pg_url}
    settings["bus"] = {
        "redis_url": redis_url,
        "stream": f"{prefix}events",
        "group": "workers",
        "claim_idle_seconds": claim_idle_seconds,
        "block_ms": 200,
    }
    (project / "tailorkit.yaml").write_text(yaml.safe_dump(settings))
    if segments is not None:
        doc = {**segments, "profiles": {"store": redis_url, "key_prefix": prefix}}
        (project / "segments.yaml").write_text(yaml.safe_dump(doc))
    if placements is not None:
        (project / "placements.yaml").write_text(yaml.safe_dump(placements))
    return project


def start_worker(
    project: Path, log_path: Path, name: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``tailorkit worker --json`` as a subprocess (its summary goes to ``log_path``)."""
    log = log_path.open("ab")
    return subprocess.Popen(
        [*CLI, "worker", "--project", str(project), "--name", name, "--json"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )


def wait_until(check: Any, timeout: float, what: str) -> None:
    """Poll ``check()`` until true, failing with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def stream_empty(client: redis.Redis, stream: str, group: str = "workers") -> bool:
    """No entry left (workers delete what they acknowledge) and none pending."""
    try:
        pending = client.xpending(stream, group)["pending"]
    except redis.ResponseError:
        return False  # the group does not exist yet
    return client.xlen(stream) == 0 and pending == 0


class OwnRedis:
    """A redis-server of our own on a free port, so that stopping it harms nobody.

    It appends every write to a file with ``fsync`` each time (AOF,
    ``appendfsync always``): what the bus acknowledged must survive the stop,
    as in a production set-up (docs/scale-out.md, durability).
    """

    def __init__(self, folder: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) on the same port and folder; returns once it answers."""
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "yes", "--appendfsync", "always"),
                *("--dir", str(self.folder), "--daemonize", "no"),
            ],
            stdout=(self.folder / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), 10, "redis-server to start")
        client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown save, only what was fsynced to the AOF survives."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def post(client: httpx.Client, batch: list[dict[str, Any]], key: str) -> httpx.Response:
    """POST a batch of events with an ingest key."""
    return client.post("/v1/events", json=batch, headers={"Authorization": f"Bearer {key}"})
