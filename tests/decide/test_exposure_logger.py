"""The decision log's background flusher batches exposures instead of chasing the queue."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson

from tailorkit.collect.pipeline import Collector
from tailorkit.decide.engine import DecideRequest
from tailorkit.decide.service import DecideService, ExposureLogger
from tailorkit.project import load_project
from tailorkit.store.warehouse import Warehouse
from tests.decide.conftest import write_decide_project


def test_flush_submits_what_was_queued_and_leaves_newcomers_for_the_next_one() -> None:
    batches: list[int] = []
    logger: ExposureLogger

    def submit(events: list[dict[str, Any]]) -> Future[Any] | None:
        batches.append(len(events))
        logger([{"n": 100 + len(batches)}])  # traffic goes on while the store commits
        return None

    logger = ExposureLogger(submit, max_batch=2)
    logger([{"n": i} for i in range(5)])
    assert logger.flush() == 5
    assert batches == [2, 2, 1]  # one pass over the five, in batches of max_batch
    assert len(logger._queue) == 3  # the three that arrived meanwhile wait
    assert logger.flush() == 3 and batches == [2, 2, 1, 2, 1]


def test_a_batch_the_store_refuses_is_stored_later_in_order() -> None:
    stored: list[int] = []
    failures = [RuntimeError("database is restarting")] * 2

    def submit(events: list[dict[str, Any]]) -> Future[Any] | None:
        if failures:
            raise failures.pop()
        stored.extend(e["n"] for e in events)
        return None

    logger = ExposureLogger(submit, max_batch=2)
    logger([{"n": i} for i in range(5)])
    assert logger.flush() == 0 and logger.flush() == 0  # refused twice: nothing lost
    logger([{"n": 5}])
    assert logger.flush() == 6
    assert stored == [0, 1, 2, 3, 4, 5]


def test_a_batch_failing_in_the_background_comes_back_and_overflow_is_dropped() -> None:
    futures: list[Future[Any]] = []

    def submit(events: list[dict[str, Any]]) -> Future[Any] | None:
        futures.append(Future())
        return futures[-1]

    logger = ExposureLogger(submit, max_batch=10, max_queue=4)
    logger([{"n": i} for i in range(3)])
    assert logger.flush() == 3
    logger([{"n": 10}, {"n": 11}])  # arrived while the first batch was being stored
    futures[0].set_exception(RuntimeError("disk full"))
    # room for two of the three: the batch's newest come back, ahead of the newcomers
    assert [e["n"] for e in logger._queue] == [1, 2, 10, 11]


def test_the_decision_log_stores_no_hash_value_of_a_personal_attribute(tmp_path: Path) -> None:
    # an experiment hashed on the e-mail address: its exposures go through the queue
    # (as rows) into the store, with the hash attribute named and its value left out
    placements = {
        "placements": {
            "hero": {
                "default": "a",
                "variants": {"a": {"content": "A"}, "b": {"content": "B"}},
                "rules": [{"id": "test", "priority": 1, "experiment": {
                    "key": "hero-test", "variations": ["a", "b"], "hash_attribute": "email"}}],
            }
        }
    }  # fmt: skip
    project = load_project(write_decide_project(tmp_path / "shop", placements))
    assert "email" in project.settings.pii.fields
    warehouse = Warehouse(project.settings.store_url)
    service = DecideService(project, Collector(warehouse, project.settings))
    try:
        for i in range(3):
            attributes = {"email": f"person{i}@example.com"}
            answer = service.engine.decide(DecideRequest(user_id=f"u{i}", attributes=attributes))
            assert answer["placements"]["hero"]["source"] == "experiment"
        assert service.exposures.flush() >= 3
        stored = warehouse.events.filter(warehouse.events.type == "exposure").to_pyarrow()
        logged = [orjson.loads(p) for p in stored["properties"].to_pylist()]
        experiments = [p for p in logged if p.get("key") == "hero-test"]
        assert len(experiments) == 3
        assert all(p["hash_attribute"] == "email" and "hash_value" not in p for p in experiments)
        assert "example.com" not in str(stored.to_pylist())
    finally:
        warehouse.close()
