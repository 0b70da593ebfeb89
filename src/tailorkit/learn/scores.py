"""Model outputs per person, kept in the warehouse for profiles and targeting.

``profile_scores`` has one row per (person, score name)::

    person_id      string     the resolved person (as in profiles)
    name           string     propensity_to_buy, churn_risk, cluster, ...
    value          float64    probability, or the cluster id
    model_version  string     e.g. propensity@20261123T120000Z
    computed_at    timestamp  when the batch ran

Each training run replaces all rows of the names it writes, so a person who
is no longer scored (inactive, erased, consent withdrawn) loses the score.

How profiles pick them up: :func:`score_rows` gives ``{person: {name:
value}}`` — the shape of
:meth:`tailorkit.segment.online.SegmentEngine.set_batch_features` — and
:func:`wide_scores` an Ibis table (``person_id`` + one column per name) to
left-join onto :func:`tailorkit.profile.batch.profile_table` in batch; see
``docs/learn.md``.

>>> from tailorkit.store.warehouse import Warehouse
>>> import pandas as pd
>>> wh = Warehouse("duckdb://:memory:")
>>> write_scores(wh, "churn_risk", pd.Series({"u1": 0.25, "u2": 0.5}), "churn@v1")
2
>>> score_rows(wh)["u2"]
{'churn_risk': 0.5}
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tailorkit.store.warehouse import PROFILE_SCORES, Warehouse

#: The ``tailorkit build`` step that writes each score (a new version = new scores).
SCORE_STEPS = {"cluster": "clusters", "propensity_to_buy": "propensity", "churn_risk": "churn"}
SCHEMA = pa.schema(
    [
        ("person_id", pa.string()),
        ("name", pa.string()),
        ("value", pa.float64()),
        ("model_version", pa.string()),
        ("computed_at", pa.timestamp("us", tz="UTC")),
    ]
)


def _existing(wh: Warehouse) -> pa.Table:
    if PROFILE_SCORES not in wh.con.list_tables():
        return SCHEMA.empty_table()
    return wh.con.to_pyarrow(wh.con.table(PROFILE_SCORES)).cast(SCHEMA)


def write_scores(
    wh: Warehouse,
    name: str,
    values: pd.Series,
    model_version: str,
    computed_at: datetime | None = None,
) -> int:
    """Replace every row of score ``name`` with ``values`` (index: person_id)."""
    return write_many(wh, {name: values}, model_version, computed_at)


def write_many(
    wh: Warehouse,
    scores: dict[str, pd.Series],
    model_version: str,
    computed_at: datetime | None = None,
) -> int:
    """Replace several scores at once (one table rewrite); returns rows written."""
    at = computed_at or datetime.now(UTC)
    parts = []
    for name, values in scores.items():
        clean = values.dropna()
        parts.append(
            pa.table(
                {
                    "person_id": pa.array(clean.index.astype(str), pa.string()),
                    "name": pa.array([name] * len(clean), pa.string()),
                    "value": pa.array(clean.to_numpy(dtype=float), pa.float64()),
                    "model_version": pa.array([model_version] * len(clean), pa.string()),
                    "computed_at": pa.array([at] * len(clean), SCHEMA.field("computed_at").type),
                }
            )
        )
    with wh.lock:
        old = _existing(wh)
        keep = old.filter(pc.invert(pc.is_in(old["name"], pa.array(list(scores)))))
        table = pa.concat_tables([keep, *parts]).cast(SCHEMA)
        # a whole-table replace is atomic on DuckDB and PostgreSQL (create then rename)
        wh.con.create_table(PROFILE_SCORES, table, overwrite=True)
    return sum(p.num_rows for p in parts)


def scores_table(wh: Warehouse) -> ir.Table:
    """The long ``profile_scores`` table (created empty when missing)."""
    with wh.lock:
        if PROFILE_SCORES not in wh.con.list_tables():
            wh.con.create_table(PROFILE_SCORES, schema=ibis.schema(SCHEMA))
        return wh.con.table(PROFILE_SCORES)


def wide_scores(wh: Warehouse, names: Sequence[str]) -> ir.Table:
    """``person_id`` plus one float column per score name (null when not scored)."""
    t = scores_table(wh)
    t = t.filter(t.name.isin(list(names)))
    columns = {n: t.value.max(where=t.name == n) for n in names}
    return t.group_by("person_id").aggregate(**columns)


def score_rows(wh: Warehouse, names: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """``{person_id: {name: value}}`` for the online profiles."""
    t = scores_table(wh)
    if names is not None:
        t = t.filter(t.name.isin(list(names)))
    with wh.lock:
        rows = wh.con.to_pyarrow(t.select("person_id", "name", "value")).to_pylist()
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        out.setdefault(row["person_id"], {})[row["name"]] = row["value"]
    return out
