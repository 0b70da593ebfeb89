"""Propensity to buy and churn risk: LightGBM on a time-based split, honestly evaluated.

A *snapshot* at a cutoff instant ``c`` has one row per person active in the
lookback window ``[c - lookback, c)``:

* features: :func:`tailorkit.learn.data.behaviour_features` over that
  window — computed from events strictly before ``c``, and the population
  cleaned of bots and outliers as of ``c`` (the test suite proves that
  deleting or altering events at or after ``c`` leaves them unchanged);
* label, from ``[c, c + horizon)`` only: ``propensity`` — bought at least
  once; ``churn`` — no activity at all.

Training and evaluation (:func:`train_task`), for data ending at ``T``:

1. out-of-time check: a model trained on the snapshot at ``T - 2·horizon``
   is scored on the snapshot at ``T - horizon`` (labels complete at ``T``);
2. cross-validation (stratified k-fold) on the latest labelled snapshot
   ``T - horizon``: AUC, PR-AUC (average precision), Brier score and a
   calibration curve from out-of-fold predictions;
3. the served model is fitted on that whole snapshot, then scores every
   person active before ``T`` — the scores are ``propensity_to_buy`` and
   ``churn_risk``.

Each metric is reported beside a logistic-regression baseline (log1p,
standardized) on the same features and folds. Explanations are exact
TreeSHAP values from LightGBM itself (``pred_contrib=True``), in log-odds:
globally as mean absolute contribution, per person as the largest
contributions with the feature value.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> x = pd.DataFrame({"visits": rng.poisson(3, 600).astype(float),
...                   "noise": rng.normal(size=600)})
>>> y = (rng.random(600) < 1 / (1 + np.exp(2 - x.visits))).astype(int)
>>> report = cross_validate(x, y, folds=3)
>>> report["lightgbm"]["auc"] > 0.7, report["logistic"]["auc"] > 0.7
(True, True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from tailorkit.learn.data import EventSource, behaviour_features, between, fetch
from tailorkit.learn.runtime import ml_threads, single_pool
from tailorkit.store.warehouse import Warehouse

TASKS = {"propensity": "propensity_to_buy", "churn": "churn_risk"}
LGBM_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "n_estimators": 300,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_child_samples": 30,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "verbose": -1,
}


@dataclass(frozen=True)
class TaskConfig:
    """What to predict and over which windows."""

    task: str = "propensity"  # or "churn"
    horizon_days: float = 7.0  # label window after the cutoff
    lookback_days: float | None = None  # feature window; None: fit the data (max 90 days)
    windows: tuple[int, ...] = (7,)  # extra recent-count windows, days
    folds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, not {self.task!r}")
        if self.horizon_days <= 0:
            raise ValueError("horizon_days must be positive")

    @property
    def score_name(self) -> str:
        """Profile score written for this task."""
        return TASKS[self.task]


def lookback(config: TaskConfig, first: datetime, end: datetime) -> timedelta:
    """Feature window: configured, or what the data allows before two label windows."""
    if config.lookback_days is not None:
        return timedelta(days=config.lookback_days)
    span = (end - first).total_seconds() / 86_400 - 2 * config.horizon_days
    if span < 1:
        raise ValueError(
            f"{span + 2 * config.horizon_days:.1f} days of data: too short for two "
            f"{config.horizon_days:g}-day label windows"
        )
    return timedelta(days=min(90.0, span))


# -- snapshots (Ibis, in the warehouse) ----------------------------------------------


def features_at(
    events: ir.Table, cutoff: datetime, window: timedelta, windows: tuple[int, ...] = (7,)
) -> ir.Table:
    """Features of persons active in ``[cutoff - window, cutoff)``, from those events only."""
    return behaviour_features(events, end=cutoff, start=cutoff - window, windows=windows)


def labels_at(events: ir.Table, cutoff: datetime, horizon: timedelta, task: str) -> ir.Table:
    """``person_id, label`` for persons with events in ``[cutoff, cutoff + horizon)``."""
    after = between(events, cutoff, cutoff + horizon)
    # propensity: a purchase; churn: any activity at all means "not churned"
    hits = after.filter(after.type == "purchase") if task == "propensity" else after
    return hits.select("person_id").distinct().mutate(_seen=ibis.literal(1))


def snapshot(
    source: EventSource, cutoff: datetime, config: TaskConfig, window: timedelta
) -> ir.Table:
    """Features before ``cutoff`` joined with the label after it (``label`` 0/1).

    Features (and who is in the population, bot/outlier flags included) come
    from ``source.clean(until=cutoff)``: nothing at or after the cutoff. The
    label reads the unfiltered events of the label window, so a person's
    outcome counts even if the quality rules flag them later.
    """
    features = features_at(source.clean(cutoff), cutoff, window, config.windows)
    horizon = timedelta(days=config.horizon_days)
    seen = labels_at(source.raw(cutoff + horizon), cutoff, horizon, config.task)
    joined = features.left_join(seen, "person_id").drop("person_id_right")
    hit = joined._seen.notnull()
    label = hit if config.task == "propensity" else ~hit
    # ifelse, not a cast: PostgreSQL cannot cast boolean to bigint
    return joined.mutate(label=label.ifelse(1, 0).cast("int64")).drop("_seen")


# -- frames ------------------------------------------------------------------------


def design(frame: pd.DataFrame, window_days: float) -> pd.DataFrame:
    """Model inputs: numeric feature columns, missing values filled the same way everywhere.

    Never-bought persons have no ``days_since_purchase``: it becomes the whole
    window (plus a day), which is what "long ago" means for this snapshot.
    """
    x = frame.drop(columns=[c for c in ("person_id", "label") if c in frame.columns])
    x = x.astype("float64")
    if "days_since_purchase" in x:
        x["days_since_purchase"] = x["days_since_purchase"].fillna(window_days + 1.0)
    if "avg_view_price" in x:
        x["avg_view_price"] = x["avg_view_price"].fillna(0.0)
    return x.fillna(0.0)


def _signed_log(values: np.ndarray) -> np.ndarray:
    return np.asarray(np.sign(values) * np.log1p(np.abs(values)))


def logistic_baseline(seed: int = 0) -> Any:
    """log1p, standardize, L2 logistic regression (the baseline beside every model)."""
    return make_pipeline(
        FunctionTransformer(_signed_log),
        StandardScaler(),
        LogisticRegression(max_iter=2000, C=1.0, random_state=seed),
    )


def lightgbm_model(seed: int = 0) -> lgb.LGBMClassifier:
    """The gradient-boosted trees used for both tasks (small trees, shrinkage, bagging)."""
    return lgb.LGBMClassifier(**LGBM_PARAMS, random_state=seed, n_jobs=ml_threads())


# -- evaluation --------------------------------------------------------------------


def classification_metrics(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """AUC, PR-AUC, Brier score, base rate and a quantile calibration curve.

    >>> m = classification_metrics(np.array([0, 0, 1, 1]), np.array([.1, .4, .35, .8]), bins=2)
    >>> m["auc"], m["positives"]
    (0.75, 2)
    """
    y = np.asarray(y)
    p = np.asarray(p)
    out: dict[str, Any] = {
        "n": int(y.size),
        "positives": int(y.sum()),
        "base_rate": float(y.mean()),
    }
    if 0 < y.sum() < y.size:
        out["auc"] = round(float(roc_auc_score(y, p)), 4)
        out["pr_auc"] = round(float(average_precision_score(y, p)), 4)
    out["brier"] = round(float(brier_score_loss(y, p)), 4)
    observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="quantile")
    out["calibration"] = [
        {"predicted": round(float(a), 4), "observed": round(float(b), 4)}
        for a, b in zip(predicted, observed, strict=True)
    ]
    out["ece"] = round(float(np.mean(np.abs(predicted - observed))), 4) if observed.size else 0.0
    return out


@single_pool
def cross_validate(x: pd.DataFrame, y: np.ndarray, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Out-of-fold metrics of LightGBM and the logistic baseline on the same folds."""
    y = np.asarray(y)
    folds = max(2, min(folds, int(min(y.sum(), (1 - y).sum()))))
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y)
    oof = {"lightgbm": np.zeros(len(y)), "logistic": np.zeros(len(y))}
    for train, test in splits:
        oof["lightgbm"][test] = _fit_predict(lightgbm_model(seed), x, y, train, test)
        oof["logistic"][test] = _fit_predict(logistic_baseline(seed), x, y, train, test)
    report: dict[str, Any] = {name: classification_metrics(y, p) for name, p in oof.items()}
    report["folds"] = folds
    return report


def _fit_predict(model: Any, x: pd.DataFrame, y: np.ndarray, train: Any, test: Any) -> np.ndarray:
    model.fit(x.iloc[train], y[train])
    return np.asarray(model.predict_proba(x.iloc[test])[:, 1])


@single_pool
def out_of_time(
    train_x: pd.DataFrame, train_y: np.ndarray, test_x: pd.DataFrame, test_y: np.ndarray
) -> dict[str, Any]:
    """Fit on an earlier snapshot, evaluate on a later one (both models)."""
    out: dict[str, Any] = {}
    models: list[tuple[str, Any]] = [
        ("lightgbm", lightgbm_model()),
        ("logistic", logistic_baseline()),
    ]
    for name, model in models:
        model.fit(train_x, train_y)
        p = model.predict_proba(test_x[train_x.columns])[:, 1]
        out[name] = classification_metrics(test_y, p)
    return out


# -- the served model ----------------------------------------------------------------


@dataclass
class ScoreModel:
    """A fitted LightGBM scorer with its feature contract and explanations."""

    name: str  # profile score name, e.g. propensity_to_buy
    features: list[str]
    window_days: float
    windows: list[int]
    booster: lgb.Booster
    report: dict[str, Any] = field(default_factory=dict)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability per row of a features frame (missing columns are an error)."""
        x = design(frame, self.window_days)[self.features]
        return np.asarray(self.booster.predict(x))

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """TreeSHAP contributions (log-odds) per row and feature, plus ``bias``."""
        x = design(frame, self.window_days)[self.features]
        raw = np.asarray(self.booster.predict(x, pred_contrib=True))
        return pd.DataFrame(raw, columns=[*self.features, "bias"], index=frame.index)

    def explain(self, frame: pd.DataFrame, top: int = 3) -> list[list[dict[str, Any]]]:
        """Per row: the ``top`` features pushing its score most (signed, with the value)."""
        contrib = self.contributions(frame).drop(columns="bias")
        x = design(frame, self.window_days)[self.features]
        out = []
        for i in range(len(contrib)):
            row = contrib.iloc[i]
            order = row.abs().sort_values(ascending=False).index[:top]
            out.append(
                [
                    {
                        "feature": f,
                        "contribution": round(float(row[f]), 4),
                        "value": float(x.iloc[i][f]),
                    }
                    for f in order
                ]
            )
        return out

    def importance(self, frame: pd.DataFrame, top: int = 10) -> dict[str, float]:
        """Mean |SHAP| per feature over ``frame`` (largest first)."""
        mean = self.contributions(frame).drop(columns="bias").abs().mean()
        return {
            str(k): round(float(v), 4) for k, v in mean.sort_values(ascending=False)[:top].items()
        }

    def save(self, directory: Path) -> None:
        """``model.txt`` (LightGBM's own text format) and ``model.json`` (contract)."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "model.txt").write_text(self.booster.model_to_string())
        meta = {
            "name": self.name,
            "features": self.features,
            "window_days": self.window_days,
            "windows": self.windows,
        }
        (directory / "model.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> ScoreModel:
        """Read a model written by :meth:`save`."""
        meta = json.loads((directory / "model.json").read_text())
        booster = lgb.Booster(model_str=(directory / "model.txt").read_text())
        return cls(meta["name"], meta["features"], meta["window_days"], meta["windows"], booster)


@dataclass
class TaskResult:
    """A trained task: the served model, the persons' scores and the evaluation report."""

    model: ScoreModel
    scores: pd.Series  # person_id -> probability, as of the end of the data
    report: dict[str, Any]


@single_pool
def train_task(source: EventSource, end: datetime, config: TaskConfig) -> TaskResult:
    """Evaluate (out-of-time, cross-validated), fit and score one task; see the module doc."""
    wh = source.wh
    first = _first_event(wh, source.clean(end))
    window = lookback(config, first, end)
    horizon = timedelta(days=config.horizon_days)
    days = window.total_seconds() / 86_400
    latest = fetch(wh, snapshot(source, end - horizon, config, window))
    earlier = fetch(wh, snapshot(source, end - 2 * horizon, config, window))
    _check_labels(latest, "latest snapshot")
    x, y = design(latest, days), latest.label.to_numpy()
    report: dict[str, Any] = {
        "task": config.task,
        "score": config.score_name,
        "cutoff": (end - horizon).isoformat(),
        "horizon_days": config.horizon_days,
        "lookback_days": round(days, 3),
        "rows": len(latest),
        "cross_validation": cross_validate(x, y, config.folds, config.seed),
    }
    if earlier.label.nunique() == 2:
        report["out_of_time"] = out_of_time(design(earlier, days), earlier.label.to_numpy(), x, y)
    final = lightgbm_model(config.seed).fit(x, y)
    model = ScoreModel(config.score_name, list(x.columns), days, list(config.windows),
                       final.booster_, report)  # fmt: skip
    current = fetch(wh, features_at(source.clean(end), end, window, config.windows))
    scores = pd.Series(model.predict(current), index=current.person_id, name=config.score_name)
    report["importance"] = model.importance(x.sample(min(len(x), 2000), random_state=0))
    report["examples"] = _examples(model, current, scores)
    report["logistic_coefficients"] = _coefficients(x, y)
    report["scored"] = len(scores)
    return TaskResult(model, scores, report)


def _examples(model: ScoreModel, current: pd.DataFrame, scores: pd.Series) -> list[dict[str, Any]]:
    """The highest and lowest scored persons with their top reasons (per-user SHAP)."""
    order = np.argsort(-scores.to_numpy())
    picked = np.r_[order[:3], order[-2:]] if len(order) > 5 else order
    rows: pd.DataFrame = current.take(picked)
    reasons = model.explain(rows, top=3)
    return [
        {"person_id": p, "score": round(float(s), 4), "reasons": r}
        for p, s, r in zip(rows.person_id, model.predict(rows), reasons, strict=True)
    ]


def _first_event(wh: Warehouse, events: ir.Table) -> datetime:
    value: Any = fetch(wh, events.aggregate(first=events.timestamp.min())).iloc[0, 0]
    if value is None or pd.isna(value):
        raise ValueError("no events to learn from")
    return pd.Timestamp(value).to_pydatetime()


def _check_labels(frame: pd.DataFrame, what: str) -> None:
    if len(frame) < 20 or frame.label.nunique() < 2:
        raise ValueError(
            f"{what}: {len(frame)} persons, {int(frame.label.sum()) if len(frame) else 0} "
            "positive: need both outcomes to train"
        )


def _coefficients(x: pd.DataFrame, y: np.ndarray) -> dict[str, float]:
    """Standardized logistic coefficients (the baseline, for reading beside SHAP)."""
    pipe = logistic_baseline().fit(x, y)
    coef = pipe[-1].coef_[0]
    order = np.argsort(-np.abs(coef))[:10]
    return {x.columns[i]: round(float(coef[i]), 4) for i in order}
