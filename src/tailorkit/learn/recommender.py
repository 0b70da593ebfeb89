"""Recommendations from the warehouse: time-based evaluation, tuning, the served model.

Training (:func:`train_recommender`), for interactions ending at ``T``:

1. **test split** — train on ``[.., T - holdout)``, test on ``[T - holdout, T)``;
2. **tuning** — inside the training period only, the last ``holdout`` days
   validate a small grid of ALS settings and hybrid weights (so the test
   window never chooses anything);
3. **evaluation** — every model (popularity, ALS, content, hybrid) with the
   chosen settings, on the test window: users seen in training ("warm"),
   relevant items = products they viewed, carted or bought in the test
   window, minus those they had already bought (never recommended). New
   users of the test window are evaluated too ("cold"): their first product
   is their history, the rest are the relevant items;
4. **serving** — the models are refitted on everything up to ``T`` and
   saved as an artifact (:class:`Recommender` loads it).

Serving API (what decide calls)::

    rec = Recommender.load(ArtifactStore.of_project(root))
    rec.recommend("u0000042", k=4, filters={"in_stock": True, "category": "shoes"})
    # -> [("p0131", 1.93), ...]; rec.model_version goes into the decision log

``filters`` is a condition in the project's one condition language
(GrowthBook/MongoDB style) over product attributes, e.g.
``{"price": {"$lt": 50}, "category": {"$in": ["shoes", "sports"]}}``.

>>> frame = pd.DataFrame({"person_id": ["a", "a", "b", "b", "c"],
...                       "product_id": ["x", "y", "x", "z", "y"],
...                       "views": 1, "cart_adds": 0, "purchases": [1, 0, 0, 0, 0]})
>>> data = Interactions.from_frame(frame, items=["x", "y", "z"])
>>> suite = fit_suite(data, ["red shoe", "blue shoe", "green lamp"],
...                   {"factors": 2, "iterations": 3}, (1.0, 0.3, 0.2))
>>> items = [{"product_id": "x", "in_stock": True}, {"product_id": "y", "in_stock": True},
...          {"product_id": "z", "in_stock": False}]
>>> rec = Recommender(suite, items, "v1")
>>> sorted(p for p, _ in rec.recommend("a", k=3))  # x was bought: never recommended
['y', 'z']
>>> [p for p, _ in rec.recommend("a", k=3, filters={"in_stock": True})]
['y']
>>> rec.model_version
'recommendations@v1'
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tailorkit.evaluate.conditions import compile_condition
from tailorkit.learn.artifacts import ArtifactStore
from tailorkit.learn.data import EventSource, fetch, interactions, products_frame
from tailorkit.learn.recommend import (
    DEFAULT_WEIGHTS,
    Als,
    Content,
    Hybrid,
    Interactions,
    Model,
    Popularity,
    evaluate,
    item_texts,
    ranking_metrics,
    top_k,
)
from tailorkit.learn.runtime import single_pool

log = logging.getLogger(__name__)
NAME = "recommendations"
MODELS = ("popularity", "als", "content", "hybrid")
#: Product attributes kept in the artifact for filters and display.
ATTRIBUTES = ("product_id", "name", "category", "price", "in_stock", "on_sale")
#: Interactions (``person_id, product_id, views, cart_adds, purchases, first_ts, last_ts``)
#: with ``start <= timestamp < end``.
Source = Callable[[datetime | None, datetime | None], pd.DataFrame]


@dataclass(frozen=True)
class RecConfig:
    """Recommendation training settings."""

    k: int = 10
    holdout_days: float = 7.0
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    text_columns: tuple[str, ...] = ("name", "description")
    price_column: str | None = "price"
    tune: bool = True
    factors_grid: tuple[int, ...] = (16, 32, 64)
    alpha_grid: tuple[float, ...] = (1.0, 5.0)
    regularization: float = 0.1
    iterations: int = 15
    #: (collaborative, content, popularity) weights tried for the hybrid
    blend_grid: tuple[tuple[float, float, float], ...] = (
        (1.0, 0.0, 0.0),
        (1.0, 0.3, 0.2),
        (1.0, 0.5, 0.5),
        (1.0, 1.0, 0.3),
    )
    seed: int = 0


@dataclass
class Suite:
    """The four fitted models over one training matrix."""

    data: Interactions
    popularity: Popularity
    als: Als
    content: Content
    hybrid: Hybrid

    def models(self) -> dict[str, Model]:
        """Name -> model, in report order."""
        return {
            "popularity": self.popularity,
            "als": self.als,
            "content": self.content,
            "hybrid": self.hybrid,
        }


def fit_suite(
    data: Interactions,
    texts: Sequence[str],
    als: Mapping[str, Any],
    blend: Sequence[float],
) -> Suite:
    """Fit popularity, ALS (``als`` settings), content and the hybrid (``blend`` weights)."""
    pop = Popularity().fit(data)
    cf = Als(**als).fit(data)
    content = Content().fit(data, texts)
    w_cf, w_content, w_pop = blend
    return Suite(data, pop, cf, content, Hybrid(cf, content, pop, w_cf, w_content, w_pop))


# -- held-out sets -------------------------------------------------------------------


def warm_targets(
    data: Interactions, test: pd.DataFrame, exclude: sp.csr_matrix
) -> tuple[np.ndarray, list[set[int]]]:
    """Training users with test-window items they had not bought (or seen) before."""
    users = pd.Index(data.users).get_indexer(pd.Index(test.person_id))
    items = pd.Index(data.items).get_indexer(pd.Index(test.product_id))
    keep = (users >= 0) & (items >= 0)
    relevant: dict[int, set[int]] = {}
    for u, i in zip(users[keep], items[keep], strict=True):
        relevant.setdefault(int(u), set()).add(int(i))
    rows, out = [], []
    for u in sorted(relevant):
        fresh = relevant[u] - set(exclude[u].indices.tolist())
        if fresh:
            rows.append(u)
            out.append(fresh)
    return np.asarray(rows, dtype=np.int64), out


def cold_targets(
    data: Interactions, test: pd.DataFrame, weights: Mapping[str, float]
) -> tuple[sp.csr_matrix, list[set[int]]]:
    """New users: first product (by time) as history, the others as relevant items."""
    new = test[~test.person_id.isin(pd.Index(data.users))].copy()
    new["item"] = pd.Index(data.items).get_indexer(pd.Index(new.product_id))
    new = new[new.item >= 0].sort_values(["person_id", "first_ts", "product_id"])
    histories, relevant = [], []
    for _, g in new.groupby("person_id", sort=True):
        if len(g) < 2:
            continue
        first = g.iloc[0]
        weight = sum(w * float(first.get(c, 0)) for c, w in weights.items())
        histories.append((int(first["item"]), max(weight, 1.0)))
        relevant.append(set(g.item.iloc[1:].astype(int)))
    rows = np.arange(len(histories))
    cols = np.asarray([h[0] for h in histories], dtype=np.int64)
    vals = np.asarray([h[1] for h in histories], dtype=np.float32)
    shape = (len(histories), len(data.items))
    return sp.csr_matrix((vals, (rows, cols)), shape=shape), relevant


def evaluate_cold(
    suite: Suite, history: sp.csr_matrix, relevant: list[set[int]], k: int
) -> list[dict[str, Any]]:
    """Cold-start table: models scored from one product of history (users unknown to ALS)."""
    if not relevant:
        return []
    unknown = np.full(history.shape[0], -1, dtype=np.int64)
    table = []
    for name, model in suite.models().items():
        ranked = top_k(model.scores(unknown, history), k, history)
        row: dict[str, Any] = {"model": name, "users": len(relevant), "k": k}
        row.update(ranking_metrics(ranked, relevant, k))
        row["coverage"] = round(np.unique(ranked).size / len(suite.data.items), 4)
        table.append(row)
    return table


# -- tuning --------------------------------------------------------------------------


def tune(
    source: Source,
    split: datetime,
    end: datetime,
    items: list[str],
    texts: list[str],
    config: RecConfig,
) -> dict[str, Any]:
    """Choose ALS settings, then hybrid weights, by NDCG@K: train before ``split``, validate
    on ``[split, end)``."""
    base: dict[str, Any] = {"regularization": config.regularization,
                            "iterations": config.iterations, "seed": config.seed}  # fmt: skip
    default = {"als": {**base, "factors": 32, "alpha": 2.0}, "blend": config.blend_grid[1]}
    if not config.tune:
        return {**default, "tuned": False}
    data = Interactions.from_frame(source(None, split), items, config.weights)
    users, relevant = warm_targets(data, source(split, end), data.purchased)
    if len(users) < 20:
        return {**default, "tuned": False, "validation_users": len(users)}
    trials = []
    for factors in config.factors_grid:
        for alpha in config.alpha_grid:
            als = Als(factors=factors, alpha=alpha, **base).fit(data)
            score = evaluate({"als": als}, users, relevant, data.purchased, config.k)[0]["ndcg"]
            trials.append({"factors": factors, "alpha": alpha, "ndcg": score})
    best = max(trials, key=lambda t: t["ndcg"])
    chosen = {**base, "factors": best["factors"], "alpha": best["alpha"]}
    suite = fit_suite(data, texts, chosen, config.blend_grid[0])
    blends = []
    for blend in config.blend_grid:
        suite.hybrid.w_cf, suite.hybrid.w_content, suite.hybrid.w_pop = blend
        score = evaluate({"h": suite.hybrid}, users, relevant, data.purchased, config.k)[0]["ndcg"]
        blends.append({"blend": list(blend), "ndcg": score})
    best_blend = max(blends, key=lambda b: b["ndcg"])
    return {
        "als": chosen,
        "blend": tuple(best_blend["blend"]),
        "tuned": True,
        "validation_users": len(users),
        "als_trials": trials,
        "blend_trials": blends,
    }


# -- the whole training run ----------------------------------------------------------


@dataclass
class RecResult:
    """A trained recommender: the served suite, its catalog and the evaluation report."""

    suite: Suite
    catalog: pd.DataFrame
    texts: list[str]
    settings: dict[str, Any]
    report: dict[str, Any]


def catalog_and_texts(
    products: pd.DataFrame, frame: pd.DataFrame, config: RecConfig
) -> tuple[pd.DataFrame, list[str]]:
    """Every catalog product plus products seen only in events, and their documents."""
    seen = pd.DataFrame({"product_id": sorted(set(frame.product_id) - set(products.product_id))})
    catalog = pd.concat([products, seen], ignore_index=True).sort_values("product_id")
    catalog = catalog.reset_index(drop=True)
    columns = [c for c in config.text_columns if c in catalog]
    if not columns:
        catalog["_text"] = catalog.product_id.astype(str)
        columns = ["_text"]
    return catalog, item_texts(catalog, columns, config.price_column)


@single_pool
def train_from_source(
    source: Source, products: pd.DataFrame, end: datetime, config: RecConfig
) -> RecResult:
    """Steps 1-4 of the module doc; ``source(start, end)`` gives interactions in a window."""
    everything = source(None, end)
    if everything.empty:
        raise ValueError("no product interactions to learn from")
    catalog, texts = catalog_and_texts(products, everything, config)
    items = catalog.product_id.astype(str).tolist()
    holdout = timedelta(days=config.holdout_days)
    split = end - holdout
    settings = tune(source, split - holdout, split, items, texts, config)
    train = Interactions.from_frame(source(None, split), items, config.weights)
    suite = fit_suite(train, texts, settings["als"], settings["blend"])
    test = source(split, end)
    users, relevant = warm_targets(train, test, train.purchased)
    history, cold_relevant = cold_targets(train, test, config.weights)
    report = {
        "split": split.isoformat(),
        "holdout_days": config.holdout_days,
        "train_users": len(train.users),
        "items": len(items),
        "warm": evaluate(suite.models(), users, relevant, train.purchased, config.k),
        "cold": evaluate_cold(suite, history, cold_relevant, config.k),
        "tuning": settings,
    }
    full = Interactions.from_frame(everything, items, config.weights)
    served = fit_suite(full, texts, settings["als"], settings["blend"])
    report["served_users"] = len(full.users)
    return RecResult(served, catalog, texts, settings, report)


def train_recommender(
    events: EventSource, end: datetime, config: RecConfig | None = None
) -> RecResult:
    """Train and evaluate on the warehouse's interactions before ``end`` (see module doc).

    Each window reads events cleaned as of its own end, so the training side
    of a split knows nothing of the test side.
    """

    def source(start: datetime | None, stop: datetime | None) -> pd.DataFrame:
        return fetch(events.wh, interactions(events.clean(stop), start, stop))

    return train_from_source(source, products_frame(events.wh), end, config or RecConfig())


# -- artifact and serving ------------------------------------------------------------


def save(result: RecResult, directory: Path) -> None:
    """Write the served suite: ``arrays.npz`` (no pickles), ``items.json``, ``model.json``."""
    s = result.suite
    arrays: dict[str, np.ndarray] = {
        "users": np.asarray(s.data.users, dtype=str),
        "items": np.asarray(s.data.items, dtype=str),
        "popularity": s.popularity.popularity,
        "user_factors": s.als.user_factors,
        "item_factors": s.als.item_factors,
    }
    for key, matrix in (
        ("history", s.data.matrix),
        ("purchased", s.data.purchased.astype(np.float32)),
        ("vectors", s.content.item_vectors),
    ):
        m = sp.csr_matrix(matrix)
        arrays.update({f"{key}_data": m.data, f"{key}_indices": m.indices,
                       f"{key}_indptr": m.indptr, f"{key}_shape": np.asarray(m.shape)})  # fmt: skip
    np.savez_compressed(directory / "arrays.npz", **arrays)  # type: ignore[arg-type]
    columns = [c for c in ATTRIBUTES if c in result.catalog]
    items = json.loads(result.catalog[columns].to_json(orient="records"))
    (directory / "items.json").write_text(json.dumps(items))
    h = s.hybrid
    meta = {
        "als": {
            k: v for k, v in asdict(s.als).items() if k not in ("user_factors", "item_factors")
        },
        "blend": [h.w_cf, h.w_content, h.w_pop],
        "shrink": h.shrink,
    }
    (directory / "model.json").write_text(json.dumps(meta, indent=2))


def _csr(arrays: Any, key: str) -> sp.csr_matrix:
    shape = tuple(int(x) for x in arrays[f"{key}_shape"])
    parts = (arrays[f"{key}_data"], arrays[f"{key}_indices"], arrays[f"{key}_indptr"])
    return sp.csr_matrix(parts, shape=shape)


class Recommender:
    """The served recommendation model (read-only, thread-safe to call).

    ``model_version`` (``recommendations@<version>``) is what the decision log
    records with each ``kind="recommendation"`` exposure.
    """

    def __init__(self, suite: Suite, items: list[dict[str, Any]], version: str) -> None:
        self.suite = suite
        self.items = items
        self.version = version
        self._user_index = {u: i for i, u in enumerate(suite.data.users)}
        self._item_index = {p: i for i, p in enumerate(suite.data.items)}
        self._masks: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def model_version(self) -> str:
        """Name and version for the decision log."""
        return f"{NAME}@{self.version}"

    @classmethod
    def from_directory(cls, directory: Path, version: str | None = None) -> Recommender:
        """Load an artifact folder written by :func:`save`."""
        meta = json.loads((directory / "model.json").read_text())
        with np.load(directory / "arrays.npz", allow_pickle=False) as arrays:
            users = arrays["users"].tolist()
            items = arrays["items"].tolist()
            history = _csr(arrays, "history")
            purchased = _csr(arrays, "purchased").astype(bool)
            data = Interactions(users, items, history, purchased)
            als = Als(**meta["als"])
            als.user_factors = arrays["user_factors"]
            als.item_factors = arrays["item_factors"]
            content = Content(_csr(arrays, "vectors"), history)
            pop = Popularity(arrays["popularity"])
        w_cf, w_content, w_pop = meta["blend"]
        hybrid = Hybrid(als, content, pop, w_cf, w_content, w_pop, meta["shrink"])
        suite = Suite(data, pop, als, content, hybrid)
        catalog = json.loads((directory / "items.json").read_text())
        return cls(suite, catalog, version or directory.name)

    @classmethod
    def load(cls, store: ArtifactStore) -> Recommender:
        """The currently served version (KeyError before the first training)."""
        version = store.current(NAME)
        return cls.from_directory(store.path(NAME, version), version)

    def knows(self, person_id: str | None) -> bool:
        """Whether the model was trained on this person's interactions."""
        return person_id is not None and person_id in self._user_index

    def item(self, product_id: str) -> dict[str, Any]:
        """The catalog attributes of a product (``product_id, name, category, price, ...``)."""
        return dict(self.items[self._item_index[product_id]])

    def _filter_mask(self, filters: Mapping[str, Any] | None) -> np.ndarray | None:
        if not filters:
            return None
        key = json.dumps(filters, sort_keys=True, default=str)
        with self._lock:
            mask = self._masks.get(key)
            if mask is None:
                test = compile_condition(dict(filters))
                mask = np.fromiter((test(item) for item in self.items), dtype=bool,
                                   count=len(self.items))  # fmt: skip
                if len(self._masks) > 256:
                    self._masks.clear()
                self._masks[key] = mask
        return mask

    def _history_row(
        self, user: int, history: Iterable[str] | Mapping[str, float]
    ) -> sp.csr_matrix:
        """Training row (if known) plus recent products (weight 1 each unless given)."""
        weights = history if isinstance(history, Mapping) else dict.fromkeys(history, 1.0)
        row = np.zeros(len(self._item_index), dtype=np.float32)
        if user >= 0:
            row += self.suite.data.matrix[user].toarray().ravel()
        for product, w in weights.items():
            i = self._item_index.get(product)
            if i is not None:
                row[i] += float(w)
        return sp.csr_matrix(row)

    def recommend(
        self,
        person_id: str | None,
        k: int = 10,
        exclude_purchased: bool = True,
        filters: Mapping[str, Any] | None = None,
        history: Iterable[str] | Mapping[str, float] | None = None,
        exclude: Iterable[str] = (),
        model: str = "hybrid",
    ) -> list[tuple[str, float]]:
        """The ``k`` best products for a person: ``[(product_id, score), ...]``.

        Unknown persons get popularity, or content + folded-in ALS when
        ``history`` (recently viewed product ids, or id -> weight) is given;
        known persons' recent ``history`` is added to what the model saw.
        ``exclude`` removes products (e.g. the one on the page).
        """
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, not {model!r}")
        user = self._user_index.get(person_id, -1) if person_id is not None else -1
        scorer: Model = self.suite.models()[model]
        if history:
            extra = self._history_row(user, history)
            scores = scorer.scores(np.array([-1]), extra)[0]
        else:
            scores = scorer.scores(np.array([user]))[0]
        scores = scores.astype(np.float64)
        if exclude_purchased and user >= 0:
            scores[self.suite.data.purchased[user].indices] = -np.inf
        for product in exclude:
            i = self._item_index.get(product)
            if i is not None:
                scores[i] = -np.inf
        mask = self._filter_mask(filters)
        if mask is not None:
            scores[~mask] = -np.inf
        ranked = top_k(scores[None, :], k)[0]
        items = self.suite.data.items
        return [(items[i], round(float(scores[i]), 6)) for i in ranked if np.isfinite(scores[i])]

    def similar_items(
        self, product_id: str, k: int = 10, filters: Mapping[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """Products like ``product_id`` (content and co-interaction): for product pages."""
        i = self._item_index.get(product_id)
        if i is None:
            return []
        return self.recommend(None, k, filters=filters, history={product_id: 1.0},
                              exclude=[product_id])  # fmt: skip


class ServedRecommender:
    """The current :class:`Recommender` of a project, swapped in when a new version is published.

    :meth:`refresh` reads ``models/recommendations/CURRENT`` and loads a new
    version; if that version cannot be loaded, the one already in memory
    keeps serving, the error is logged and kept in :attr:`problem`, and that
    version is not tried again. :meth:`current` never loads (for the request
    path: a server calls :meth:`refresh` from a background thread);
    :meth:`get` refreshes at most every ``check_seconds``. Both return None
    until a first version exists, with the reason in :attr:`problem`.

    >>> import tempfile
    >>> served = ServedRecommender(ArtifactStore(Path(tempfile.mkdtemp())))
    >>> served.get() is None, served.problem
    (True, 'no trained recommendation model (run `tailorkit build`)')
    """

    def __init__(self, store: ArtifactStore, check_seconds: float = 5.0) -> None:
        self.store = store
        self.check_seconds = check_seconds
        self.problem: str | None = None
        self._current: Recommender | None = None
        self._failed: str | None = None
        self._checked = -float("inf")
        self._lock = threading.Lock()

    def current(self) -> Recommender | None:
        """The recommender in memory (no file access)."""
        return self._current

    def get(self) -> Recommender | None:
        """The recommender to use now (refreshed at most every ``check_seconds``)."""
        if time.monotonic() - self._checked < self.check_seconds:
            return self._current
        return self.refresh()

    def refresh(self) -> Recommender | None:
        """Load the published version if it is new; keep the current one on any failure."""
        with self._lock:
            self._checked = time.monotonic()
            current = self._current
            try:
                version = self.store.current(NAME)
            except OSError as exc:
                version = None
                self.problem = f"cannot read the served version: {exc}"
            if version is None:
                if current is None and self.problem is None:
                    self.problem = "no trained recommendation model (run `tailorkit build`)"
                return current
            if (current is not None and current.version == version) or version == self._failed:
                return current
            try:
                self._current = Recommender.from_directory(self.store.path(NAME, version), version)
                self.problem = None
            except Exception as exc:
                self._failed = version
                kept = current.version if current else None
                log.exception("recommendations %s cannot be loaded; keeping %s", version, kept)
                self.problem = f"recommendations {version} cannot be loaded: {type(exc).__name__}"
            return self._current
