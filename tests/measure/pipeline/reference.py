"""An independent, row-by-row Python reference of the analysis query's definitions.

Used to check the Ibis statements on every backend: same events in, the same
per-variation (× segment) sums out. Deliberately naive.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from tailorkit.measure.analysis.spec import EventAggregate, ExperimentSpec, MetricSpec


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Person:
    """One exposed person: first exposure, variations seen, segments then, values."""

    first: datetime
    variations: set[int]
    segments: set[str]
    values: dict[str, float]


def _resolve(events: list[dict[str, Any]]) -> dict[str, str]:
    merges = {}
    for e in events:
        if e["type"] == "identify" and e.get("user_id") and e.get("anonymous_id"):
            merges[e["anonymous_id"]] = e["user_id"]
    return merges


def _person(e: dict[str, Any], merges: dict[str, str]) -> str:
    return str(e.get("user_id") or merges.get(e.get("anonymous_id", ""), e.get("anonymous_id")))


def _matches(e: dict[str, Any], agg: EventAggregate) -> bool:
    return e["type"] == agg.event and all(e["properties"].get(k) == v for k, v in agg.where)


def _value(e: dict[str, Any], agg: EventAggregate) -> float:
    return 1.0 if agg.value is None else float(e["properties"].get(agg.value) or 0.0)


def _metric(m: MetricSpec, evs: list[dict[str, Any]], first: datetime) -> dict[str, float]:
    end = first + timedelta(hours=m.window_hours) if m.window_hours else None
    post = [e for e in evs if e["_t"] >= first and (end is None or e["_t"] < end)]
    x = [_value(e, m.numerator) for e in post if _matches(e, m.numerator)]
    out = {"x": (1.0 if x else 0.0) if m.type == "binomial" else float(sum(x))}
    if m.denominator is not None:
        out["y"] = float(sum(_value(e, m.denominator) for e in post if _matches(e, m.denominator)))
    elif m.cuped is not None:
        start = first - timedelta(days=m.cuped.pre_period_days)
        pre = [e for e in evs if start <= e["_t"] < first and _matches(e, m.cuped.covariate)]
        ys = [_value(e, m.cuped.covariate) for e in pre]
        out["y"] = (1.0 if ys else 0.0) if m.type == "binomial" else float(sum(ys))
    return out


def people(
    events: list[dict[str, Any]], spec: ExperimentSpec, at: datetime, flagged: set[str]
) -> list[tuple[int, str, frozenset[str], dict[str, float]]]:
    """Included persons: (variation, person, segments at exposure, metric values)."""
    merges = _resolve(events)
    by_person: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if _ts(e["timestamp"]) <= at:
            by_person[_person(e, merges)].append({**e, "_t": _ts(e["timestamp"])})
    out = []
    for pid, evs in by_person.items():
        exp = [e for e in evs if e["type"] == "exposure" and e["properties"]["key"] == spec.key]
        if not exp or pid in flagged or len({e["properties"]["variation"] for e in exp}) > 1:
            continue
        first = min(e["_t"] for e in exp)
        seg_events = sorted(
            (
                e
                for e in evs
                if e["type"] in ("segment_entered", "segment_exited") and e["_t"] <= first
            ),
            key=lambda e: (e["_t"], e["type"] == "segment_entered"),
        )
        state: dict[str, bool] = {}
        for e in seg_events:
            state[e["properties"]["segment"]] = e["type"] == "segment_entered"
        segments = frozenset(s for s, held in state.items() if held)
        values: dict[str, float] = {}
        for i, m in enumerate(spec.metrics):
            for k, val in _metric(m, evs, first).items():
                values[f"{k}{i}"] = val
        out.append((exp[0]["properties"]["variation"], pid, segments, values))
    return out


def sums(
    rows: list[tuple[int, str, frozenset[str], dict[str, float]]],
    spec: ExperimentSpec,
    k: int,
    segment: str | None = None,
    caps: dict[int, float] | None = None,
) -> dict[str, np.ndarray]:
    """n, Σx, Σx², Σy, Σy², Σxy per variation, like ``Groups.pooled``."""
    out: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(k))
    for v, _, segments, values in rows:
        if segment is not None and segment not in segments:
            continue
        out["n"][v] += 1
        for i, m in enumerate(spec.metrics):
            x = min(values[f"x{i}"], (caps or {}).get(i, np.inf))
            out[f"x{i}"][v] += x
            out[f"xx{i}"][v] += x * x
            if m.paired:
                y = values[f"y{i}"]
                out[f"y{i}"][v] += y
                out[f"yy{i}"][v] += y * y
                out[f"xy{i}"][v] += x * y
    return dict(out)


def caps(
    rows: list[tuple[int, str, frozenset[str], dict[str, float]]], spec: ExperimentSpec
) -> dict[int, float]:
    """Winsorization caps: percentile (linear interpolation) over all included users."""
    out = {}
    for i, m in enumerate(spec.metrics):
        if m.winsorize_percentile is not None:
            xs = [values[f"x{i}"] for *_, values in rows]
            if m.winsorize_ignore_zeros:
                xs = [x for x in xs if x != 0]
            out[i] = float(np.percentile(xs, m.winsorize_percentile))
    return out


def assert_close(a: Any, b: Any, path: str = "") -> None:
    """Equal structure; floats equal to 1e-9 relative (sums run in another order)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
