"""Recommendation models and their offline evaluation (pure core: frames in, arrays out).

Models score every item for a batch of users (``scores(users) -> (n, items)``):

* :class:`Popularity` — interaction weight per item; the baseline;
* :class:`Als` — implicit-feedback matrix factorization
  (``implicit.cpu.als.AlternatingLeastSquares``, confidence ``alpha · weight``);
  users unknown at training time are *folded in* from their history by
  solving the same least-squares step ALS uses for users;
* :class:`Content` — TF-IDF over item text (name, category, description,
  price band...); a user's profile is the weighted sum of the vectors of the
  items they interacted with, the score is cosine similarity;
* :class:`Hybrid` — per user, each model's scores are standardized over the
  catalog and blended; the collaborative weight grows with the user's history
  (``n / (n + shrink)``), so a new user is served by content and popularity
  (cold start) and a visitor with no history at all by popularity.

Interaction weights: view 1, cart add 3, purchase 5 (configurable).

Evaluation (:func:`evaluate`) ranks the catalog for each test user, removes
what the protocol excludes (items bought before, or every item seen in
training) and compares the top K with the user's held-out items:
Precision@K, Recall@K, NDCG@K (binary gains), MAP@K and catalog coverage
(share of items recommended to at least one user), every model in one table.

>>> import pandas as pd
>>> frame = pd.DataFrame({"person_id": ["a", "a", "b", "c"], "product_id": ["x", "y", "x", "z"],
...                       "views": [1, 1, 1, 1], "cart_adds": [0, 1, 0, 0],
...                       "purchases": [0, 0, 0, 1]})
>>> data = Interactions.from_frame(frame)
>>> data.matrix.shape, data.items
((3, 3), ['x', 'y', 'z'])
>>> pop = Popularity().fit(data)
>>> [data.items[i] for i in top_k(pop.scores(np.array([1])), 2)[0]]
['z', 'y']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from tailorkit.learn.runtime import limited_threads, ml_threads

DEFAULT_WEIGHTS = {"views": 1.0, "cart_adds": 3.0, "purchases": 5.0}
TIEBREAK = 1e-3  # weight of popularity in the hybrid even when tuning gives it none


@dataclass
class Interactions:
    """Users × items interaction weights (CSR) and which items each user bought."""

    users: list[str]
    items: list[str]
    matrix: sp.csr_matrix  # float32 weights
    purchased: sp.csr_matrix  # bool

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        items: Sequence[str] | None = None,
        weights: Mapping[str, float] = DEFAULT_WEIGHTS,
        users: Sequence[str] | None = None,
    ) -> Interactions:
        """From ``person_id, product_id`` and count columns (see :data:`DEFAULT_WEIGHTS`).

        ``items``/``users`` fix the index order (rows outside them are dropped);
        by default they are the sorted ids present.
        """
        item_list = list(items) if items is not None else sorted(frame.product_id.unique())
        user_list = list(users) if users is not None else sorted(frame.person_id.unique())
        item_ix = pd.Index(item_list).get_indexer(pd.Index(frame.product_id))
        user_ix = pd.Index(user_list).get_indexer(pd.Index(frame.person_id))
        keep = (item_ix >= 0) & (user_ix >= 0)
        w = np.zeros(len(frame))
        for column, weight in weights.items():
            if column in frame:
                w += weight * frame[column].to_numpy(dtype=float)
        shape = (len(user_list), len(item_list))
        rows, cols = user_ix[keep], item_ix[keep]
        matrix = sp.csr_matrix((w[keep].astype(np.float32), (rows, cols)), shape=shape)
        bought = (
            frame["purchases"].to_numpy()[keep] > 0 if "purchases" in frame else keep[keep] & False
        )
        purchased = sp.csr_matrix(
            (np.ones(int(bought.sum()), dtype=bool), (rows[bought], cols[bought])), shape=shape
        )
        matrix.sum_duplicates()
        purchased.sum_duplicates()
        return cls(user_list, item_list, matrix, purchased)

    def counts(self) -> np.ndarray:
        """Distinct items per user."""
        return np.diff(self.matrix.indptr)


class Model(Protocol):
    """Anything that scores the catalog for a batch of user rows."""

    def scores(self, users: np.ndarray, history: sp.csr_matrix | None = None) -> np.ndarray:
        """``(len(users), n_items)`` scores; ``history`` rows replace training rows."""
        ...


# -- popularity ----------------------------------------------------------------------


@dataclass
class Popularity:
    """Items by total interaction weight in the training data."""

    popularity: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    def fit(self, data: Interactions) -> Popularity:
        """Column sums of the weight matrix."""
        self.popularity = np.asarray(data.matrix.sum(axis=0)).ravel().astype(np.float32)
        return self

    def scores(self, users: np.ndarray, history: sp.csr_matrix | None = None) -> np.ndarray:
        """The same popularity for every user."""
        return np.broadcast_to(self.popularity, (len(users), self.popularity.size)).copy()


# -- ALS -------------------------------------------------------------------------------


@dataclass
class Als:
    """Implicit ALS; keeps the training rows so that known users are scored from factors."""

    factors: int = 32
    regularization: float = 0.1
    alpha: float = 2.0
    iterations: int = 15
    seed: int = 0
    user_factors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    item_factors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def fit(self, data: Interactions) -> Als:
        """Fit factors with the ``implicit`` package (threads capped, no progress bar)."""
        from implicit.cpu.als import AlternatingLeastSquares

        with limited_threads():  # implicit checks the BLAS pool when the model is created
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                num_threads=ml_threads(),
                random_state=self.seed,
            )
            model.fit(data.matrix, show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        return self

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        """User factors for history rows, by ALS's own least-squares user step."""
        y = self.item_factors.astype(np.float64)
        base = y.T @ y + self.regularization * np.eye(y.shape[1])
        out = np.zeros((history.shape[0], y.shape[1]), dtype=np.float32)
        for r in range(history.shape[0]):
            lo, hi = history.indptr[r], history.indptr[r + 1]
            if lo == hi:
                continue
            items = history.indices[lo:hi]
            conf = self.alpha * history.data[lo:hi].astype(np.float64)
            yi = y[items]
            a = base + (yi.T * (conf - 1.0)) @ yi
            out[r] = np.linalg.solve(a, yi.T @ conf)
        return out

    def scores(self, users: np.ndarray, history: sp.csr_matrix | None = None) -> np.ndarray:
        """Dot products of user and item factors (unknown users: folded in, else zeros)."""
        users = np.asarray(users)
        known = (users >= 0) & (users < len(self.user_factors))
        factors = np.zeros((len(users), self.item_factors.shape[1]), dtype=np.float32)
        factors[known] = self.user_factors[users[known]]
        if history is not None:
            factors[~known] = self.fold_in(history[np.flatnonzero(~known)])
        return np.asarray(factors @ self.item_factors.T)


# -- content ---------------------------------------------------------------------------


@dataclass
class Content:
    """TF-IDF item vectors; users are the weighted sum of what they interacted with."""

    item_vectors: sp.csr_matrix = field(default_factory=lambda: sp.csr_matrix((0, 0)))
    history: sp.csr_matrix = field(default_factory=lambda: sp.csr_matrix((0, 0)))

    def fit(self, data: Interactions, texts: Sequence[str]) -> Content:
        """Vectorize ``texts`` (one per item, in ``data.items`` order)."""
        if len(texts) != len(data.items):
            raise ValueError("one text per item is needed")
        vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=1, ngram_range=(1, 1))
        self.item_vectors = sp.csr_matrix(
            normalize(vectorizer.fit_transform(texts)), dtype=np.float32
        )
        self.history = data.matrix
        return self

    def scores(self, users: np.ndarray, history: sp.csr_matrix | None = None) -> np.ndarray:
        """Cosine similarity of each item to the user's profile (zeros without history)."""
        rows = _history_rows(self.history, users, history)
        profile = normalize(rows @ self.item_vectors)
        return np.asarray((profile @ self.item_vectors.T).toarray(), dtype=np.float32)


def _history_rows(
    train: sp.csr_matrix, users: np.ndarray, history: sp.csr_matrix | None
) -> sp.csr_matrix:
    """Training rows of known users; ``history`` rows (or empty) for the others."""
    users = np.asarray(users)
    known = (users >= 0) & (users < train.shape[0])
    if known.all():
        return sp.csr_matrix(train[users])
    rows = sp.lil_matrix((len(users), train.shape[1]), dtype=np.float32)
    if known.any():
        rows[np.flatnonzero(known)] = train[users[known]]
    if history is not None:
        unknown = np.flatnonzero(~known)
        rows[unknown] = history[unknown]
    return sp.csr_matrix(rows)


def item_texts(items: pd.DataFrame, text_columns: Sequence[str], price: str | None) -> list[str]:
    """One document per item: text columns, plus tokens for the category and price band.

    Price bands (quintiles) let TF-IDF match users to items at their usual price level.
    """
    parts = items[list(text_columns)].fillna("").astype(str).agg(" ".join, axis=1)
    if "category" in items:
        parts = parts + " cat_" + items["category"].fillna("none").astype(str)
    if price and price in items and items[price].notna().any():
        band = pd.qcut(items[price].rank(method="first"), 5, labels=False)
        parts = parts + " price_band_" + band.astype(str)
    return parts.tolist()


# -- hybrid ----------------------------------------------------------------------------


def standardize_rows(scores: np.ndarray) -> np.ndarray:
    """Per-row z-scores (rows with no spread become zeros).

    >>> standardize_rows(np.array([[1.0, 3.0], [2.0, 2.0]])).tolist()
    [[-1.0, 1.0], [0.0, 0.0]]
    """
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return np.asarray(np.where(std > 0, (scores - mean) / np.where(std > 0, std, 1.0), 0.0))


@dataclass
class Hybrid:
    """``w_cf·n/(n+shrink)·z(ALS) + w_content·z(content) + w_pop·z(popularity)``.

    ``n`` is the number of items in the user's history: the collaborative
    part fades in as evidence accumulates. Users with no history get
    popularity only (the z-scores of empty profiles are zero; popularity
    always keeps a small weight, :data:`TIEBREAK`, to order ties).
    """

    als: Als
    content: Content
    popularity: Popularity
    w_cf: float = 1.0
    w_content: float = 0.3
    w_pop: float = 0.2
    shrink: float = 2.0

    def scores(self, users: np.ndarray, history: sp.csr_matrix | None = None) -> np.ndarray:
        """Blended scores for a batch of users."""
        rows = _history_rows(self.content.history, users, history)
        n = np.diff(rows.indptr).astype(np.float64)[:, None]
        cf = self.als.scores(users, history)
        blend = self.w_cf * n / (n + self.shrink) * standardize_rows(cf)
        blend += self.w_content * standardize_rows(self.content.scores(users, history))
        # popularity always breaks ties, and is all a visitor without history gets
        blend += (self.w_pop + TIEBREAK) * standardize_rows(self.popularity.scores(users))
        return np.asarray(blend, dtype=np.float32)


# -- ranking and evaluation ------------------------------------------------------------


def top_k(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> np.ndarray:
    """Indices of the ``k`` best items per row, best first; ``exclude`` rows are masked.

    >>> top_k(np.array([[0.1, 0.9, 0.5]]), 2).tolist()
    [[1, 2]]
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    if exclude is not None and exclude.nnz:
        rows, cols = exclude.nonzero()
        scores[rows, cols] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.asarray(np.take_along_axis(part, order, axis=1))


def ranking_metrics(ranked: np.ndarray, relevant: Sequence[set[int]], k: int) -> dict[str, float]:
    """Mean Precision@K, Recall@K, NDCG@K and MAP@K over users (binary relevance).

    >>> ranking_metrics(np.array([[3, 1, 2]]), [{1, 5}], k=3)["precision"]
    0.3333
    """
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    p = r = ndcg = ap = 0.0
    for row, rel in zip(ranked, relevant, strict=True):
        hits = np.fromiter((i in rel for i in row[:k]), dtype=bool, count=min(k, len(row)))
        n_hit = hits.sum()
        p += n_hit / k
        r += n_hit / len(rel)
        ideal = discounts[: min(len(rel), k)].sum()
        ndcg += (discounts[: hits.size] * hits).sum() / ideal
        precision_at = np.cumsum(hits) / np.arange(1, hits.size + 1)
        ap += (precision_at * hits).sum() / min(len(rel), k)
    n = max(len(relevant), 1)
    return {
        "precision": round(float(p) / n, 4),
        "recall": round(float(r) / n, 4),
        "ndcg": round(float(ndcg) / n, 4),
        "map": round(float(ap) / n, 4),
    }


def evaluate(
    models: Mapping[str, Model],
    users: np.ndarray,
    relevant: Sequence[set[int]],
    exclude: sp.csr_matrix,
    k: int = 10,
    batch: int = 2048,
) -> list[dict[str, Any]]:
    """One row per model: P@K, R@K, NDCG@K, MAP@K and catalog coverage.

    ``users`` are row indices of the training matrix, ``relevant`` their
    held-out item indices, ``exclude`` the items (per training row) never to
    recommend under the protocol.
    """
    table = []
    for name, model in models.items():
        ranked = []
        for start in range(0, len(users), batch):
            part = users[start : start + batch]
            ranked.append(top_k(model.scores(part), k, exclude[part]))
        top = np.vstack(ranked) if ranked else np.zeros((0, k), dtype=np.int64)
        row: dict[str, Any] = {"model": name, "users": len(users), "k": k}
        row.update(ranking_metrics(top, relevant, k))
        row["coverage"] = round(np.unique(top).size / exclude.shape[1], 4)
        table.append(row)
    return table
