"""Units of the features service: format checks, exposure log, atomic swaps, doctests."""

from __future__ import annotations

import doctest
import importlib
import json
import logging
import threading
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tailorkit.decide.exposures import ExposureLog, exposure_event_for
from tailorkit.decide.features import FeatureService, merge_profile, validate_features
from tailorkit.decide.log import exposure_event
from tailorkit.evaluate import ExposureRecord
from tailorkit.project import ConfigError, load_project
from tailorkit.project.init import write_project
from tests.shared_data import shared_dir

MODULES = [
    "tailorkit.decide.features",
    "tailorkit.decide.exposures",
    "tailorkit.server.routes_features",
    "tailorkit.client.openfeature",
]
CASES = shared_dir() / "conformance" / "growthbook-cases.json"


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0


def test_every_growthbook_suite_payload_is_a_valid_features_yaml(tmp_path: Path) -> None:
    """GrowthBook's format as-is: each feature definition of the cross-SDK suite loads."""
    if not CASES.is_file():
        pytest.skip(f"{CASES} not found")
    cases = json.loads(CASES.read_text())
    root = write_project(tmp_path / "p")
    checked = 0
    for section in ("feature", "contextualBandit", "stickyBucket"):
        for case in cases[section]:
            payload = case[1]
            keys = ("features", "savedGroups", "contextualBandits")
            document = {k: payload[k] for k in keys if k in payload}
            (root / "features.yaml").write_text(yaml.safe_dump(document))
            load_project(root)
            validate_features(document)
            checked += 1
    assert checked > 100


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        ({"features": {"f": {"rule": []}}}, "features.f", "'rule' was unexpected"),
        ({"features": {"f": {"rules": [{"force": 1, "conditon": {}}]}}},
         "features.f.rules.0.conditon", "did you mean 'condition'"),
        ({"features": {"f": {"rules": [{"condition": {"a": {"$gtt": 1}}, "force": 1}]}}},
         "features.f.rules.0.condition.a", "'$gtt' is not one of"),
        ({"features": {"f": {"rules": [{"condition": {"a": {"$in": "x"}}, "force": 1}]}}},
         "features.f.rules.0.condition.a.$in", "is not of type 'array'"),
        ({"features": {"f": {"rules": [{"variations": [1, 2], "weights": [0.5, 1.5]}]}}},
         "features.f.rules.0.weights.1", "greater than the maximum of 1"),
        ({"features": {"f": {"rules": [{"force": 1, "range": [0.5]}]}}},
         "features.f.rules.0.range", "too short"),
        ({"features": {"bad key": {}}}, "features", "does not match"),
        ({"savedGroups": {"g": "u1"}}, "savedGroups.g", "is not of type 'array'"),
        ({"features": {"f": {"rules": [{"condition": {"id": {"$inGroup": "g"}}, "force": 1}]}}},
         "features.f.rules.0.condition.id.$inGroup", "saved group 'g' is not defined"),
    ],
)  # fmt: skip
def test_errors_name_file_key_and_reason(
    tmp_path: Path, document: dict[str, Any], path: str, message: str
) -> None:
    root = write_project(tmp_path / "p")
    (root / "features.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError) as caught:
        FeatureService(root)
    assert (caught.value.file, caught.value.path) == ("features.yaml", path)
    assert message in caught.value.message


def test_yaml_dates_are_served_and_evaluated_as_strings() -> None:
    service = FeatureService(None, {"features": {"launch": {"defaultValue": datetime(2026, 1, 2)}}})
    assert service.evaluate("launch").value == "2026-01-02T00:00:00"
    assert json.loads(service.snapshot.body)["features"]["launch"]["defaultValue"] == (
        "2026-01-02T00:00:00"
    )


def test_unknown_rule_keys_far_from_known_ones_are_ignored_like_the_sdks() -> None:
    doc = {"features": {"f": {"defaultValue": 0, "rules": [{"force": 1, "x-team": "growth"}]}}}
    assert FeatureService(None, doc).evaluate("f").value == 1


def test_swaps_are_atomic_for_readers() -> None:
    """A reader never sees features from two versions in one evaluation."""

    def version(k: int) -> dict[str, Any]:
        return {"features": {f"f{i}": {"defaultValue": k} for i in range(20)}}

    service = FeatureService(None, version(0))
    mixed: list[set[Any]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            values = {r.value for r in service.evaluate_all({"id": "u1"}).values()}
            if len(values) != 1:
                mixed.append(values)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    for k in range(1, 150):
        service.replace(version(k))
    done.set()
    for thread in readers:
        thread.join()
    assert mixed == []
    assert service.evaluate("f0").value == 149


def test_identical_reload_keeps_version_and_date(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    path = root / "features.yaml"
    path.write_text(yaml.safe_dump({"features": {"f": {"defaultValue": 1}}}))
    service = FeatureService(root)
    before = service.snapshot
    path.write_text(yaml.safe_dump({"features": {"f": {"defaultValue": 1, "owner": "ana"}}}))
    assert service.reload() is False
    after = service.snapshot
    assert (after.version, after.date_updated, after.body) == (
        before.version, before.date_updated, before.body,
    )  # fmt: skip
    assert after.document["features"]["f"]["owner"] == "ana"


def test_merge_profile_lets_the_profile_win() -> None:
    merged = merge_profile({"id": "u1", "segments": ["vip"]}, {"segments": [], "score": 0.2})
    assert merged == {"id": "u1", "segments": [], "score": 0.2}
    assert merge_profile(None, None) == {}


def test_failing_profile_lookup_does_not_fail_evaluation(caplog: pytest.LogCaptureFixture) -> None:
    def broken(person: str) -> dict[str, Any]:
        raise RuntimeError("redis down")

    service = FeatureService(None, {"features": {"f": {"defaultValue": 1}}}, profiles=broken)
    with caplog.at_level(logging.ERROR):
        assert service.evaluate("f", {"id": "u1"}).value == 1
    assert "profile lookup failed" in caplog.text


# ------------------------------------------------------------------- exposures

RECORD = ExposureRecord("exp", 1, "b", "email", "ana@example.com", "f", 0.25, 0.5, bucket=0.6)


def test_exposure_events_are_deterministic_per_day_and_hide_personal_hash_values() -> None:
    day = datetime(2026, 3, 1, 10, tzinfo=UTC)
    first = exposure_event_for(
        RECORD, user_id="u1", anonymous_id=None, timestamp=day, hide_hash_values_of=("email",)
    )
    later = exposure_event_for(
        RECORD, user_id="u1", anonymous_id=None, timestamp=day.replace(hour=23)
    )
    assert first["event_id"] == later["event_id"]
    assert "hash_value" not in first["properties"]
    assert later["properties"]["hash_value"] == "ana@example.com"
    assert first["properties"]["propensity"] == 0.25


@pytest.mark.parametrize(
    ("record", "user_id", "anonymous_id"),
    [
        (RECORD, "u1", None),
        (ExposureRecord("exp", 0, "a", "id", 42, None, 1.0, 1.0), None, None),
        (
            ExposureRecord(
                "hero", 2, "c", "id", "a9", "f", 0.2, 1.0,
                sticky_bucket_used=True, leaf_id=3, bandit_version=7,
            ),
            None, "anon-1",
        ),
    ],
)  # fmt: skip
def test_exposure_event_for_builds_what_exposure_event_builds(
    record: ExposureRecord, user_id: str | None, anonymous_id: str | None
) -> None:
    at = datetime(2026, 3, 1, 10, tzinfo=UTC)
    built = exposure_event_for(
        record, user_id=user_id, anonymous_id=anonymous_id, timestamp=at,
        hide_hash_values_of=("email",),
    )  # fmt: skip
    hidden = record.hash_attribute == "email"
    expected = exposure_event(
        kind="experiment" if record.leaf_id is None else "bandit",
        key=record.experiment_key,
        variation=record.variation_id,
        propensity=record.propensity,
        user_id=user_id,
        anonymous_id=anonymous_id or (None if user_id else str(record.hash_value)),
        variation_key=record.variation_key,
        timestamp=at,
        event_id=built["event_id"],
        hash_attribute=record.hash_attribute,
        hash_value=None if hidden else record.hash_value,
        feature=record.feature_key,
        enrollment_probability=record.enrollment_probability,
        bucket=record.bucket,
        sticky_bucket_used=record.sticky_bucket_used or None,
        segment=None if record.leaf_id is None else str(record.leaf_id),
        model_version=None if record.bandit_version is None else str(record.bandit_version),
    )
    assert built == expected
    assert list(built["properties"]) == list(expected["properties"])  # same JSON text
    with pytest.raises(ValueError, match="propensity"):
        exposure_event_for(
            ExposureRecord("exp", 0, "a", "id", "u1", None, 1.5, 1.0),
            user_id="u1", anonymous_id=None, timestamp=at,
        )  # fmt: skip


def test_exposure_log_drops_when_full_and_survives_a_failing_sink(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[list[dict[str, Any]]] = []
    log = ExposureLog(sent.append, batch_size=2, max_pending=3)
    for i in range(5):
        log.record(ExposureRecord("exp", 0, "a", "id", f"u{i}", None, 0.5, 1.0))
    assert log.pending == 3
    assert log.flush() == 3 and [len(batch) for batch in sent] == [2, 1]
    log.record(ExposureRecord("exp", 0, "a", "id", "u0", None, 0.5, 1.0))
    assert log.pending == 0 and log.flush() == 0  # already sent today: not even queued
    log.record(ExposureRecord("exp", 0, "a", "id", "u4", None, 0.5, 1.0))
    assert log.flush() == 1  # dropped when the queue was full, so logged now

    stored: list[dict[str, Any]] = []
    outage = [OSError("disk full")] * 2

    def sometimes(events: list[dict[str, Any]]) -> None:
        if outage:
            raise outage.pop()
        stored.extend(events)

    failing = ExposureLog(sometimes)
    failing.record(RECORD, "u1")
    with caplog.at_level(logging.ERROR):
        assert failing.flush() == 0 and failing.flush() == 0
    assert "exposure sink failed" in caplog.text
    failing.record(RECORD, "u1")  # queued today already: only the refused batch has it
    failing.record(RECORD, "u2")
    assert failing.flush() == 2  # the refused exposure, kept, and the new one
    assert [e["user_id"] for e in stored] == ["u1", "u2"]


def test_exposures_a_store_refuses_in_the_background_are_stored_later() -> None:
    futures: list[Future[Any]] = []
    batches: list[list[str]] = []

    def sink(events: list[dict[str, Any]]) -> Future[Any]:
        batches.append([e["user_id"] for e in events])
        futures.append(Future())
        return futures[-1]

    log = ExposureLog(sink, max_pending=3)
    for user in ("u1", "u2", "u3"):
        log.record(RECORD, user)
    assert log.flush() == 3
    futures[-1].set_exception(OSError("connection reset"))
    log.record(RECORD, "u4")
    assert log.flush() == 4 and batches[-1] == ["u1", "u2", "u3", "u4"]
    futures[-1].set_exception(OSError("connection reset"))  # again: the newest 3 are kept
    assert log.flush() == 3 and batches[-1] == ["u2", "u3", "u4"]
    futures[-1].set_result(None)
    assert log.flush() == 0


def test_exposure_log_flushes_in_the_background() -> None:
    sent: list[dict[str, Any]] = []
    log = ExposureLog(sent.extend, flush_seconds=0.05)
    log.start()
    try:
        log.record(RECORD, "u1")
        deadline = threading.Event()
        for _ in range(100):
            if sent:
                break
            deadline.wait(0.02)
        assert len(sent) == 1
    finally:
        log.stop()
