"""Learning stage: training time and quality of every model beside its baseline, one run.

Data: the seeded demo shop (``--users``, default 100,000 visitors over 30
days, about 4.8 M events), ingested through the collector into a DuckDB
file; every model then reads it through the same code as ``tailorkit build``.
Per model, in the same process on the same data:

============== ============================== ===================================
model          quality                        baseline
============== ============================== ===================================
clusters       ARI vs the hidden personas     the generator author's recipe:
               (k chosen by silhouette)       k-means with k = 5 fixed
journeys       same patterns, mining time     the ``prefixspan`` package
propensity     CV AUC, PR-AUC (LightGBM)      logistic regression, same folds
churn          CV AUC, PR-AUC (LightGBM)      logistic regression, same folds
recommend      NDCG@10 on the last 7 days     popularity
============== ============================== ===================================

Run: ``.venv/bin/python benchmarks/ml.py [--users N] [--cache DIR]``
(``--cache`` keeps the loaded warehouse between runs). Prints one JSON line
per model; the last line is the headline (hybrid vs popularity NDCG@10).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.learn.shop import load, persona_of

from tailorkit.demo import generate_shop
from tailorkit.learn.build import event_source
from tailorkit.learn.data import behaviour_features, data_range, fetch, session_steps
from tailorkit.learn.propensity import (
    TaskConfig,
    cross_validate,
    design,
    lightgbm_model,
    logistic_baseline,
    lookback,
    snapshot,
)
from tailorkit.learn.recommender import RecConfig, train_recommender
from tailorkit.learn.runtime import limited_threads
from tailorkit.project.loader import QualitySettings
from tailorkit.segment.clusters import (
    DEFAULT_FEATURES,
    DEFAULT_LOG,
    ClusterConfig,
    agreement,
    fit_clusters,
)
from tailorkit.segment.journeys import collapse_repeats, encode, prefixspan
from tailorkit.store.warehouse import Warehouse

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def emit(bench: str, metric: str, value: float, baseline: float, **extra: Any) -> dict[str, Any]:
    row = {"bench": bench, "metric": metric, "value": round(value, 4),
           "baseline": round(baseline, 4),
           "ratio": round(value / baseline, 3) if baseline else None, **extra}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def warehouse(users: int, seed: int, cache: Path | None) -> tuple[Warehouse, pd.Series, float]:
    """The demo shop in a DuckDB file (reused from ``cache`` when there)."""
    folder = cache or Path(tempfile.mkdtemp(prefix="tk-ml-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"shop-{users}-{seed}.duckdb"
    started = time.perf_counter()
    shop = generate_shop(n_users=users, days=30, seed=seed)
    if not path.exists():
        tmp = path.with_suffix(".loading")
        shutil.rmtree(tmp, ignore_errors=True)
        load(shop, f"duckdb://{tmp}").close()
        tmp.rename(path)
    return Warehouse(f"duckdb://{path}"), persona_of(shop), time.perf_counter() - started


def bench_clusters(features: pd.DataFrame, truth: pd.Series) -> None:
    model, seconds = timed(lambda: fit_clusters(features, ClusterConfig()))
    ari = agreement(model.assign(features), truth)

    def recipe() -> np.ndarray:
        x = features[list(DEFAULT_FEATURES)].copy()
        x["avg_view_price"] = x.avg_view_price.fillna(x.avg_view_price.median())
        for column in DEFAULT_LOG:
            x[column] = np.log1p(x[column])
        z = StandardScaler().fit_transform(x)
        return KMeans(n_clusters=5, n_init=10, random_state=0).fit_predict(z)

    with limited_threads():
        labels, base_seconds = timed(recipe)
    ward = fit_clusters(features, ClusterConfig(method="ward", k=5))
    hdb = fit_clusters(features, ClusterConfig(method="hdbscan"))
    emit("ml", "clusters_ari", ari, agreement(labels, truth), k=model.k,
         elbow_k=model.selection["elbow_k"], seconds=round(seconds, 2),
         baseline_seconds=round(base_seconds, 2), persons=len(features),
         ward_ari=round(agreement(ward.assign(features), truth), 4),
         hdbscan_ari=round(agreement(hdb.assign(features), truth), 4),
         personas={p.id: p.name for p in model.personas})  # fmt: skip


def bench_journeys(sessions: list[list[str]], min_share: float, max_length: int) -> None:
    from prefixspan import PrefixSpan

    minsup = int(np.ceil(min_share * len(sessions)))

    def ours() -> set[tuple[int, tuple[str, ...]]]:
        found = prefixspan(encode(sessions), minsup, max_length)
        return {(p.support, tuple(str(s) for s in p.steps)) for p in found}

    def package() -> set[tuple[int, tuple[str, ...]]]:
        codes: dict[str, int] = {}
        db = [[codes.setdefault(s, len(codes)) for s in seq] for seq in sessions]
        names = list(codes)
        ps = PrefixSpan(db)
        ps.maxlen = max_length
        return {(sup, tuple(names[i] for i in p)) for sup, p in ps.frequent(minsup)}

    mine, seconds = timed(ours)
    reference, base_seconds = timed(package)
    assert mine == reference, "pattern sets differ"
    emit("ml", "journeys_speedup", base_seconds / seconds, 1.0, sessions=len(sessions),
         patterns=len(mine), seconds=round(seconds, 2),
         prefixspan_package_seconds=round(base_seconds, 2), same_patterns=True)  # fmt: skip


def bench_task(source: Any, end: Any, task: str) -> None:
    config = TaskConfig(task=task)
    first = data_range(source.wh, source.clean())
    assert first is not None
    window = lookback(config, first[0], end)
    frame, query_seconds = timed(
        lambda: fetch(source.wh, snapshot(source, end - timedelta(days=7), config, window))
    )
    x, y = design(frame, window.days), frame.label.to_numpy()
    cv, cv_seconds = timed(lambda: cross_validate(x, y, config.folds))
    with limited_threads():
        _, lgbm_seconds = timed(lambda: lightgbm_model().fit(x, y))
        _, logit_seconds = timed(lambda: logistic_baseline().fit(x, y))
    lgbm, logit = cv["lightgbm"], cv["logistic"]
    extra = {
        "rows": len(frame),
        "base_rate": round(float(y.mean()), 4),
        "pr_auc": lgbm["pr_auc"],
        "pr_auc_baseline": logit["pr_auc"],
        "brier": lgbm["brier"],
        "brier_baseline": logit["brier"],
        "fit_seconds": round(lgbm_seconds, 2),
        "baseline_fit_seconds": round(logit_seconds, 2),
        "cv_seconds": round(cv_seconds, 2),
        "snapshot_query_seconds": round(query_seconds, 2),
    }
    emit("ml", f"{task}_auc", lgbm["auc"], logit["auc"], **extra)


def bench_recommendations(source: Any, end: Any) -> dict[str, Any]:
    result, seconds = timed(lambda: train_recommender(source, end, RecConfig()))
    table = {row["model"]: row for row in result.report["warm"]}
    pop = table["popularity"]
    for name in ("als", "content"):
        emit("ml", f"{name}_ndcg@10", table[name]["ndcg"], pop["ndcg"],
             precision=table[name]["precision"], recall=table[name]["recall"],
             coverage=table[name]["coverage"])  # fmt: skip
    cold = {row["model"]: row["ndcg"] for row in result.report["cold"]}
    tuning = result.report["tuning"]
    return emit("ml", "hybrid_ndcg@10", table["hybrid"]["ndcg"], pop["ndcg"],
                precision=table["hybrid"]["precision"], recall=table["hybrid"]["recall"],
                coverage=table["hybrid"]["coverage"], popularity_coverage=pop["coverage"],
                test_users=pop["users"], cold_start_ndcg=cold,
                als={k: tuning["als"][k] for k in ("factors", "alpha")},
                blend=list(tuning["blend"]), train_seconds=round(seconds, 2))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--journey-sessions", type=int, default=0,
                        help="mine at most this many sessions (0: all)")  # fmt: skip
    args = parser.parse_args()
    wh, truth, setup = warehouse(args.users, args.seed, args.cache)
    print(json.dumps({"setup_seconds": round(setup, 1), "events": wh.count_events()}), flush=True)
    source, prepare = timed(lambda: event_source(wh, QualitySettings()))
    span = data_range(wh, source.clean())
    assert span is not None
    end = span[1] + timedelta(microseconds=1)
    print(json.dumps({"materialize_seconds": round(prepare, 1)}), flush=True)

    features = fetch(wh, behaviour_features(source.clean(), end)).set_index("person_id")
    features = features[features.index.isin(truth.index)]
    bench_clusters(features, truth.reindex(features.index))

    frame = fetch(wh, session_steps(source.clean(), detail="category"))
    sessions = [[str(step) for step in collapse_repeats(list(s))] for s in frame.steps]
    if args.journey_sessions:
        sessions = sessions[: args.journey_sessions]
    bench_journeys(sessions, min_share=0.005, max_length=4)

    bench_task(source, end, "propensity")
    bench_task(source, end, "churn")
    headline = bench_recommendations(source, end)
    print(json.dumps({k: headline[k] for k in ("bench", "metric", "value", "baseline", "ratio")}))


if __name__ == "__main__":
    main()
