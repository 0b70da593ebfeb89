"""The Spark store (``pyspark://``) behaves like DuckDB where the batch jobs depend on it.

The write path through the collector (dedup, identity merges, NULLs), tables
that outlive Spark's in-memory catalog, replacing a table from a query that
reads it (the stored bot flags), erasure (``DELETE``), and JSON values
typed exactly as DuckDB types them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ibis
import pytest

from tailorkit.collect.quality import current_flags
from tailorkit.measure.analysis.jsonfields import JsonFields
from tailorkit.project.loader import QualitySettings
from tailorkit.store.warehouse import Warehouse
from tests.helpers import event
from tests.store.test_warehouse import ingest

pytestmark = pytest.mark.spark

BOT = "Mozilla/5.0 (compatible; Googlebot/2.1)"
TABLES = ("events", "identities", "ingest_stats", "flagged_users", "flagged_users_state")


@pytest.fixture
def spark(spark_url: str) -> Iterator[Warehouse]:
    wh = Warehouse(spark_url)
    yield wh
    for table in TABLES:
        wh.con.drop_table(table, force=True)


def test_collector_writes_and_tables_outlive_the_catalog(spark: Warehouse, spark_url: str) -> None:
    items = [
        event(user_id=None, anonymous_id="anon-1"),
        event(type="identify", user_id="alice", anonymous_id="anon-1"),
        event(user_id="bob", context={"user_agent": BOT}),
    ]
    assert ingest(spark, items)["accepted"] == 3
    again = ingest(spark, [items[0], event(user_id="carol")])
    assert again["duplicates"] == 1 and again["accepted"] == 1
    resolved = spark.resolved_events().order_by("user_id").to_pyarrow().to_pylist()
    assert [(r["user_id"], r["person_id"]) for r in resolved] == [
        ("alice", "alice"),
        ("bob", "bob"),
        ("carol", "carol"),
        (None, "alice"),  # stored as NULL, not as the text "NaN"
    ]
    assert all(r["timestamp"].utcoffset() is not None for r in resolved)

    # a new process has an empty catalog: the folders are declared again on connect
    spark.con.raw_sql("DROP TABLE events")  # external: the folder stays
    assert "events" not in spark.con.list_tables()
    assert Warehouse(spark_url).count_events() == 4

    # the stored flags are replaced by a query that reads them (Spark refuses that as such)
    first = current_flags(spark, QualitySettings()).to_pyarrow().to_pylist()
    assert [r["person_id"] for r in first] == ["bob"]
    ingest(spark, [event(user_id="dave", context={"user_agent": BOT})])
    second = current_flags(spark, QualitySettings()).order_by("person_id").to_pyarrow()
    assert second.column("person_id").to_pylist() == ["bob", "dave"]
    assert second.to_pylist()[0]["flagged_at"] == first[0]["flagged_at"]  # kept across refreshes

    # erasure: Parquet tables have no DELETE in Spark, the table is rewritten without the rows
    assert spark.erase_user("alice") == 2
    assert spark.count_events() == 3 and spark.identities.count().execute() == 0


DOCUMENTS = [
    '{"k": "10", "n": 10, "b": true, "o": {"x": "a\\"b"}}',
    '{"k": 10, "n": -2.5, "b": "true", "o": {"x": 1}}',
    '{"k": "caf\\u00e9 \\\\ tab\\t", "n": "1", "b": false, "o": [1, 2]}',
    '{"k": null, "n": null, "b": null, "o": null}',
    '{"other": 1}',
]


def _typed(con: Any, backend: str) -> list[dict[str, Any]]:
    t = ibis.memtable({"i": list(range(len(DOCUMENTS))), "p": DOCUMENTS})
    f = JsonFields(t.p, backend)
    json = t.p.cast("json")
    expr = t.select(
        "i",
        k=f.text("k"),
        n=f.number("n"),
        k_int=f.integer("k"),
        b=f.boolean("b"),
        ox=f.text("o.x"),
        k_json=json["k"].cast("string"),
        o_json=json["o"].cast("string"),
    )
    return con.to_pyarrow(expr.order_by("i")).to_pylist()


def test_json_values_are_typed_as_on_duckdb(spark: Warehouse) -> None:
    duck = ibis.duckdb.connect()
    expected = _typed(duck, "duckdb")
    assert expected[0]["k"] == "10" and expected[1]["k"] is None  # a JSON string, not a number
    assert expected[0]["k_json"] == '"10"' and expected[2]["k"] == "café \\ tab\t"
    assert _typed(spark.con, "pyspark") == expected
    assert _typed(duck, "generic") == expected  # and Ibis' generic path on DuckDB agrees
