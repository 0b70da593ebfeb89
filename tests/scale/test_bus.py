"""The event bus in one process: entries, redelivery, the spool (real Redis and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import redis
import yaml

from tailorkit.cli.worker import run_worker
from tailorkit.collect.bus import Publisher, Spool, Worker, decode_part, encode_part, read_records
from tailorkit.collect.pipeline import Collector, Part
from tailorkit.project import ConfigError, load_project
from tailorkit.project.init import write_project
from tailorkit.project.loader import BusSettings, PiiSettings, Settings
from tailorkit.store.warehouse import Warehouse
from tests.conftest import free_port
from tests.helpers import event
from tests.scale.conftest import CLI, SHARED_REDIS, bus_project, stream_empty
from tests.scale.test_faults import SEGMENTS

SECRET = "dora.secret@example.org"


def _settings(pg_url: str) -> Settings:
    return Settings(store_url=pg_url, pii=PiiSettings(hmac_key="k" * 20))


def _bus(prefix: str, redis_url: str = SHARED_REDIS, claim: float = 30.0) -> BusSettings:
    return BusSettings(redis_url, f"{prefix}events", "workers", claim, 32, 100)


def _publish(collector: Collector, items: list[dict]) -> dict:
    return collector.ingest_items(items, "http").to_dict()


def test_entries_round_trip_without_raw_pii(pg_url: str) -> None:
    parts: list[Part] = []
    collector = Collector(Warehouse(pg_url), _settings(pg_url), publish=parts.extend)
    items = [event(properties={"email": SECRET}), event(type="bad type!"), event()]
    items.append(items[0])  # an in-batch duplicate
    answer = _publish(collector, items)
    assert answer["statuses"] == ["accepted", "rejected", "accepted", "duplicate"]
    assert collector.warehouse.count_events() == 0, "publishing stores nothing"
    (part,) = parts
    blob = encode_part(part)
    assert SECRET.encode() not in blob, "the stream and the spool carry pseudonymized events"
    back = decode_part(blob)
    assert back.validated.accepted.equals(part.validated.accepted)
    assert back.validated.rejected == part.validated.rejected
    assert back.validated.duplicate_index == [3]
    assert (back.source, back.received) == (part.source, part.received)


def test_redelivered_entries_are_stored_once(pg_url: str, prefix: str, tmp_path: Path) -> None:
    settings = _settings(pg_url)
    publisher = Publisher(_bus(prefix), tmp_path / "spool")
    server = Collector(Warehouse(pg_url), settings, publish=publisher.publish)
    sent = [event(user_id=f"u{i}") for i in range(40)]
    for start in range(0, 40, 10):
        _publish(server, sent[start : start + 10])
    # worker A stores the entries, then dies before acknowledging them
    dying = Worker(_bus(prefix, claim=0.2), Collector(Warehouse(pg_url), settings), "a")
    dying.ensure_group()
    entries = dying._read()
    assert len(entries) == 4
    dying.collector.store_parts([decode_part(fields[b"part"]) for _, fields in entries])
    # worker B takes the idle entries over; the store's dedup makes them harmless
    time.sleep(0.3)
    taker = Worker(_bus(prefix, claim=0.2), Collector(Warehouse(pg_url), settings), "b")
    assert taker.step() == 4
    assert taker.stats.claimed == 4 and taker.stats.duplicates == 40
    assert taker.stats.events_stored == 0
    stored = Warehouse(pg_url).events.event_id.to_pyarrow().to_pylist()
    assert sorted(stored) == sorted(e["event_id"] for e in sent)
    assert stream_empty(publisher.redis, f"{prefix}events")
    stats = Warehouse(pg_url).con.table("ingest_stats").to_pyarrow().to_pylist()
    counted = {r["outcome"]: r["n"] for r in stats}
    assert counted["accepted"] == 40 and counted["duplicate"] == 40
    publisher.stop()


def test_spool_while_redis_is_down_then_drain(pg_url: str, prefix: str, tmp_path: Path) -> None:
    down = BusSettings(f"redis://127.0.0.1:{free_port()}/0", f"{prefix}events")
    publisher = Publisher(down, tmp_path / "spool")
    collector = Collector(Warehouse(pg_url), _settings(pg_url), publish=publisher.publish)
    sent = [[event(properties={"email": SECRET}) for _ in range(5)] for _ in range(3)]
    for batch in sent:
        assert _publish(collector, batch)["accepted"] == 5  # acknowledged from the spool
    assert not publisher.healthy and publisher.spool.pending()
    files = list((tmp_path / "spool").glob("*.log"))
    assert len(files) == 1 and len(list(read_records(files[0]))) == 3
    assert SECRET.encode() not in files[0].read_bytes()
    # Redis is back (the real one): the drain pushes the spool in order
    publisher.redis = redis.Redis.from_url(SHARED_REDIS)
    publisher.start()
    try:
        stream = f"{prefix}events"
        deadline = time.monotonic() + 10
        while publisher.spool.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        entries = publisher.redis.xrange(stream)
        ids = [
            decode_part(f[b"part"]).validated.accepted["event_id"].to_pylist() for _, f in entries
        ]
        assert ids == [[e["event_id"] for e in batch] for batch in sent]
        assert not list((tmp_path / "spool").glob("drain-*.log"))
    finally:
        publisher.stop()


def test_spool_drops_a_torn_tail_and_adopts_orphans(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.append([b"a", b"b"])
    first.close()  # the process is gone; its non-empty file stays
    (orphan,) = tmp_path.glob("*.log")
    with orphan.open("ab") as out:
        out.write(b"\x00\x00\x00\x09\x00\x00")  # a record header cut short by a crash
    second = Spool(tmp_path)
    pushed: list[bytes] = []
    assert second.drain(pushed.append) == 2 and pushed == [b"a", b"b"]
    assert not orphan.exists()
    failing = Spool(tmp_path / "f")
    failing.append([b"x", b"y", b"z"])
    seen: list[bytes] = []

    def push(record: bytes) -> None:
        if record == b"y":
            raise ConnectionError("down again")
        seen.append(record)

    with pytest.raises(ConnectionError):
        failing.drain(push)
    assert seen == [b"x"] and failing.pending()
    rival = Spool(tmp_path / "f")  # another live server: must not take a held spool
    assert rival.drain(seen.append) == 0
    rival.close()
    assert failing.drain(seen.append) == 2 and seen == [b"x", b"y", b"z"]
    assert not failing.pending()


def test_worker_and_bus_configuration_errors(tmp_path: Path, pg_url: str, prefix: str) -> None:
    plain = write_project(tmp_path / "plain")
    out = subprocess.run(
        [*CLI, "worker", "--project", str(plain), "--json"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "bus" in json.loads(out.stdout)["error"]
    project = bus_project(tmp_path / "shop", pg_url, SHARED_REDIS, prefix, segments=SEGMENTS)
    doc = yaml.safe_load((project / "segments.yaml").read_text())
    doc["profiles"]["store"] = "memory"  # invisible to the servers
    (project / "segments.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="profiles must live in Redis"):
        run_worker(load_project(project))
    settings = yaml.safe_load((project / "tailorkit.yaml").read_text())
    settings["store"] = {"url": "duckdb:///<project>/tailorkit.duckdb"}
    (project / "tailorkit.yaml").write_text(yaml.safe_dump(settings))
    with pytest.raises(ConfigError, match="a DuckDB file admits one process"):
        load_project(project)
