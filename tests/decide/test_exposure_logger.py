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
