"""The decision log's background flusher batches exposures instead of chasing the queue."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from tailorkit.decide.service import ExposureLogger


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
