"""The batch translation of conditions agrees with the reference evaluator.

Random conditions (every translated operator, nested logic, coercions) over
random JSON property documents (numbers, numeric strings, other strings,
booleans, null, missing, nested keys) are evaluated by
``tailorkit.evaluate.conditions`` in Python and by the SQL translation in
DuckDB (and, for a sample, PostgreSQL). Arrays and objects as values are
documented departures and not generated.
"""

from __future__ import annotations

import random
from typing import Any

import ibis
import orjson
import pyarrow as pa
import pytest

from tailorkit.evaluate.conditions import compile_condition
from tailorkit.profile.sqlconditions import UnsupportedCondition, compile_sql, json_value
from tailorkit.store.warehouse import connect_url

SCALARS: list[Any] = [
    None, 0, 1, -3, 2.5, 10, 100, 1e21, "", "a", "abc", "B", "10", "2.5", " 12 ", "1e3",
    ".5", "5.", "-0", "+7", "true", "null", True, False, "a\"b", "back\\slash", "tab\tx", "é",
]  # fmt: skip
PATTERNS = ["^a", "c$", "1", "^[0-9]+$", "b|c"]


def random_value(rng: random.Random) -> Any:
    return rng.choice(SCALARS)


def random_document(rng: random.Random) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key in ("v", "u"):
        roll = rng.random()
        if roll < 0.85:
            doc[key] = random_value(rng)
    if rng.random() < 0.7:
        doc["w"] = {"x": random_value(rng)} if rng.random() < 0.8 else {}
    return doc


def random_operand(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if roll < 0.3:
        return random_value(rng)
    ops: dict[str, Any] = {}
    for _ in range(rng.choice([1, 1, 2])):
        op = rng.choice(
            ["$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$in", "$nin", "$exists", "$type",
             "$not", "$regex", "$regexi", "$ini", "$nini"]
        )  # fmt: skip
        if op in ("$in", "$nin", "$ini", "$nini"):
            ops[op] = [random_value(rng) for _ in range(rng.randint(0, 3))]
        elif op == "$exists":
            ops[op] = rng.choice([True, False, 0, 1])
        elif op == "$type":
            ops[op] = rng.choice(["null", "number", "string", "boolean", "array", "object"])
        elif op == "$not":
            ops[op] = random_operand(rng, depth + 1) if depth < 2 else 5
        elif op in ("$regex", "$regexi"):
            ops[op] = rng.choice(PATTERNS)
        elif op in ("$lt", "$lte", "$gt", "$gte"):
            ops[op] = rng.choice([0, 3, 10, 2.5, -1, "10", "b", "abc", "2.5"])
        else:
            ops[op] = random_value(rng)
    return ops


def random_condition(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    cond: dict[str, Any] = {}
    for _ in range(rng.choice([1, 1, 2])):
        roll = rng.random()
        if depth < 2 and roll < 0.15:
            key = rng.choice(["$or", "$and", "$nor"])
            cond[key] = [random_condition(rng, depth + 1) for _ in range(rng.randint(0, 3))]
        elif depth < 2 and roll < 0.2:
            cond["$not"] = random_condition(rng, depth + 1)
        else:
            cond[rng.choice(["v", "u", "w.x"])] = random_operand(rng, depth)
    return cond


def evaluate_in_sql(
    url: str, docs: list[dict[str, Any]], conditions: list[Any]
) -> list[list[bool]]:
    con = connect_url(url)
    try:
        texts = [orjson.dumps(d).decode() for d in docs]
        table = ibis.memtable(pa.table({"i": list(range(len(docs))), "properties": texts}))
        columns = {
            f"c{n}": compile_sql(c, lambda path: json_value(table.properties, path))
            for n, c in enumerate(conditions)
        }
        rows = con.to_pyarrow(table.select("i", **columns).order_by("i")).to_pylist()
    finally:
        con.disconnect()
    return [[row[f"c{n}"] for n in range(len(conditions))] for row in rows]


def check(url: str, seed: int, n_conditions: int, n_docs: int) -> int:
    rng = random.Random(seed)
    docs = [random_document(rng) for _ in range(n_docs)]
    conditions = [random_condition(rng) for _ in range(n_conditions)]
    got = evaluate_in_sql(url, docs, conditions)
    mismatches = []
    for n, condition in enumerate(conditions):
        predicate = compile_condition(condition)
        for d, doc in enumerate(docs):
            if predicate(doc) != got[d][n]:
                mismatches.append((condition, doc, predicate(doc), got[d][n]))
    assert mismatches == []
    return sum(sum(row) for row in got)


@pytest.mark.parametrize("seed", range(2))
def test_duckdb_translation_matches_the_reference_evaluator(seed: int) -> None:
    matched = check("duckdb://:memory:", seed, n_conditions=150, n_docs=50)
    assert matched > 400  # not vacuous: plenty of true results


@pytest.mark.postgres
def test_postgres_translation_matches_the_reference_evaluator(pg_database: str) -> None:
    check(pg_database, seed=99, n_conditions=120, n_docs=50)


@pytest.mark.parametrize(
    ("condition", "where"),
    [
        ({"v": {"$elemMatch": {"$gt": 1}}}, "v.$elemMatch"),
        ({"v": {"$size": 2}}, "v.$size"),
        ({"v": [1, 2]}, "v"),
        ({"$or": {"v": 1}}, "$or"),
        ({"v": {"$vgt": "1.2.0"}}, "v.$vgt"),
        ({"v": {"$inGroup": "beta"}}, "v.$inGroup"),
    ],
)
def test_untranslatable_parts_are_refused_with_their_path(condition: Any, where: str) -> None:
    table = ibis.table({"properties": "string"}, name="t")
    with pytest.raises(UnsupportedCondition) as info:
        compile_sql(condition, lambda path: json_value(table.properties, path))
    assert info.value.path == where
