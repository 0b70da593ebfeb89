"""Off-policy evaluation on real logs: tailorkit's own decision log or a file.

Two sources give the same :class:`BanditLog` (one row per logged decision):

- :func:`read_decision_log` — the project's decisions of one bandit (exposure
  events with arm, segment, features and propensity) joined with the bandit's
  reward events inside its attribution window, the way the live runtime
  attributes them (first reward event of the same person, same placement by
  default, until the window ends or a newer decision of that bandit replaces
  it). Decisions whose window is still open are left out: their reward is not
  known yet, and counting only the early clickers would bias every estimate.
- :func:`read_log_file` — a CSV, Parquet or NDJSON file with columns
  ``action``, ``reward``, ``propensity`` and context features (numbers, or
  strings that are one-hot encoded), plus an optional ``segment``.

:func:`evaluation_policy` turns a policy description into the ``(n, K)``
matrix of the evaluation policy's action probabilities per logged row:

- ``uniform`` — every arm with probability ``1/K``;
- ``arm:NAME`` — always that arm;
- ``file:PATH`` — per-row probabilities, one column per arm (named by the arm),
  in the row order of the log;
- ``bandit:KEY`` — a bandit of the project's ``placements.yaml`` as it stands
  (saved or shared learned state, else its priors), per row's segment or features.

:func:`evaluate_log` runs :func:`tailorkit.measure.ope.evaluate_policy` and adds
diagnostics (mean importance weight, which should be close to 1 when the
propensities are right, and the effective sample size).

>>> import numpy as np
>>> log = BanditLog(("a", "b"), np.array([0, 1, 1, 0]), np.array([1.0, 0.0, 1.0, 0.0]),
...                 np.full(4, 0.5), {})
>>> target = evaluation_policy(log, "arm:a")
>>> evaluate_log(log, target, estimators=("ips",))["estimates"]["ips"]["value"]
0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import special

from tailorkit.decide.log import EXPOSURE
from tailorkit.measure.analysis.jsonfields import JsonFields
from tailorkit.measure.ope import ESTIMATORS, OPEResult, evaluate_policy, importance_weights

__all__ = [
    "BanditLog",
    "bandit_probabilities",
    "evaluate_file",
    "evaluate_log",
    "evaluate_project",
    "evaluation_policy",
    "project_bandit",
    "read_decision_log",
    "read_log_file",
    "read_table",
]

#: Reward events may be stamped this many seconds before the decision (client clocks).
CLOCK_SLACK = 5
#: Segment used for a per-segment bandit when the row's segment is none of its own.
OTHER_SEGMENT = "other"
MAX_CATEGORIES = 50
_MIN_ROWS_FOR_MODEL = 20


@dataclass(frozen=True)
class BanditLog:
    """Logged decisions: arm index, reward, propensity and context of each row.

    ``features`` maps context column names to float arrays (strings already
    one-hot encoded as ``column=value``); ``segment`` is the segment the
    logging bandit used (per-segment bandits), ``timestamp`` epoch seconds.
    """

    arms: tuple[str, ...]
    action: np.ndarray
    reward: np.ndarray
    propensity: np.ndarray
    features: Mapping[str, np.ndarray] = field(default_factory=dict)
    segment: np.ndarray | None = None
    timestamp: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Number of logged decisions."""
        return len(self.action)

    def context(self) -> np.ndarray:
        """``(n, d)`` model features: the context columns and a one-hot segment.

        With no context at all a single zero column (the reward model then
        learns per-arm means only).
        """
        columns = [np.asarray(v, dtype=float) for v in self.features.values()]
        if self.segment is not None:
            for value in sorted(set(self.segment.tolist())):
                columns.append((self.segment == value).astype(float))
        if not columns:
            return np.zeros((self.n, 1))
        return np.column_stack(columns)


# -- checks ------------------------------------------------------------------------------


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0]) + 1


def check_log(arms: Sequence[str], action: Any, reward: Any, propensity: Any) -> None:
    """Raise ``ValueError`` naming the first bad row (1-based) of a log's core columns.

    >>> check_log(("a", "b"), np.array([0, 1]), np.array([1.0, 0.0]), np.array([0.5, 1.5]))
    Traceback (most recent call last):
    ...
    ValueError: propensity must be in (0, 1]: row 2 has 1.5
    """
    if len(action) == 0:
        raise ValueError("the log has no rows")
    if len(arms) < 2:
        raise ValueError(f"need at least two arms, the log has {list(arms)}")
    r = np.asarray(reward, dtype=float)
    if not np.all(np.isfinite(r)):
        row = _first_bad(~np.isfinite(r))
        raise ValueError(f"reward must be a finite number: row {row} has {r[row - 1]}")
    p = np.asarray(propensity, dtype=float)
    bad = ~np.isfinite(p) | (p <= 0.0) | (p > 1.0)
    if bad.any():
        row = _first_bad(bad)
        raise ValueError(f"propensity must be in (0, 1]: row {row} has {p[row - 1]}")


# -- files -------------------------------------------------------------------------------


def read_table(path: Path) -> pa.Table:
    """A CSV, Parquet or NDJSON file as an Arrow table (read by DuckDB).

    Raises ``ValueError`` for a missing file or an unknown extension.
    """
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    name = path.name.lower().removesuffix(".gz")
    con = duckdb.connect()
    try:
        if name.endswith((".csv", ".tsv")):
            relation = con.read_csv(str(path))
        elif name.endswith((".parquet", ".pq")):
            relation = con.read_parquet(str(path))
        elif name.endswith((".ndjson", ".jsonl", ".json")):
            relation = con.read_json(str(path), format="newline_delimited")
        else:
            raise ValueError(f"{path.name}: use a .csv, .parquet or .ndjson/.jsonl file")
        table: pa.Table = relation.to_arrow_table()
    except duckdb.Error as exc:
        raise ValueError(f"{path.name}: cannot read: {exc}") from exc
    finally:
        con.close()
    return table


def _numbers(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    if column.null_count:
        row = _first_bad(column.is_null().to_numpy(zero_copy_only=False))
        raise ValueError(f"{name}: row {row} is empty")
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        raise ValueError(f"{name}: must hold numbers, found {kind}")
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=float)


def _strings(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    if column.null_count:
        row = _first_bad(column.is_null().to_numpy(zero_copy_only=False))
        raise ValueError(f"{name}: row {row} is empty")
    return np.asarray(pc.cast(column, pa.string()).to_pylist(), dtype=object)


def _arm_indices(labels: np.ndarray, arms: Sequence[str] | None) -> tuple[tuple[str, ...], Any]:
    """Arm names and each row's arm index; integers index ``arms`` when they name none."""
    values = [str(v) for v in labels.tolist()]
    if arms is None:
        unique = sorted(set(values), key=lambda v: (not v.lstrip("-").isdigit(), _num(v), v))
        names = tuple(unique)
    else:
        names = tuple(arms)
        if not set(values) & set(names) and all(v.isdigit() for v in values):
            numbers = [int(v) for v in values]
            if max(numbers) >= len(names):
                raise ValueError(f"action {max(numbers)} is not an arm index (arms: {names})")
            return names, np.asarray(numbers, dtype=np.int64)
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(values) - set(index))
    if unknown:
        raise ValueError(f"unknown actions {unknown[:5]} (arms: {list(names)})")
    return names, np.asarray([index[v] for v in values], dtype=np.int64)


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.inf


def _context_columns(table: pa.Table, names: Sequence[str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name in names:
        kind = table.column(name).type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            values = _strings(table, name)
            categories = sorted(set(values.tolist()))
            if len(categories) > MAX_CATEGORIES:
                raise ValueError(
                    f"{name}: {len(categories)} distinct strings; at most {MAX_CATEGORIES} are "
                    "one-hot encoded (leave it out with --features)"
                )
            for value in categories:
                out[f"{name}={value}"] = (values == value).astype(float)
        else:
            out[name] = _numbers(table, name)
    return out


def read_log_file(
    path: str | Path,
    *,
    action: str = "action",
    reward: str = "reward",
    propensity: str = "propensity",
    features: Sequence[str] | None = None,
    segment: str | None = "segment",
    arms: Sequence[str] | None = None,
) -> BanditLog:
    """Read an external decision log (CSV, Parquet or NDJSON).

    ``features`` names the context columns (default: every column but the
    action, reward, propensity and segment columns that holds numbers,
    booleans or strings). ``segment`` is used when that column exists.
    ``arms`` fixes the arm order (default: the sorted action labels); integer
    actions that name no arm are read as 0-based arm indices.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> text = "x,action,reward,propensity\\n0.5,b,1,0.5\\n1.5,a,0,0.5\\n"
    >>> _ = (folder / "log.csv").write_text(text)
    >>> log = read_log_file(folder / "log.csv")
    >>> log.arms, log.action.tolist(), list(log.features)
    (('a', 'b'), [1, 0], ['x'])
    """
    table = read_table(Path(path))
    required = [action, reward, propensity]
    missing = [c for c in required if c not in table.column_names]
    if features is not None:
        missing += [c for c in features if c not in table.column_names]
    if missing:
        raise ValueError(f"missing columns {missing}; the file has {table.column_names}")
    if segment is not None and segment not in table.column_names:
        segment = None
    if features is None:
        taken = {action, reward, propensity, segment}
        features = [
            c for c in table.column_names if c not in taken and _usable(table.schema.field(c).type)
        ]
    names, index = _arm_indices(_strings(table, action), arms)
    rewards = _numbers(table, reward)
    propensities = _numbers(table, propensity)
    check_log(names, index, rewards, propensities)
    return BanditLog(
        arms=names,
        action=index,
        reward=rewards,
        propensity=propensities,
        features=_context_columns(table, features),
        segment=_strings(table, segment) if segment is not None else None,
    )


def _usable(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    )


# -- the project's decision log ----------------------------------------------------------


def read_decision_log(
    warehouse: Any,
    spec: Any,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> BanditLog:
    """The decisions of bandit ``spec`` (a ``BanditSpec``) with their attributed rewards.

    ``warehouse`` is a :class:`~tailorkit.store.warehouse.Warehouse`; persons
    are resolved through identity merges. Decisions between ``since`` and
    ``until`` whose attribution window closed by ``now`` (default: the current
    time) are returned, ordered by time. Raises ``ValueError`` when the bandit
    has no reward event, no decision qualifies, or the log holds arms or
    propensities the definition cannot explain.
    """
    if spec.reward_event is None:
        raise ValueError(f"bandit {spec.key!r} has no reward event: no rewards to evaluate")
    now = now or datetime.now(UTC)
    backend = warehouse.backend
    exposures = warehouse.resolved_events([EXPOSURE])
    props = JsonFields(exposures.properties, backend)
    mine = exposures.filter(props.text("kind") == "bandit", props.text("key") == spec.key)
    props = JsonFields(mine.properties, backend)
    decisions = mine.select(
        decision_id=mine.event_id,
        person=mine.person_id,
        at=mine.timestamp,
        arm=props.text("variation_key"),
        propensity=props.number("propensity"),
        segment=props.text("segment"),
        placement=props.text("placement"),
        **{f"f{i}": props.number(f"features.{name}") for i, name in enumerate(spec.features)},
    )
    order = ibis.window(group_by=decisions.person, order_by=[decisions.at, decisions.decision_id])
    decisions = decisions.mutate(next_at=decisions.at.lead().over(order))
    window = ibis.interval(milliseconds=int(spec.reward_window * 1000))
    slack = ibis.interval(seconds=CLOCK_SLACK)
    # Closed: the window is over, or a newer decision replaced this one.
    decisions = decisions.filter((decisions.at + window <= now) | decisions.next_at.notnull())
    if since is not None:
        decisions = decisions.filter(decisions.at >= since)
    if until is not None:
        decisions = decisions.filter(decisions.at < until)

    events = warehouse.resolved_events([spec.reward_event])
    fields = JsonFields(events.properties, backend)
    value = fields.number("reward")
    rewards = events.select(
        r_person=events.person_id,
        r_at=events.timestamp,
        r_placement=fields.text("placement"),
        r_value=ibis.ifelse(value.between(0.0, 1.0), value, 1.0),
    )
    d, r = decisions, rewards
    # Each reward event belongs to at most one decision: the latest one it may follow.
    cond = [
        d.person == r.r_person,
        r.r_at >= d.at - slack,
        r.r_at <= d.at + window,
        d.next_at.isnull() | (r.r_at < d.next_at - slack),
    ]
    if spec.same_placement:
        cond.append(d.placement == r.r_placement)
    joined = d.inner_join(r, cond)
    first = joined.group_by("decision_id").aggregate(
        first_reward=joined.r_value.argmin(joined.r_at)
    )
    out = d.left_join(first, "decision_id")
    out = out.select(
        "at", "arm", "propensity", "segment", *[f"f{i}" for i in range(len(spec.features))],
        reward=out.first_reward.fill_null(0.0),
    ).order_by("at")  # fmt: skip
    with warehouse.lock:
        table = out.to_pyarrow()
    if table.num_rows == 0:
        raise ValueError(f"bandit {spec.key!r}: no decisions with a closed attribution window")
    if table.column("propensity").null_count:
        raise ValueError(f"bandit {spec.key!r}: some logged decisions have no propensity")
    arms, index = _arm_indices(_strings(table, "arm"), spec.arms)
    rewards_np = _numbers(table, "reward")
    propensity = _numbers(table, "propensity")
    check_log(arms, index, rewards_np, propensity)
    stamps = table.column("at").cast(pa.timestamp("us", "UTC")).cast(pa.int64())
    features = {
        name: np.nan_to_num(
            np.asarray(table.column(f"f{i}").to_numpy(zero_copy_only=False), dtype=float)
        )
        for i, name in enumerate(spec.features)
    }
    segments = table.column("segment")
    complete = segments.null_count == 0 and bool(spec.by_segment)
    return BanditLog(
        arms=arms,
        action=index,
        reward=rewards_np,
        propensity=propensity,
        features=features,
        segment=_strings(table, "segment") if complete else None,
        timestamp=np.asarray(stamps.to_numpy(zero_copy_only=False), dtype=float) / 1e6,
    )


# -- evaluation policies -----------------------------------------------------------------


def bandit_probabilities(log: BanditLog, spec: Any, policy: Any) -> np.ndarray:
    """``(n, K)`` arm probabilities of a live bandit policy for each logged row.

    Per-segment bandits use the row's segment (segments the bandit does not
    name become ``other``, as when serving); linear bandits the row's values of
    the bandit's ``features``; context-free bandits one vector for all rows.
    """
    if tuple(log.arms) != tuple(spec.arms):
        raise ValueError(f"the log's arms {list(log.arms)} are not the bandit's {list(spec.arms)}")
    n, k = log.n, len(spec.arms)
    if spec.by_segment:
        if log.segment is None:
            raise ValueError(f"bandit {spec.key!r} is per segment: the log needs a segment column")
        out = np.empty((n, k))
        for value in set(log.segment.tolist()):
            segment = value if value in spec.by_segment else OTHER_SEGMENT
            out[log.segment == value] = policy.probabilities(segment)
        return out
    if spec.features:
        missing = [f for f in spec.features if f not in log.features]
        if missing:
            raise ValueError(f"bandit {spec.key!r} needs context columns {missing}")
        x = np.column_stack([log.features[f] for f in spec.features])
        return np.asarray([policy.probabilities(row) for row in x])
    return np.broadcast_to(np.asarray(policy.probabilities(), dtype=float), (n, k)).copy()


def _file_policy(log: BanditLog, path: Path) -> np.ndarray:
    table = read_table(path)
    missing = [a for a in log.arms if a not in table.column_names]
    if missing:
        raise ValueError(f"{path.name}: missing probability columns {missing} (one per arm)")
    if table.num_rows != log.n:
        raise ValueError(f"{path.name}: {table.num_rows} rows, the log has {log.n}")
    pi = np.column_stack([_numbers(table, a) for a in log.arms])
    bad = (pi < 0).any(axis=1) | (pi > 1).any(axis=1) | ~np.isclose(pi.sum(axis=1), 1.0, atol=1e-6)
    if bad.any():
        row = _first_bad(bad)
        raise ValueError(
            f"{path.name}: row {row} is not a probability distribution: {pi[row - 1].tolist()}"
        )
    return pi


def evaluation_policy(
    log: BanditLog,
    policy: str,
    bandit: Callable[[str], tuple[Any, Any]] | None = None,
) -> np.ndarray:
    """The evaluation policy's ``(n, K)`` action probabilities for each logged row.

    ``policy`` is ``uniform``, ``arm:NAME``, ``file:PATH`` or ``bandit:KEY``;
    for the last, ``bandit(KEY)`` returns the ``(BanditSpec, Policy)`` pair.

    >>> log = BanditLog(("a", "b", "c"), np.array([0, 2]), np.zeros(2), np.full(2, 0.5))
    >>> evaluation_policy(log, "arm:c").tolist()
    [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    """
    n, k = log.n, len(log.arms)
    kind, _, arg = policy.partition(":")
    if kind == "uniform" and not arg:
        return np.full((n, k), 1.0 / k)
    if kind == "arm":
        if arg not in log.arms:
            raise ValueError(f"arm:{arg}: no such arm (arms: {list(log.arms)})")
        out = np.zeros((n, k))
        out[:, log.arms.index(arg)] = 1.0
        return out
    if kind == "file" and arg:
        return _file_policy(log, Path(arg))
    if kind == "bandit" and arg:
        if bandit is None:
            raise ValueError("bandit:KEY needs a project (its placements.yaml)")
        spec, live = bandit(arg)
        return bandit_probabilities(log, spec, live)
    raise ValueError(f"unknown policy {policy!r}: use uniform, arm:NAME, file:PATH or bandit:KEY")


# -- the evaluation ----------------------------------------------------------------------


def _result_json(result: OPEResult) -> dict[str, Any]:
    return {
        "value": result.value,
        "std_error": result.std_error,
        "ci_low": result.ci_low,
        "ci_high": result.ci_high,
        "ci_method": result.ci_method,
    }


def evaluate_log(
    log: BanditLog,
    target: np.ndarray,
    *,
    estimators: Sequence[str] = ESTIMATORS,
    alpha: float = 0.05,
    n_bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Estimates of the evaluation policy's mean reward, with intervals and diagnostics.

    The model-based estimators (``dm``, ``dr``) need at least 20 rows; on
    shorter logs they are listed under ``skipped``.
    """
    unknown = sorted(set(estimators) - set(ESTIMATORS))
    if unknown:
        raise ValueError(f"unknown estimators {unknown}; choose from {list(ESTIMATORS)}")
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be in (0, 1)")
    chosen = list(estimators)
    skipped = []
    if log.n < _MIN_ROWS_FOR_MODEL:
        skipped = [e for e in chosen if e in ("dm", "dr")]
        chosen = [e for e in chosen if e not in skipped]
    results: dict[str, OPEResult] = {}
    if chosen:
        results = evaluate_policy(
            log.context(),
            log.action,
            log.reward,
            log.propensity,
            target,
            estimators=chosen,
            alpha=alpha,
            n_bootstrap=n_bootstrap,
            rng=seed,
        )
    w = importance_weights(log.action, log.propensity, target)
    reward = log.reward
    se = float(reward.std(ddof=1) / math.sqrt(log.n)) if log.n > 1 else math.inf
    half = float(special.ndtri(1.0 - alpha / 2.0)) * se
    mean = float(reward.mean())
    return {
        "n": log.n,
        "arms": list(log.arms),
        "alpha": alpha,
        "logged": {"value": mean, "std_error": se, "ci_low": mean - half, "ci_high": mean + half},
        "estimates": {name: _result_json(res) for name, res in results.items()},
        "skipped": skipped,
        "diagnostics": {
            "mean_weight": float(w.mean()),
            "max_weight": float(w.max()),
            "effective_sample_size": float(w.sum() ** 2 / max((w**2).sum(), 1e-300)),
        },
    }


# -- projects and files (what ``tailorkit ope`` runs) --------------------------------------


def project_bandit(project: Any, key: str) -> tuple[Any, Any]:
    """``(BanditSpec, Policy)`` of bandit ``key`` of a project, as it stands now.

    The policy holds what the server learned: the shared statistics in Redis
    when ``redis.url`` is configured and reachable, else the state file the
    server saves (``.tailorkit/bandits.json``), else just the bandit's priors.
    """
    from tailorkit.decide.bandit_runtime import BanditRuntime
    from tailorkit.decide.bandit_state import shared_stats
    from tailorkit.decide.placements import bandit_specs

    specs = bandit_specs(project.definitions.get("placements") or {})
    if key not in specs:
        raise ValueError(f"no bandit {key!r} in placements.yaml (bandits: {sorted(specs)})")
    runtime = BanditRuntime(
        project.root / ".tailorkit" / "bandits.json", seed=0, shared=shared_stats(project.settings)
    )
    runtime.sync({key: specs[key]})
    runtime.share()
    return specs[key], runtime.policy(key)


def evaluate_project(
    project: Any,
    bandit: str,
    policy: str = "uniform",
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    warehouse: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate ``policy`` on the decision log of ``bandit`` in the project's store.

    ``options`` go to :func:`evaluate_log` (``estimators``, ``alpha``,
    ``n_bootstrap``, ``seed``); ``warehouse`` defaults to the project's store.
    """
    from tailorkit.store.warehouse import Warehouse

    spec, _ = project_bandit(project, bandit)
    own = warehouse is None
    wh = Warehouse(project.settings.store_url) if own else warehouse
    try:
        log = read_decision_log(wh, spec, since=since, until=until)
    finally:
        if own:
            wh.close()
    target = evaluation_policy(log, policy, lambda key: project_bandit(project, key))
    report = evaluate_log(log, target, **options)
    return {"source": f"bandit:{bandit}", "policy": policy, **report}


def evaluate_file(
    path: str | Path,
    policy: str = "uniform",
    *,
    project: Any = None,
    columns: Mapping[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate ``policy`` on an external log file.

    ``columns`` go to :func:`read_log_file` (``action``, ``reward``,
    ``propensity``, ``features``, ``segment``). With ``policy="bandit:KEY"``
    the ``project`` defines the bandit, and its arms fix the arm order.
    """
    readers = dict(columns or {})
    kind, _, key = policy.partition(":")
    lookup = None
    if kind == "bandit":
        if project is None:
            raise ValueError("bandit:KEY needs a project (its placements.yaml)")
        spec, live = project_bandit(project, key)
        readers.setdefault("arms", spec.arms)

        def lookup(_: str) -> tuple[Any, Any]:
            return spec, live

    log = read_log_file(path, **readers)
    target = evaluation_policy(log, policy, lookup)
    report = evaluate_log(log, target, **options)
    return {"source": str(path), "policy": policy, **report}
