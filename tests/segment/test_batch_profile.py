"""``GET /v1/admin/profiles/{id}`` for a person the online store does not hold.

The answer comes from the warehouse: the kept profiles brought forward to
now (:func:`tailorkit.profile.materialized.profiles_now`), so it must equal
a from-scratch batch profile of the same instant, and follow new events.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tailorkit.collect.pipeline import Collector
from tailorkit.collect.quality import clean_events
from tailorkit.collect.raw import raw_from_arrow
from tailorkit.demo import generate_shop
from tailorkit.profile.windows import iso, to_us
from tailorkit.project import Project, load_project
from tailorkit.server.routes_profiles import _batch_profile
from tailorkit.store.warehouse import Warehouse
from tests.segment.common import batch_rows, same_value, shop_definitions, shop_document


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Project, Warehouse]]:
    """A project whose store holds a small demo shop ending an hour ago (windows see it)."""
    from tailorkit.project.init import write_project

    root = write_project(tmp_path / "shop")
    (root / "segments.yaml").write_text(yaml.safe_dump(shop_document()))
    project = load_project(root)
    warehouse = Warehouse(project.settings.store_url)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    events = generate_shop(300, 7, 11, end=end).events
    Collector(warehouse, project.settings).ingest(raw_from_arrow(events), "demo")
    yield project, warehouse
    warehouse.close()


def _lookup(project: Project, warehouse: Warehouse, person: str) -> dict[str, Any] | None:
    # the two arguments _batch_profile reads: the live definitions and the app state
    service: Any = SimpleNamespace(definitions=shop_definitions())
    state: Any = SimpleNamespace(warehouse=warehouse, project=project)
    return _batch_profile(service, state, person)


def _expected(project: Project, warehouse: Warehouse, at: datetime) -> dict[str, Any]:
    events = clean_events(warehouse, project.settings.quality)
    return batch_rows(shop_definitions(), events, at)


def _check(got: dict[str, Any], expected: dict[str, Any]) -> None:
    definitions = shop_definitions()
    assert got["source"] == "batch"
    for name in definitions.features.names:
        want = expected[name]
        if isinstance(want, datetime):
            want = iso(to_us(want))
        assert same_value(got["features"][name], want), name
    assert got["segments"] == [s.key for s in definitions.segments if expected[s.key] is True]


def test_a_warehouse_profile_equals_the_from_scratch_batch_profile(
    shop: tuple[Project, Warehouse],
) -> None:
    project, warehouse = shop
    first = _lookup(project, warehouse, "nobody-at-all")
    assert first is None
    at = datetime.now(UTC)
    now = _expected(project, warehouse, at)
    keys = [s.key for s in shop_definitions().segments]
    persons = sorted(now)
    # Every sixth person, and some in a segment: which persons hold one depends on the
    # hour the shop ends, and the comparison must cover memberships, not only empty lists.
    members = [p for p in persons if any(now[p][key] is True for key in keys)]
    assert members, "the demo shop put nobody in a segment"
    sample = sorted({*persons[:: len(persons) // 6], *members[:: max(1, len(members) // 3)]})
    in_segments = 0
    for person in sample:
        got = _lookup(project, warehouse, person)
        assert got is not None and got["person_id"] == person
        expected = _expected(project, warehouse, datetime.fromisoformat(got["as_of"]))[person]
        _check(got, expected)
        in_segments += bool(got["segments"])
    assert in_segments  # the comparison covered memberships, not only empty lists


def test_a_warehouse_profile_follows_new_events(shop: tuple[Project, Warehouse]) -> None:
    project, warehouse = shop
    person = sorted(_expected(project, warehouse, datetime.now(UTC)))[3]
    before = _lookup(project, warehouse, person)
    assert before is not None
    now = datetime.now(UTC)
    purchases = [
        {"event_id": f"late-buy-{i}", "type": "purchase", "user_id": person,
         "timestamp": (now - timedelta(minutes=5 - i)).isoformat(),
         "properties": {"order_id": f"o{i}", "revenue": 40.0 + i}}
        for i in range(3)
    ]  # fmt: skip
    stored = Collector(warehouse, project.settings).ingest_items(purchases, "api")
    assert stored.count("accepted") == 3
    after = _lookup(project, warehouse, person)
    assert after is not None
    expected = _expected(project, warehouse, datetime.fromisoformat(after["as_of"]))[person]
    _check(after, expected)
    assert after["features"]["purchases_24h"] == before["features"]["purchases_24h"] + 3
