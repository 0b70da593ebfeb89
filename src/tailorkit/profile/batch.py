"""Batch executor for profile features: definitions compiled to one Ibis expression.

:func:`profile_table` turns the resolved, cleaned events of a warehouse into
one row per profiled person as of an instant ``at``, with one column per
feature. It follows the same rules as the online executor
(:mod:`tailorkit.profile.online`), written as SQL:

* only events with ``timestamp <= at`` count, and never tailorkit's own
  ``segment_entered``/``segment_exited``;
* a person is profiled when their latest event (ties: any refusal wins) has
  ``personalization`` consent; features count consented events only;
* a window of N minutes holds ``timestamp >= window_start(at, N)``;
* amounts are summed as integer micro-units, distinct counts are capped at
  ``max_distinct``, traits are the latest typed value by (timestamp, event_id);
* ``model_score`` features are the latest row of their score in
  ``profile_scores`` (written by ``tailorkit build``), left-joined: null for a
  person the model did not score. Scores have no history, so they are the
  latest whatever ``at`` is.

>>> import ibis
>>> from tailorkit.profile.definitions import parse_features
>>> from datetime import datetime, UTC
>>> fs = parse_features({"features": {"views": {"count": {"events": ["page_view"]}}}})
>>> events = ibis.table({"person_id": "string", "type": "string", "event_id": "string",
...     "timestamp": "timestamp('UTC')", "properties": "string",
...     "personalization": "boolean"}, name="events")
>>> profile_table(fs, events, datetime(2024, 6, 1, tzinfo=UTC)).columns
('person_id', 'views')
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any

import ibis
import ibis.expr.types as ir

from tailorkit.learn.scores import PROFILE_SCORES
from tailorkit.learn.scores import SCHEMA as SCORES_SCHEMA
from tailorkit.profile.definitions import (
    SYSTEM_EVENT_TYPES,
    Aggregate,
    EventFilter,
    FeatureSet,
    Ratio,
    Recency,
    Rfm,
    Score,
    Trait,
)
from tailorkit.profile.sqlconditions import SqlValue, compile_sql, json_fragment, text_slots
from tailorkit.profile.windows import MINUTE_US, MINUTES_PER_DAY, minute_of, to_us, window_start

UNITS = 1_000_000.0
RFM_SCORES = 5


def _consent(rows: ir.Table) -> dict[str, ir.Value]:
    """Latest consented and latest refused event of a person (compared after aggregation)."""
    yes = rows.personalization
    return {
        "_consent_at": rows.timestamp.max(where=yes),
        "_refusal_at": rows.timestamp.max(where=~yes),
    }


_SLOTS = {"n": "float64", "s": "string", "b": "boolean", "j": "string", "t": "boolean"}


class _Paths:
    """Property paths extracted once into JSON text columns, shared by every feature.

    A path is parsed only for the event types whose features read it, and
    only the slots they need are derived from its text: JSON parsing is most
    of a batch's cost.
    """

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}
        self.types: dict[str, set[str] | None] = {}  # None: every event type
        self.slots: dict[str, set[str]] = {}

    def use(self, path: str, types: tuple[str, ...], slots: str) -> None:
        self.paths.setdefault(path, f"_p{len(self.paths)}")
        known = self.types.get(path, set())
        self.types[path] = None if known is None or not types else known | set(types)
        self.slots.setdefault(path, set()).update(slots)

    def project(self, table: ir.Table, rows: ir.BooleanValue) -> ir.Table:
        """Each path's JSON text, once; the typed slots are derived where they are read.

        Only ``rows`` (and of those only the event types whose features read
        a path) are parsed; the others get nulls. Slots are not projected as
        columns of their own: inside a feature's condition or aggregate the
        engine derives them only for the rows that reach them.
        """
        texts: dict[str, ir.Value] = {}
        fast = _backend_name(table) == "duckdb"
        for path, name in self.paths.items():
            types = self.types[path]
            wanted = rows if types is None else rows & table.type.isin(sorted(types))
            text = _json_text(table.properties, path, fast)
            texts[f"{name}_j"] = ibis.cases((wanted, text), else_=ibis.null("string"))
        return table.mutate(**texts) if texts else table

    def columns(self) -> list[str]:
        """Names of the columns :meth:`project` adds."""
        return [f"{name}_j" for name in self.paths.values()]

    def value(self, table: ir.Table, path: str) -> SqlValue:
        name, slots = self.paths[path], self.slots[path]
        j = table[f"{name}_j"]
        derived = text_slots(j, partial(_reparsed, j))

        def slot(key: str) -> Any:
            return derived[key] if key in slots else None

        is_text = slot("t")
        return SqlValue(
            number=slot("n"),
            text=slot("s"),
            flag=slot("b"),
            json_text=slot("j"),
            is_text=is_text.fill_null(False) if is_text is not None else None,
        )


def _json_text(properties: ir.StringValue, path: str, fast: bool) -> ir.StringValue:
    """The JSON text of the value at dotted ``path`` (NULL when missing).

    On DuckDB one ``json_extract`` of the text column: Ibis' generic access
    first casts the column to JSON, a second parse of every document (a
    quarter of a batch's time at 1M users).
    """
    if fast:
        quoted: ir.StringValue = json_fragment(
            properties, "$" + "".join(f'."{p}"' for p in path.split("."))
        )
        return quoted
    node: Any = properties.cast("json")
    for part in path.split("."):
        node = node[part]
    generic: ir.StringValue = node.cast("string")
    return generic


def _backend_name(expr: ir.Expr) -> str | None:
    """Name of the backend ``expr`` is bound to (``None`` for an unbound expression)."""
    try:
        name: str = ibis.get_backend(expr).name
    except ibis.common.exceptions.IbisError:
        return None
    return name


def _reparsed(text: ir.StringValue) -> ir.StringValue:
    """A JSON string's value from its JSON text (for texts with escapes)."""
    value: ir.StringValue = text.cast("json").str
    return value


def condition_paths(condition: Any) -> list[str]:
    """Attribute paths a condition reads (keys below logical operators).

    >>> condition_paths({"a": 1, "$or": [{"b": {"$gt": 2}}, {"$not": {"c.d": "x"}}]})
    ['a', 'b', 'c.d']
    """
    found: list[str] = []
    if not isinstance(condition, Mapping):
        return found
    for key, value in condition.items():
        if key in ("$or", "$nor", "$and"):
            for part in value if isinstance(value, list) else []:
                found.extend(condition_paths(part))
        elif key == "$not":
            found.extend(condition_paths(value))
        else:
            found.append(str(key))
    return found


def _filters(features: FeatureSet) -> list[EventFilter]:
    found = [f.filter for f in features.features.values() if isinstance(f, Aggregate)]
    return found + ([features.rfm.filter] if features.rfm else [])


def _register_paths(features: FeatureSet) -> _Paths:
    paths = _Paths()
    for event_filter in _filters(features):
        for path in condition_paths(event_filter.where):
            paths.use(path, event_filter.types, "nsbjt")  # conditions may coerce any type
    for feature in features.features.values():
        if isinstance(feature, Aggregate) and feature.prop:
            paths.use(
                feature.prop, feature.filter.types, "ns" if feature.kind == "distinct" else "n"
            )
        if isinstance(feature, Trait):
            paths.use(
                feature.key, ("identify",), {"string": "s", "number": "n"}.get(feature.type, "b")
            )
    if features.rfm:
        paths.use(features.rfm.prop, features.rfm.filter.types, "n")
    return paths


def _matches(table: ir.Table, paths: _Paths, event_filter: EventFilter) -> ir.BooleanValue:
    cond: ir.BooleanValue = ibis.literal(True)
    if event_filter.types:
        cond = table.type.isin(list(event_filter.types))
    if event_filter.where is not None:
        cond = cond & compile_sql(event_filter.where, lambda p: paths.value(table, p))
    return cond


def _units(number: ir.NumericValue) -> ir.IntegerValue:
    """``floor(value * 1e6 + 0.5)`` as an integer, like the online executor."""
    return (number * UNITS + 0.5).floor().cast("int64")


def _aggregate(f: Aggregate, table: ir.Table, paths: _Paths, at: datetime, cap: int) -> ir.Value:
    cond = table.personalization & _matches(table, paths, f.filter)
    if f.window is not None:
        cond = cond & (table.timestamp >= ibis.literal(window_start(at, f.window)))
    if f.kind == "count":
        return table.person_id.count(where=cond)
    if f.kind in ("first_seen", "last_seen"):
        ts = table.timestamp
        return ts.min(where=cond) if f.kind == "first_seen" else ts.max(where=cond)
    assert f.prop is not None
    value = paths.value(table, f.prop)
    if f.kind == "distinct":
        assert value.text is not None and value.number is not None
        total = value.text.nunique(where=cond) + value.number.nunique(where=cond)
        return ibis.least(total, cap)
    assert value.number is not None
    units = _units(value.number)
    if f.kind == "sum":
        return units.sum(where=cond).fill_null(0).cast("float64") / UNITS
    agg = units.min(where=cond) if f.kind == "min" else units.max(where=cond)
    return agg.cast("float64") / UNITS


def _trait(f: Trait, table: ir.Table, paths: _Paths) -> ir.Table:
    value = paths.value(table, f.key)
    slot = {"string": value.text, "number": value.number, "boolean": value.flag}[f.type]
    assert slot is not None
    typed = table.filter(table.type == "identify", slot.notnull()).mutate(_v=slot)
    ranked = typed.mutate(
        _rank=ibis.row_number().over(
            group_by=typed.person_id, order_by=[typed.timestamp.desc(), typed.event_id.desc()]
        )
    )
    return ranked.filter(ranked._rank == 0).select("person_id", **{f.name: ranked._v})


@ibis.udf.scalar.builtin(name="epoch_us")
def _epoch_us(ts: datetime) -> int:  # type: ignore[empty-body]
    """DuckDB: microseconds since 1970 of a timestamp, exact."""


def _recency(ts: ir.TimestampValue, at: datetime) -> ir.FloatingValue:
    """``(minute(at) - minute(ts)) / 1440`` computed from ``ts`` in exact microseconds.

    On DuckDB with ``epoch_us`` (a date difference in microseconds costs it
    ~0.3 s per million rows: a third of a kept-profiles read at 1M persons),
    elsewhere from a microsecond difference to ``at``.
    """
    if _backend_name(ts) == "duckdb":
        us: ir.IntegerValue = _epoch_us(ts)
    else:
        us = ibis.literal(to_us(at)) - ibis.literal(at).delta(ts, unit="microsecond").cast("int64")
    minute = us // MINUTE_US
    return (ibis.literal(minute_of(at)) - minute).cast("float64") / float(MINUTES_PER_DAY)


def _derived(feature: Ratio | Recency | Score, t: ir.Table, at: datetime) -> ir.Value:
    if isinstance(feature, Ratio):
        num, den = t[feature.numerator], t[feature.denominator]
        ok = num.notnull() & den.notnull() & (den != 0)
        return ibis.cases((ok, num.cast("float64") / den.cast("float64")), else_=None)
    if isinstance(feature, Recency):
        return _recency(t[feature.of], at)
    total: ir.FloatingValue | None = None
    for name, weight in feature.weights:
        x = t[name].cast("float64").fill_null(0.0)
        if feature.transform == "log1p":
            x = (ibis.greatest(x, 0.0) + 1.0).ln()
        term = weight * x
        total = term if total is None else total + term
    return total if total is not None else ibis.literal(0.0)


def _rfm_sums(rfm: Rfm, table: ir.Table, paths: _Paths, at: datetime) -> dict[str, ir.Value]:
    """Per-person aggregates the RFM scores rank: latest purchase, frequency, money."""
    cond = table.personalization & _matches(table, paths, rfm.filter)
    if rfm.window is not None:
        cond = cond & (table.timestamp >= ibis.literal(window_start(at, rfm.window)))
    number = paths.value(table, rfm.prop).number
    assert number is not None
    return {
        "_rfm_last": table.timestamp.max(where=cond),
        "_rfm_f": table.person_id.count(where=cond),
        "_rfm_m": _units(number).sum(where=cond).fill_null(0),
    }


def _rfm_scores(sums: ir.Table, at: datetime) -> ir.Table:
    """Quintile scores: ``ceil(5 * share)``, share = fraction of buyers doing no better.

    Buyers are the persons with a counted purchase, whatever their latest
    consent says (the ranking population does not depend on who is profiled).
    """
    buyers = sums.filter(sums._rfm_f > 0)
    buyers = buyers.select(
        "person_id",
        _r=_recency(buyers._rfm_last, at),
        _f=buyers._rfm_f,
        _m=buyers._rfm_m,
        _n=buyers.person_id.count().over(),
    )

    def score(col: ir.Column, better_low: bool) -> ir.IntegerValue:
        # how many buyers are strictly better: ranks, exact integers (no float quantiles)
        ahead = ibis.rank().over(order_by=col.asc() if better_low else col.desc())
        no_better = buyers._n - ahead
        return ((RFM_SCORES * no_better + buyers._n - 1) // buyers._n).cast("int64")

    scored = buyers.select(
        "person_id",
        rfm_r=score(buyers._r, True),
        rfm_f=score(buyers._f, False),
        rfm_m=score(buyers._m, False),
    )
    return scored.mutate(rfm_score=scored.rfm_r + scored.rfm_f + scored.rfm_m)


def scores_beside(events: ir.Table) -> ir.Table:
    """``profile_scores`` of the backend ``events`` come from (empty when it has none).

    >>> events = ibis.table({"person_id": "string"}, name="events")  # unbound: no backend
    >>> scores_beside(events).count().to_pyarrow().as_py()
    0
    """
    try:
        con: Any = ibis.get_backend(events)
    except ibis.common.exceptions.IbisError:  # an unbound expression (docs, schema checks)
        return ibis.memtable(SCORES_SCHEMA.empty_table())
    return scores_in(con)


def scores_in(con: Any) -> ir.Table:
    """``profile_scores`` of an Ibis connection, or an empty table of its schema."""
    if PROFILE_SCORES in con.list_tables():
        scores: ir.Table = con.table(PROFILE_SCORES)
        return scores
    return ibis.memtable(SCORES_SCHEMA.empty_table())


def latest_scores(scores: ir.Table, names: list[str]) -> ir.Table:
    """``person_id`` and one column ``_ms_<name>`` per score: its latest value (by computed_at)."""
    t = scores.filter(scores.name.isin(names))
    columns = {
        f"_ms_{n}": t.value.argmax(t.computed_at, where=t.name == n).cast("float64") for n in names
    }
    return t.group_by("person_id").aggregate(**columns)


def _with_model_scores(features: FeatureSet, table: ir.Table, scores: ir.Table) -> ir.Table:
    wanted = features.model_scores
    if not wanted:
        return table
    names = sorted(set(wanted.values()))
    latest = latest_scores(scores, names)
    table = table.left_join(latest, "person_id").drop("person_id_right")
    columns = {}
    for name, score in wanted.items():
        value = table[f"_ms_{score}"]
        columns[name] = value.cast("int64") if features.value_type(name) == "int" else value
    return table.mutate(**columns).drop(*(f"_ms_{n}" for n in names))


def profile_rows(features: FeatureSet, events: ir.Table, at: datetime | None = None) -> ir.Table:
    """The events profiles read (up to ``at`` if given), with the property paths extracted.

    Which rows are parsed does not depend on ``at``: rows computed once
    without it serve :func:`profile_table` at any instant (its ``rows``).
    """
    base = events.filter(~events.type.isin(sorted(SYSTEM_EVENT_TYPES)))
    if at is not None:
        base = base.filter(base.timestamp <= ibis.literal(at))
    paths = _register_paths(features)
    rows = paths.project(base, base.personalization)
    return rows.select(
        "person_id", "type", "timestamp", "event_id", "personalization", *paths.columns()
    )


def profile_table(
    features: FeatureSet,
    events: ir.Table,
    at: datetime,
    scores: ir.Table | None = None,
    rows: ir.Table | None = None,
) -> ir.Table:
    """One row per profiled person as of ``at``: ``person_id`` and every feature.

    ``events`` are resolved events with ``person_id`` (usually
    :func:`tailorkit.collect.quality.clean_events`); ``scores`` is the
    ``profile_scores`` table for ``model_score`` features (default: the one
    beside ``events``, :func:`scores_beside`). ``rows``: :func:`profile_rows`
    of ``events`` without ``at``, e.g. materialized once for many instants.
    """
    table = person_aggregates(features, events, at, rows)
    return profiles_from(features, table, at, scores_beside(events) if scores is None else scores)


def person_aggregates(
    features: FeatureSet, events: ir.Table, at: datetime, rows: ir.Table | None = None
) -> ir.Table:
    """What each person's own events give as of ``at``, before the population-wide steps.

    One row per person with a profiled event (consented or not): the
    aggregate features, traits, the RFM sums and the latest consent and
    refusal. A person's row depends on their events only, so a store of
    these rows can be brought up to date person by person
    (:mod:`tailorkit.profile.materialized`); :func:`profiles_from` finishes it.
    """
    paths = _register_paths(features)
    if rows is None:
        rows = profile_rows(features, events, at)
    else:
        rows = rows.filter(rows.timestamp <= ibis.literal(at))
    # One pass over the events: consent, features and RFM sums are aggregates of the same
    # group-by (features count consented events only, consent looks at all of them)
    cap = features.settings.max_distinct
    aggregates = {
        name: _aggregate(f, rows, paths, at, cap)
        for name, f in features.features.items()
        if isinstance(f, Aggregate)
    }
    if features.rfm is not None:
        aggregates.update(_rfm_sums(features.rfm, rows, paths, at))
    table = rows.group_by("person_id").aggregate(**aggregates, **_consent(rows))
    consented = rows.filter(rows.personalization)
    for f in features.features.values():
        if isinstance(f, Trait):
            traits = _trait(f, consented, paths)
            table = table.left_join(traits, "person_id").drop("person_id_right")
    return table


def profiles_from(
    features: FeatureSet, aggregates: ir.Table, at: datetime, scores: ir.Table
) -> ir.Table:
    """Profiles as of ``at`` from :func:`person_aggregates` rows of the same instant.

    The steps that look past one person (RFM ranks every buyer, whatever
    their consent) and those that need only ``at`` (recency, derived
    features), then the consent filter and the ``model_score`` features
    from ``scores``.
    """
    table = aggregates
    if features.rfm is not None:
        rfm = _rfm_scores(table, at)
        table = table.left_join(rfm, "person_id").drop("person_id_right")
    # profiled: the latest event has consent (a refusal at the same instant wins)
    table = table.filter(
        table._consent_at.notnull()
        & (table._refusal_at.isnull() | (table._refusal_at < table._consent_at))
    )
    table = _with_model_scores(features, table, scores)
    return _with_derived(features, table, at)


def _inputs(feature: Ratio | Recency | Score) -> set[str]:
    if isinstance(feature, Ratio):
        return {feature.numerator, feature.denominator}
    if isinstance(feature, Recency):
        return {feature.of}
    return {name for name, _ in feature.weights}


def _with_derived(features: FeatureSet, table: ir.Table, at: datetime) -> ir.Table:
    pending = {n: f for n, f in features.features.items() if isinstance(f, Ratio | Recency | Score)}
    # one projection per level of dependency, not per feature: compiling a deep stack of
    # projections costs Ibis more than the query costs the warehouse
    while pending:
        ready = {n: f for n, f in pending.items() if _inputs(f) <= set(table.columns)}
        assert ready, f"derived features without their inputs: {sorted(pending)}"
        table = table.mutate(**{n: _derived(f, table, at) for n, f in ready.items()})
        pending = {n: f for n, f in pending.items() if n not in ready}
    return table.select("person_id", *features.names)
