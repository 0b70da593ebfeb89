"""The warehouse side of experiment analysis: sufficient statistics from events.

:func:`sufficient_stats` returns, per variation × segment mask × day of
first exposure × ``multi`` (saw several variations) × ``flagged`` (bot or
rate outlier):

* ``n`` users, and per metric ``i`` the sums ``x{i}``, ``xx{i}`` and, for
  ratio metrics (denominator) and CUPED (pre-exposure covariate), ``y{i}``,
  ``yy{i}``, ``xy{i}``;
* ``cap{i}``: the winsorization cap, when the metric has one.

How a user's values are defined:

* the user's **first exposure** to the experiment (``type = "exposure"``,
  ``properties.kind = "experiment"``, ``properties.key`` = the experiment key)
  starts their attribution window; a user who saw several variations is
  flagged ``multi`` (counted, then excluded from the statistics);
* a metric counts the user's events in ``[first exposure, + window_hours)``
  (or until the end of the analysis), never after ``end``;
* the CUPED covariate sums the same (or a configured) event in the
  ``pre_period_days`` before the first exposure;
* segments are those the user belonged to **at the first exposure**, from
  the ``segment_entered``/``segment_exited`` events the segment engine writes
  (the last change at or before the exposure wins; a tie counts as entered);
  bit ``i`` of ``mask`` is ``spec.segments[i]``;
* users flagged as bots or rate outliers
  (:func:`tailorkit.collect.quality.flagged_users`, read from the stored
  ``flagged_users`` table, which :func:`~tailorkit.collect.quality.current_flags`
  recomputes only when events or identities changed) are marked ``flagged``:
  with ``exclude_flagged_users`` (the default) they are left out exactly as
  :func:`~tailorkit.collect.quality.clean_events` leaves them out (every
  statistic is per exposed person), and the report counts them;
* winsorized metrics cap each user's value at a percentile of all included
  users' values (pooled over variations, so the cap does not depend on the
  treatment).

All Ibis: first exposures and flagged persons go to temporary tables (each
is read several times; materializing them keeps the events table from being
materialized whole as a shared CTE), then one query joins the metric events
and, separately, the segment events to the exposed persons, aggregates each
per person and then per group. With winsorization the per-person table is kept too, since the caps
need all users' values before the sums. Everything is additive, so the
Python side pools the rows into overall, per-segment and cumulative-by-day
statistics without another query.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from tailorkit.collect.quality import current_flags
from tailorkit.measure.analysis.jsonfields import JsonFields
from tailorkit.measure.analysis.spec import COVARIATES, EventAggregate, ExperimentSpec, MetricSpec
from tailorkit.project.loader import QualitySettings
from tailorkit.segment.definitions import ENTERED, EXITED
from tailorkit.store.warehouse import Warehouse

EXPOSURE = "exposure"
SEGMENT_TYPES = (ENTERED, EXITED)
GROUP_KEYS = ("variation", "multi", "flagged", "mask", "day")
#: level of a covariate whose context field is missing (or not a string)
MISSING_LEVEL = "(none)"


def covariate_columns(spec: ExperimentSpec) -> dict[str, str]:
    """Query column → context path of the covariates read from the exposure's ``context``.

    ``weekday`` needs no column: it follows from the exposure ``day``.

    >>> from dataclasses import replace
    >>> from tailorkit.measure.analysis.examples import example_spec
    >>> covariate_columns(replace(example_spec(), adjust_for=("device", "weekday")))
    {'cov_device': 'device.type'}
    """
    return {f"cov_{c}": path for c in spec.adjust_for if (path := COVARIATES[c]) is not None}


def where_clause(fields: JsonFields, where: Sequence[tuple[str, Any]]) -> ir.BooleanValue:
    """Equality filters on properties, typed by the configured value.

    >>> t = ibis.table({"properties": "string"}, name="events")
    >>> expr = where_clause(JsonFields(t.properties, "duckdb"), [("plan", "pro"), ("items", 2)])
    >>> expr.type().is_boolean()
    True
    """
    cond: ir.BooleanValue = ibis.literal(True)
    for path, value in where:
        # bool before int: True is an int in Python
        if isinstance(value, bool):
            cond = cond & (fields.boolean(path) == value)
        elif isinstance(value, int | float):
            cond = cond & (fields.number(path) == float(value))
        else:
            cond = cond & (fields.text(path) == str(value))
    return cond


def _hours(hours: float) -> ir.IntervalScalar:
    # whole seconds: both backends accept integer interval literals
    return ibis.interval(seconds=round(hours * 3600))


def exposures(events: ir.Table, spec: ExperimentSpec, end: datetime, backend: str) -> ir.Table:
    """One row per exposed person: first exposure, variation, ``multi`` flag and day.

    >>> from tailorkit.measure.analysis.examples import AS_OF, example_spec
    >>> events = Warehouse("duckdb://:memory:").resolved_events()
    >>> exposures(events, example_spec(), AS_OF, "duckdb").columns
    ('person_id', 'first_ts', 'variation', 'vkey', 'multi', 'day')
    """
    e = events.filter(events.type == EXPOSURE, events.timestamp <= end)
    if spec.start is not None:
        e = e.filter(e.timestamp >= spec.start)
    props = JsonFields(e.properties, backend)
    key, (key_value,) = props.comparable("key", [spec.key])
    kind, (kind_value,) = props.comparable("kind", ["experiment"])
    e = e.filter(key == key_value, kind == kind_value)
    # the logged variation keys name the variations only when the definition does not
    vkey = props.text("variation_key") if spec.variations is None else ibis.null("string")
    context = JsonFields(e.context, backend)
    covariates = covariate_columns(spec)
    levels = {
        f"_{c}": context.text(path).fill_null(MISSING_LEVEL) for c, path in covariates.items()
    }
    e = e.mutate(_v=props.integer("variation"), _vk=vkey, **levels)
    # exposures without a valid variation are ignored inside the aggregates (a row
    # filter would make the engine extract the variation twice)
    valid = e._v.notnull()
    first = e.group_by("person_id").aggregate(
        first_ts=e.timestamp.min(where=valid),
        variation=e._v.min(),
        _vmax=e._v.max(),
        vkey=e._vk.min(where=valid),
        # covariates as of the first exposure
        **{c: e[f"_{c}"].argmin(e.timestamp, where=valid) for c in covariates},
    )
    first = first.filter(first.variation.notnull())
    return first.select(
        "person_id",
        "first_ts",
        "variation",
        "vkey",
        multi=first.variation != first._vmax,
        # days since 1970-01-01 (UTC): cheaper than a time-zone-aware cast to DATE
        day=(first.first_ts.epoch_seconds() // 86400).cast("int64"),
        **{c: first[c] for c in covariates},
    )


class _EventColumns:
    """What each event row feeds: its value (``_val{j}``) and ``where`` filter (``_w{j}``).

    Event-type tests stay in the aggregates: projecting one boolean per
    aggregate before the join would carry them through it for every row.
    """

    def __init__(self, metrics: Sequence[MetricSpec]) -> None:
        self.aggregates: list[EventAggregate] = []
        for m in metrics:
            for agg in (m.numerator, m.denominator, m.cuped.covariate if m.cuped else None):
                if agg is not None and agg not in self.aggregates:
                    self.aggregates.append(agg)

    def index(self, agg: EventAggregate) -> int:
        return self.aggregates.index(agg)

    @property
    def event_types(self) -> list[str]:
        return sorted({a.event for a in self.aggregates})

    def project(self, m: ir.Table, backend: str) -> ir.Table:
        props = JsonFields(m.properties, backend)
        columns: dict[str, ir.Value] = {}
        for j, agg in enumerate(self.aggregates):
            hit = m.type == agg.event
            # CASE: properties are parsed only for rows of the aggregate's event type
            if agg.where:
                columns[f"_w{j}"] = ibis.ifelse(hit, where_clause(props, agg.where), False)
            if agg.value:
                value = props.number(agg.value).cast("float64")
                columns[f"_val{j}"] = ibis.ifelse(hit, value, ibis.null("float64"))
        return m.select("person_id", "timestamp", "type", **columns)

    def hit(self, j: ir.Table, agg: EventAggregate) -> ir.BooleanValue:
        """Whether a joined row is an event of ``agg``."""
        k = self.index(agg)
        return j[f"_w{k}"] if agg.where else j.type == agg.event


def _user_value(
    j: ir.Table, cols: _EventColumns, agg: EventAggregate, when: ir.BooleanValue, indicator: bool
) -> ir.Value:
    """Per user: did ``agg`` happen (indicator), its count or its value's sum, within ``when``."""
    hit = cols.hit(j, agg) & when
    # an integer cast to double: PostgreSQL reads the literal 1.0 as numeric (Decimal sums)
    one = ibis.ifelse(hit, 1, 0).cast("float64")
    if indicator:
        return one.max()
    if agg.value is None:
        return one.sum()
    return j[f"_val{cols.index(agg)}"].sum(where=hit)


def _metric_aggs(
    j: ir.Table, cols: _EventColumns, metrics: Sequence[MetricSpec]
) -> dict[str, ir.Value]:
    aggs: dict[str, ir.Value] = {}
    for i, mt in enumerate(metrics):
        post = j.timestamp >= j._at
        if mt.window_hours is not None:
            post = post & (j.timestamp < j._at + _hours(mt.window_hours))
        binary = mt.type == "binomial"
        aggs[f"_x{i}"] = _user_value(j, cols, mt.numerator, post, binary)
        if mt.denominator is not None:
            aggs[f"_y{i}"] = _user_value(j, cols, mt.denominator, post, False)
        elif mt.cuped is not None:
            start = j._at - _hours(mt.cuped.pre_period_days * 24)
            before = (j.timestamp < j._at) & (j.timestamp >= start)
            aggs[f"_y{i}"] = _user_value(j, cols, mt.cuped.covariate, before, binary)
    return aggs


def metric_values(
    events: ir.Table, first: ir.Table, spec: ExperimentSpec, end: datetime, backend: str
) -> ir.Table:
    """``person_id`` and per metric ``_x{i}`` (and ``_y{i}``) from the events in the windows.

    >>> from tailorkit.measure.analysis.examples import AS_OF, example_spec
    >>> events = Warehouse("duckdb://:memory:").resolved_events()
    >>> first = exposures(events, example_spec(), AS_OF, "duckdb")
    >>> metric_values(events, first, example_spec(), AS_OF, "duckdb").columns
    ('person_id', '_x0', '_x1', '_y1')
    """
    cols = _EventColumns(spec.metrics)
    m = events.filter(events.type.isin(cols.event_types), events.timestamp <= end)
    m = cols.project(m, backend)
    f = first.select(_pid=first.person_id, _at=first.first_ts)
    pre = max((mt.cuped.pre_period_days for mt in spec.metrics if mt.cuped), default=0.0)
    preds = [m.person_id == f._pid, m.timestamp >= f._at - _hours(pre * 24)]
    windows = [mt.window_hours for mt in spec.metrics]
    if all(w is not None for w in windows):
        preds.append(m.timestamp < f._at + _hours(max(w or 0.0 for w in windows)))
    j = m.join(f, preds)
    return j.group_by("person_id").aggregate(**_metric_aggs(j, cols, spec.metrics))


def segment_masks(
    events: ir.Table, first: ir.Table, segments: Sequence[str], backend: str
) -> ir.Table:
    """``person_id`` and the bit mask of the ``segments`` held at the first exposure.

    Per segment: the last change at or before the exposure, and the last
    entry; the person is in the segment when the entry is that last change
    (a tie counts as entered).

    >>> from tailorkit.measure.analysis.examples import AS_OF, example_spec
    >>> events = Warehouse("duckdb://:memory:").resolved_events()
    >>> first = exposures(events, example_spec(), AS_OF, "duckdb")
    >>> segment_masks(events, first, ["mobile"], "duckdb").columns
    ('person_id', '_mask')
    """
    s = events.filter(events.type.isin(list(SEGMENT_TYPES)))
    seg, values = JsonFields(s.properties, backend).comparable("segment", segments)
    s = s.select("person_id", "timestamp", "type", _seg=seg)
    f = first.select(_pid=first.person_id, _at=first.first_ts)
    bit = ibis.cases(*((s._seg == v, ibis.literal(1 << i, "int64")) for i, v in enumerate(values)))
    s = s.filter(s._seg.isin(values)).mutate(_bit=bit)
    j = s.join(f, [s.person_id == f._pid, s.timestamp <= f._at])
    # per person and segment (narrow groups), then one bit per segment held
    last = j.group_by(["person_id", "_bit"]).aggregate(
        _last=j.timestamp.max(), _in=j.timestamp.max(where=j.type == ENTERED)
    )
    held = last._in.notnull() & (last._in >= last._last)
    return last.group_by("person_id").aggregate(_mask=last._bit.sum(where=held).fill_null(0))


def user_table(
    resolve: Callable[[Sequence[str]], ir.Table],
    first: ir.Table,
    flagged: ir.Table | None,
    spec: ExperimentSpec,
    end: datetime,
    backend: str,
) -> ir.Table:
    """One row per exposed person with the group keys and metric values ``x{i}``/``y{i}``.

    >>> from tailorkit.measure.analysis.examples import AS_OF, example_spec
    >>> wh = Warehouse("duckdb://:memory:")
    >>> first = exposures(wh.resolved_events(), example_spec(), AS_OF, "duckdb")
    >>> user_table(wh.resolved_events, first, None, example_spec(), AS_OF, "duckdb").columns
    ('variation', 'multi', 'day', 'vkey', 'flagged', 'mask', 'x0', 'x1', 'y1')
    """
    metric_events = resolve(_EventColumns(spec.metrics).event_types)
    users = first.left_join(metric_values(metric_events, first, spec, end, backend), "person_id")
    if spec.segments:
        masks = segment_masks(resolve(SEGMENT_TYPES), first, spec.segments, backend)
        users = users.left_join(masks, "person_id")
    if flagged is not None:
        users = users.left_join(flagged.mutate(_flag=ibis.literal(True)), "person_id")
    columns: dict[str, ir.Value] = {
        "flagged": users._flag.fill_null(False) if flagged is not None else ibis.literal(False),
        "mask": users._mask.fill_null(0) if spec.segments else ibis.literal(0, "int64"),
    }
    for i, mt in enumerate(spec.metrics):
        columns[f"x{i}"] = users[f"_x{i}"].fill_null(0.0).cast("float64")
        if mt.paired:
            columns[f"y{i}"] = users[f"_y{i}"].fill_null(0.0).cast("float64")
    return users.select("variation", "multi", "day", "vkey", *covariate_columns(spec), **columns)


def cap_expr(users: ir.Table, spec: ExperimentSpec) -> dict[str, ir.Value]:
    """Winsorization caps: pooled percentiles over the included users, by metric.

    >>> from dataclasses import replace
    >>> from tailorkit.measure.analysis.examples import example_spec
    >>> spec = example_spec()
    >>> capped = replace(spec.metrics[1], winsorize_percentile=99.0)
    >>> users = ibis.table({"multi": "boolean", "flagged": "boolean", "x1": "float64"}, name="u")
    >>> list(cap_expr(users, replace(spec, metrics=(spec.metrics[0], capped))))
    ['cap1']
    """
    included = ~users.multi & ~users.flagged
    caps: dict[str, ir.Value] = {}
    for i, mt in enumerate(spec.metrics):
        if mt.winsorize_percentile is not None:
            x = users[f"x{i}"]
            keep = included & (x != 0) if mt.winsorize_ignore_zeros else included
            caps[f"cap{i}"] = x.quantile(mt.winsorize_percentile / 100.0, where=keep)
    return caps


def stats_expr(users: ir.Table, spec: ExperimentSpec, caps: dict[str, float | None]) -> ir.Table:
    """Sufficient statistics per group (see the module doc), values capped at ``caps``.

    >>> from tailorkit.measure.analysis.examples import example_spec
    >>> users = ibis.table({"variation": "int64", "multi": "boolean", "flagged": "boolean",
    ...     "mask": "int64", "day": "int64", "vkey": "string", "x0": "float64", "x1": "float64",
    ...     "y1": "float64"}, name="users")
    >>> stats_expr(users, example_spec(), {}).columns[5:]
    ('n', 'vkey', 'x0', 'xx0', 'x1', 'xx1', 'y1', 'yy1', 'xy1')
    """
    sums: dict[str, ir.Value] = {"n": users.count(), "vkey": users.vkey.max()}
    for i, mt in enumerate(spec.metrics):
        x = users[f"x{i}"]
        cap = caps.get(f"cap{i}")
        if cap is not None:
            x = ibis.least(x, ibis.literal(cap, "float64"))
        sums[f"x{i}"], sums[f"xx{i}"] = x.sum(), (x * x).sum()
        if mt.paired:
            y = users[f"y{i}"]
            sums[f"y{i}"], sums[f"yy{i}"], sums[f"xy{i}"] = y.sum(), (y * y).sum(), (x * y).sum()
    keys = [*GROUP_KEYS, *covariate_columns(spec)]
    return users.group_by(keys).aggregate(**sums).order_by(keys)


@contextmanager
def temporary(wh: Warehouse, expr: ir.Table, stem: str) -> Iterator[ir.Table]:
    """``expr`` materialized as a temporary table, dropped afterwards.

    >>> wh = Warehouse("duckdb://:memory:")
    >>> with temporary(wh, ibis.memtable({"a": [1, 2]}), "demo") as t:
    ...     int(t.a.sum().execute())
    3
    """
    name = f"_tk_{stem}_{uuid.uuid4().hex[:12]}"
    table = wh.con.create_table(name, expr, temp=True)
    try:
        yield table
    finally:
        wh.con.drop_table(name, force=True)


FlagSource = Callable[[Warehouse, QualitySettings], ir.Table]


def sufficient_stats(
    wh: Warehouse,
    spec: ExperimentSpec,
    quality: QualitySettings,
    end: datetime,
    flags: FlagSource = current_flags,
) -> pa.Table:
    """Run the analysis statements on the warehouse (identity-resolved events).

    ``flags`` gives the flagged persons: the stored table by default,
    :func:`tailorkit.collect.quality.flagged_users` for a fresh scan.

    >>> from tailorkit.measure.analysis.examples import AS_OF, example_spec
    >>> wh = Warehouse("duckdb://:memory:")
    >>> table = sufficient_stats(wh, example_spec(), QualitySettings(), AS_OF)
    >>> table.num_rows, table.column_names[:6]
    (0, ['variation', 'multi', 'flagged', 'mask', 'day', 'n'])
    """
    with wh.lock, ExitStack() as stack:
        events = wh.resolved_events([EXPOSURE])
        first = stack.enter_context(
            temporary(wh, exposures(events, spec, end, wh.backend), "exposed")
        )
        flagged = None
        if quality.exclude_flagged_users:
            # the stored table (no scan of every event unless the store changed)
            persons = flags(wh, quality).select("person_id").distinct()
            flagged = stack.enter_context(temporary(wh, persons, "flagged"))
        # each part reads only its event types, resolved separately: no shared scan of all events
        users = user_table(wh.resolved_events, first, flagged, spec, end, wh.backend)
        caps: dict[str, float | None] = {}
        if any(m.winsorize_percentile is not None for m in spec.metrics):
            # the caps need every user's value first: keep the user table for both steps
            users = stack.enter_context(temporary(wh, users, "users"))
            caps = wh.con.to_pyarrow(users.aggregate(**cap_expr(users, spec))).to_pylist()[0]
        table = wh.con.to_pyarrow(stats_expr(users, spec, caps))
    for name, cap in caps.items():
        table = table.append_column(name, pa.array([cap] * table.num_rows, pa.float64()))
    return table
