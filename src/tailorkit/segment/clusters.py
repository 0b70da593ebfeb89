"""Segments nobody defined: clustering of profile features, personas, stable ids, drift.

The pipeline is a pure core (numpy/pandas in, plain values out):

1. :class:`Preprocessor` — chosen feature columns, ``log1p`` on heavy-tailed
   ones (counts, money), missing values filled with the training median, then
   standardized (z-scores). Stored with the model so that scoring applies
   exactly the same transformation.
2. :func:`fit_clusters` — k-means with k chosen over a range by silhouette
   (the elbow of the inertia curve is reported beside it), Ward hierarchical
   clustering, HDBSCAN or DBSCAN (noise kept as its own group, id ``-1``).
   Ward and the density methods are quadratic or worse in memory, so they fit
   on a sample (``max_fit_samples``) and the other persons are assigned to
   the nearest centroid (Ward) or by a distance-weighted 5-nearest-neighbour
   vote over the fitted sample (density methods, so noise stays noise).
3. :func:`describe_personas` — per cluster: size, the features that
   distinguish it (standardized difference of the cluster mean from the
   population mean, in population standard deviations), typical (median)
   values and a readable generated name such as "high-frequency, low-price
   mobile buyers".
4. :func:`align_ids` — on retraining, new centroids are matched to the
   previous model's (Hungarian algorithm on centroid distances in the old
   model's standardized space), so cluster 3 stays cluster 3; clusters that
   moved further than ``max_distance`` get fresh ids. :func:`drift_report`
   tells how far each cluster moved, how its share changed and how each input
   feature's distribution shifted (population stability index).

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> frame = pd.DataFrame({"sessions": np.r_[rng.poisson(2, 200), rng.poisson(20, 200)],
...                       "mobile_share": np.r_[rng.uniform(0, .2, 200), rng.uniform(.8, 1, 200)]})
>>> model = fit_clusters(frame, ClusterConfig(features=("sessions", "mobile_share"),
...                                           log=("sessions",), k_range=(2, 4)))
>>> model.k, sorted(p.size for p in model.personas)
(2, [200, 200])
>>> sorted(p.name for p in model.personas)
['high-frequency mobile shoppers', 'occasional desktop shoppers']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import DBSCAN, HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.metrics import silhouette_score
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from tailorkit.learn.runtime import single_pool

METHODS = ("kmeans", "ward", "hdbscan", "dbscan")
NOISE = -1
#: The generator author's features: activity counts, money, price level, device, search.
DEFAULT_FEATURES = (
    "sessions",
    "product_views",
    "cart_adds",
    "purchases",
    "revenue",
    "avg_view_price",
    "mobile_share",
    "search_share",
)
DEFAULT_LOG = ("sessions", "product_views", "cart_adds", "purchases", "revenue", "avg_view_price")
#: How persona names describe a feature that is low / high in a cluster.
WORDS: dict[str, tuple[str, str]] = {
    "sessions": ("occasional", "high-frequency"),
    "active_days": ("occasional", "regular"),
    "events": ("light", "heavy"),
    "product_views": ("light-browsing", "heavy-browsing"),
    "views_per_session": ("quick-look", "deep-browsing"),
    "events_per_session": ("short-visit", "long-visit"),
    "cart_adds": ("few-cart", "cart-filling"),
    "cart_adds_per_session": ("few-cart", "cart-filling"),
    "revenue": ("low-spend", "high-spend"),
    "avg_view_price": ("low-price", "premium"),
    "search_share": ("non-searching", "search-driven"),
    "searches_per_session": ("non-searching", "search-driven"),
    "searches": ("non-searching", "search-driven"),
    "weekend_share": ("weekday", "weekend"),
    "days_since_last": ("recently active", "lapsing"),
    "categories_viewed": ("focused", "exploring"),
}
DEVICE_FEATURE = "mobile_share"
BUYING_FEATURES = ("purchases", "purchases_per_session")
NOTABLE = 0.5  # standardized difference that makes a feature worth naming


# -- preprocessing ---------------------------------------------------------------------


@dataclass
class Preprocessor:
    """Fitted feature transformation: select, log1p, fill medians, standardize."""

    columns: list[str]
    log: list[str]
    fill: list[float]
    mean: list[float]
    scale: list[float]
    #: deciles of each logged column at fit time and the share of rows per bin (PSI)
    bins: list[list[float]] = field(default_factory=list)
    bin_shares: list[list[float]] = field(default_factory=list)

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: Sequence[str], log: Sequence[str]) -> Preprocessor:
        """Learn medians, means, standard deviations and deciles from ``frame``."""
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise KeyError(f"feature columns not in the data: {missing}")
        raw = frame[list(columns)].astype("float64")
        fill = raw.median().fillna(0.0)
        logged = _log(raw.fillna(fill), log)
        std = logged.std(ddof=0).replace(0.0, 1.0)
        bins = [np.unique(np.quantile(logged[c], np.linspace(0.1, 0.9, 9))) for c in columns]
        shares = [_shares(b, logged[c].to_numpy()) for b, c in zip(bins, columns, strict=True)]
        return cls(
            list(columns),
            [c for c in columns if c in log],
            fill.tolist(),
            logged.mean().tolist(),
            std.tolist(),
            [b.tolist() for b in bins],
            [s.tolist() for s in shares],
        )

    def logged(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Selected columns with medians filled and ``log1p`` applied (not yet scaled)."""
        raw = frame[self.columns].astype("float64")
        return _log(raw.fillna(dict(zip(self.columns, self.fill, strict=True))), self.log)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Standardized matrix (rows in ``frame`` order)."""
        return self.scale_logged(self.logged(frame).to_numpy())

    def scale_logged(self, values: np.ndarray) -> np.ndarray:
        """Standardize already logged values (e.g. centroids)."""
        return (values - np.asarray(self.mean)) / np.asarray(self.scale)


def _shares(edges: np.ndarray | Sequence[float], values: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each bin cut at ``edges`` (``len(edges) + 1`` bins)."""
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return np.asarray(counts / max(len(values), 1), dtype=float)


def _log(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    out = frame.copy()
    for c in columns:
        # log1p of negative values is undefined; features logged here are counts/money
        out[c] = np.log1p(out[c].clip(lower=0.0))
    return out


# -- models --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterConfig:
    """What to cluster and how (defaults: the demo shop's behavioural features, k-means)."""

    features: tuple[str, ...] = DEFAULT_FEATURES
    log: tuple[str, ...] = DEFAULT_LOG
    method: str = "kmeans"
    k_range: tuple[int, int] = (2, 10)  # inclusive, k-means: chosen by silhouette
    k: int | None = None  # fixed k (k-means, Ward); Ward defaults to k-means' choice
    min_cluster_size: int = 0  # HDBSCAN; 0 = 1% of the fitted persons, at least 10
    eps: float | None = None  # DBSCAN; None = the 90th percentile of k-distances
    min_samples: int = 10  # DBSCAN/HDBSCAN core points
    max_fit_samples: int = 10_000  # Ward / HDBSCAN / DBSCAN fit on at most this many
    max_selection_samples: int = 20_000  # k selection runs on a sample of this size
    max_distance: float = 1.5  # alignment: farther (in std units) = a new cluster
    random_state: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")
        if self.k_range[0] < 2 or self.k_range[1] < self.k_range[0]:
            raise ValueError(f"k_range must be (low >= 2, high >= low), not {self.k_range}")


@dataclass
class Persona:
    """A cluster described for people: who they are and how many."""

    id: int
    name: str
    size: int
    share: float
    #: feature -> standardized difference from the population (largest |d| first)
    distinguishing: dict[str, float]
    #: feature -> median raw value in the cluster
    typical: dict[str, float]


@dataclass
class ClusterModel:
    """A fitted, serializable clustering: assigns persons to stable cluster ids."""

    method: str
    preprocessor: Preprocessor
    ids: list[int]  # stable id of each centroid row
    centroids: list[list[float]]  # per cluster, in logged (unscaled) feature space
    personas: list[Persona]
    selection: dict[str, Any] = field(default_factory=dict)
    #: density methods: a labelled sample for neighbour votes (standardized rows, ids)
    sample: list[list[float]] = field(default_factory=list)
    sample_ids: list[int] = field(default_factory=list)
    alignment: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        """Number of clusters (noise not counted)."""
        return len(self.ids)

    @single_pool
    def assign(self, frame: pd.DataFrame) -> np.ndarray:
        """Stable cluster id of every row of ``frame`` (``-1``: noise)."""
        z = self.preprocessor.transform(frame)
        if self.sample:
            # distance weights: a fitted point (distance 0) keeps its own label
            vote = KNeighborsClassifier(n_neighbors=min(5, len(self.sample)), weights="distance")
            vote.fit(np.asarray(self.sample), np.asarray(self.sample_ids))
            return np.asarray(vote.predict(z), dtype=np.int64)
        centres = self.preprocessor.scale_logged(np.asarray(self.centroids))
        return np.asarray(self.ids, dtype=np.int64)[_nearest(z, centres)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ClusterModel:
        """Rebuild a model saved with :meth:`to_dict`."""
        data = dict(doc)
        data["preprocessor"] = Preprocessor(**data["preprocessor"])
        data["personas"] = [Persona(**p) for p in data["personas"]]
        return cls(**data)

    def segments(self, feature: str = "cluster") -> dict[str, dict[str, Any]]:
        """``segments.yaml`` entries, one per cluster, over the cluster-id profile score.

        ``feature`` is the profile feature declared as ``{model_score: cluster}``
        (see :meth:`segments_document`).
        """
        out: dict[str, dict[str, Any]] = {}
        for p in self.personas:
            slug = "noise" if p.id == NOISE else f"{p.id}"
            out[f"persona_{slug}"] = {
                "description": f"{p.name} ({p.share:.0%} of profiles, {self.method})",
                "condition": {feature: p.id},
            }
        return out

    def segments_document(self, feature: str = "cluster") -> dict[str, Any]:
        """A ``segments.yaml`` fragment: the cluster-id feature and one segment per persona.

        Merged into a project's ``segments.yaml``, the personas become segments
        like any other (targeting, placements, experiment breakdowns); ids stay
        stable across retraining, so the file does not need to change with it.

        >>> import pandas as pd
        >>> frame = pd.DataFrame({"sessions": [1, 2, 1, 30, 31, 29]})
        >>> model = fit_clusters(frame, ClusterConfig(features=("sessions",), log=(), k=2))
        >>> doc = model.segments_document("persona")
        >>> doc["features"], sorted(doc["segments"])
        ({'persona': {'model_score': 'cluster'}}, ['persona_0', 'persona_1'])
        """
        return {
            "features": {feature: {"model_score": "cluster"}},
            "segments": self.segments(feature),
        }


def _nearest(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre of every row (squared Euclidean)."""
    d = (z**2).sum(1)[:, None] - 2 * z @ centres.T + (centres**2).sum(1)[None, :]
    return np.asarray(d.argmin(axis=1))


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def elbow(ks: Sequence[int], inertia: Sequence[float]) -> int:
    """The k farthest below the chord from the first to the last point (kneedle).

    >>> elbow([1, 2, 3, 4, 5, 6], [100, 40, 15, 12, 10, 9])
    3
    """
    x = np.asarray(ks, dtype=float)
    y = np.asarray(inertia, dtype=float)
    if x.size < 3:
        return int(x[0])
    xn = (x - x[0]) / (x[-1] - x[0])
    yn = (y - y[-1]) / max(y[0] - y[-1], 1e-12)
    # distance of each point below the chord from (0, 1) to (1, 0)
    return int(x[np.argmax((1 - xn) - yn)])


def choose_k(z: np.ndarray, config: ClusterConfig) -> dict[str, Any]:
    """Inertia and silhouette for each k in ``config.k_range``; best by silhouette.

    Runs on a sample of ``max_selection_samples`` rows; silhouette on at most 5,000.
    """
    rows = z[_sample(len(z), config.max_selection_samples, config.random_state)]
    low, high = config.k_range
    high = min(high, len(rows) - 1)
    curve: list[dict[str, Any]] = []
    for k in range(low, high + 1):
        km = KMeans(k, n_init=4, random_state=config.random_state).fit(rows)
        sil = silhouette_score(
            rows, km.labels_, sample_size=min(len(rows), 5_000), random_state=config.random_state
        )
        curve.append({"k": k, "inertia": float(km.inertia_), "silhouette": float(sil)})
    best = max(curve, key=lambda c: c["silhouette"])
    return {
        "curve": curve,
        "best_k": int(best["k"]),
        "elbow_k": elbow([int(c["k"]) for c in curve], [c["inertia"] for c in curve]),
        "rows": len(rows),
    }


def _fit_labels(z: np.ndarray, config: ClusterConfig, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels of the fitted rows, and which rows were fitted (all, or a sample)."""
    if config.method == "kmeans":
        km = KMeans(k, n_init=10, random_state=config.random_state).fit(z)
        return km.labels_.astype(np.int64), np.arange(len(z))
    rows = _sample(len(z), config.max_fit_samples, config.random_state)
    fit = z[rows]
    if config.method == "ward":
        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(fit)
    elif config.method == "hdbscan":
        size = config.min_cluster_size or max(10, len(fit) // 100)
        labels = HDBSCAN(min_cluster_size=size, min_samples=config.min_samples, copy=True)
        labels = labels.fit_predict(fit)
    else:
        eps = config.eps or _k_distance_eps(fit, config.min_samples)
        labels = DBSCAN(eps=eps, min_samples=config.min_samples).fit_predict(fit)
    return np.asarray(labels, dtype=np.int64), rows


def _k_distance_eps(z: np.ndarray, k: int) -> float:
    """DBSCAN radius: 90th percentile of each point's distance to its k-th neighbour."""
    dist, _ = NearestNeighbors(n_neighbors=min(k, len(z))).fit(z).kneighbors(z)
    return float(np.quantile(dist[:, -1], 0.9))


@single_pool
def fit_clusters(
    frame: pd.DataFrame, config: ClusterConfig | None = None, previous: ClusterModel | None = None
) -> ClusterModel:
    """Fit a clustering of the rows of ``frame`` (one per person) and describe it.

    With ``previous``, cluster ids are aligned to it (:func:`align_ids`) and
    ``model.alignment`` holds the matching and the drift report.
    """
    config = config or ClusterConfig()
    if len(frame) < 3:
        raise ValueError(f"need at least 3 persons to cluster, got {len(frame)}")
    prep = Preprocessor.fit(frame, config.features, config.log)
    z = prep.transform(frame)
    selection: dict[str, Any] = {}
    k = config.k or 0
    if config.method in ("kmeans", "ward") and not k:
        selection = choose_k(z, config)
        k = selection["best_k"]
    labels, rows = _fit_labels(z, config, k)
    model = _model(config, prep, frame, z, labels, rows)
    model.selection = {"k": model.k, **selection}
    if previous is not None:
        mapping = align_ids(previous, model, config.max_distance)
        relabel(model, mapping)
        drift = drift_report(previous, model, frame)
        retired = set(previous.alignment.get("retired", [])) | set(drift["retired"])
        model.alignment = {
            "mapping": {str(k): v for k, v in mapping.items()},
            "drift": drift,
            # every id ever retired, so that none is given to a different group later
            "retired": sorted(retired - set(model.ids)),
        }
    return model


def _model(
    config: ClusterConfig,
    prep: Preprocessor,
    frame: pd.DataFrame,
    z: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
) -> ClusterModel:
    """Centroids from the fitted rows, every row assigned, personas described."""
    logged = prep.logged(frame).to_numpy()
    ids = sorted(int(c) for c in np.unique(labels) if c != NOISE)
    centroids = [logged[rows][labels == c].mean(axis=0).tolist() for c in ids]
    model = ClusterModel(config.method, prep, ids, centroids, [])
    if config.method in ("hdbscan", "dbscan"):
        model.sample = z[rows].tolist()
        model.sample_ids = labels.tolist()
    everyone = labels if len(rows) == len(z) else model.assign(frame)
    model.personas = describe_personas(frame, z, everyone, prep.columns)
    return model


# -- personas ------------------------------------------------------------------------


def describe_personas(
    frame: pd.DataFrame, z: np.ndarray, labels: np.ndarray, columns: Sequence[str]
) -> list[Persona]:
    """Size, distinguishing features, typical values and a name for every cluster.

    ``z`` is the standardized matrix, so a cluster's mean row *is* its
    standardized difference from the population.
    """
    personas = []
    n = len(labels)
    for cid in sorted(int(c) for c in np.unique(labels)):
        members = labels == cid
        diff = z[members].mean(axis=0)
        order = np.argsort(-np.abs(diff))
        distinguishing = {columns[i]: round(float(diff[i]), 3) for i in order}
        typical = frame.loc[members, list(columns)].median().round(3).to_dict()
        name = "unclustered (noise)" if cid == NOISE else persona_name(distinguishing)
        size = int(members.sum())
        values = {str(k): float(v) for k, v in typical.items()}
        personas.append(Persona(cid, name, size, round(size / n, 4), distinguishing, values))
    _make_unique([p for p in personas if p.id != NOISE])
    return personas


def persona_name(diffs: Mapping[str, float], notable: float = NOTABLE) -> str:
    """A readable name from standardized differences (largest first).

    >>> persona_name({"sessions": 1.2, "avg_view_price": -0.9, "mobile_share": 1.5,
    ...               "purchases": 0.8})
    'high-frequency, low-price mobile buyers'
    >>> persona_name({"sessions": 0.1})
    'typical shoppers'
    """
    noun = "shoppers"
    buying = [diffs[f] for f in BUYING_FEATURES if f in diffs]
    if buying and max(buying, key=abs) >= notable:
        noun = "buyers"
    elif buying and max(buying, key=abs) <= -notable:
        noun = "browsers"
    device = diffs.get(DEVICE_FEATURE, 0.0)
    if abs(device) >= notable:
        noun = f"{'mobile' if device > 0 else 'desktop'} {noun}"
    words = []
    for feature, d in diffs.items():
        if feature in BUYING_FEATURES or feature == DEVICE_FEATURE or abs(d) < notable:
            continue
        low, high = WORDS.get(feature, (f"low-{feature}", f"high-{feature}"))
        word = high if d > 0 else low
        if word not in words:
            words.append(word)
    if not words and noun == "shoppers":
        return "typical shoppers"
    return ", ".join(words[:2]) + (" " if words else "") + noun


def _make_unique(personas: list[Persona]) -> None:
    """Lengthen clashing names with the next distinguishing word, else number them."""
    seen: dict[str, int] = {}
    for p in personas:
        if p.name in seen:
            longer = _longer_name(p.distinguishing)
            p.name = longer if longer not in seen else f"{p.name} ({p.id})"
        seen[p.name] = seen.get(p.name, 0) + 1


def _longer_name(diffs: Mapping[str, float]) -> str:
    name = persona_name(diffs)
    extra = [
        WORDS.get(f, (f"low-{f}", f"high-{f}"))[int(d > 0)]
        for f, d in diffs.items()
        if f not in BUYING_FEATURES and f != DEVICE_FEATURE and abs(d) >= NOTABLE / 2
    ]
    third = [w for w in extra if w not in name]
    return f"{third[0]}, {name}" if third else name


# -- stable ids and drift ------------------------------------------------------------


def align_ids(old: ClusterModel, new: ClusterModel, max_distance: float) -> dict[int, int]:
    """Map each new cluster id to the old id it continues (Hungarian matching).

    Distances are between centroids in the *old* model's standardized space.
    A match farther than ``max_distance`` is refused; unmatched new clusters
    get fresh ids above every old one, so an id is never reused for a
    different group. Noise stays ``-1``.
    """
    mapping: dict[int, int] = {NOISE: NOISE}
    if not new.ids:
        return mapping
    fresh = max([*old.ids, *old.alignment.get("retired", []), -1]) + 1
    if old.ids:
        cost = _centroid_distances(old, new)
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            if cost[r, c] <= max_distance:
                mapping[new.ids[c]] = old.ids[r]
    for cid in new.ids:
        if cid not in mapping:
            mapping[cid] = fresh
            fresh += 1
    return mapping


def _centroid_distances(old: ClusterModel, new: ClusterModel) -> np.ndarray:
    """Old × new centroid distances, in the old model's standardized units."""
    if old.preprocessor.columns != new.preprocessor.columns:
        raise ValueError("cannot align clusterings of different features")
    a = old.preprocessor.scale_logged(np.asarray(old.centroids))
    b = old.preprocessor.scale_logged(np.asarray(new.centroids))
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))


def relabel(model: ClusterModel, mapping: Mapping[int, int]) -> None:
    """Rename cluster ids in place (centroid rows, samples, personas)."""
    model.ids = [mapping[c] for c in model.ids]
    model.sample_ids = [mapping[c] for c in model.sample_ids]
    for p in model.personas:
        p.id = mapping[p.id]
    order = np.argsort(model.ids)
    model.ids = [model.ids[i] for i in order]
    model.centroids = [model.centroids[i] for i in order]
    model.personas.sort(key=lambda p: p.id)


def psi(edges: Sequence[float], old_share: Sequence[float], values: np.ndarray) -> float:
    """Population stability index of ``values`` against bins and shares fitted earlier.

    >>> psi([0.0], [0.5, 0.5], np.array([-1.0, 1.0]))
    0.0
    """
    new_share = np.clip(_shares(edges, values), 1e-4, None)
    old = np.clip(np.asarray(old_share, dtype=float), 1e-4, None)
    return float(((new_share - old) * np.log(new_share / old)).sum())


def drift_report(old: ClusterModel, new: ClusterModel, frame: pd.DataFrame) -> dict[str, Any]:
    """How the clusters and the population moved since ``old`` (ids already aligned).

    ``clusters``: per id, centroid shift in old standard deviations and the
    share before/after; ``appeared``/``retired`` ids; ``features``: PSI of
    each input against the old deciles (> 0.25 is usually read as a shift).
    """
    old_share = {p.id: p.share for p in old.personas}
    new_share = {p.id: p.share for p in new.personas}
    old_c = dict(
        zip(old.ids, old.preprocessor.scale_logged(np.asarray(old.centroids)), strict=True)
    )
    new_c = dict(
        zip(new.ids, old.preprocessor.scale_logged(np.asarray(new.centroids)), strict=True)
    )
    clusters = {}
    for cid in sorted(set(old_share) | set(new_share)):
        entry: dict[str, Any] = {
            "share_before": old_share.get(cid),
            "share_after": new_share.get(cid),
        }
        if cid in old_c and cid in new_c:
            entry["centroid_shift"] = round(float(np.linalg.norm(old_c[cid] - new_c[cid])), 4)
        clusters[str(cid)] = entry
    logged = old.preprocessor.logged(frame)
    features = {}
    prep = old.preprocessor
    for column, edges, shares in zip(prep.columns, prep.bins, prep.bin_shares, strict=True):
        features[column] = round(psi(edges, shares, logged[column].to_numpy()), 4)
    return {
        "clusters": clusters,
        "appeared": sorted(set(new.ids) - set(old.ids)),
        "retired": sorted(set(old.ids) - set(new.ids)),
        "features_psi": features,
        "max_psi": max(features.values(), default=0.0),
    }


def agreement(labels: Iterable[Any], truth: Iterable[Any]) -> float:
    """Adjusted Rand index between cluster labels and known groups (1 = identical).

    >>> agreement([0, 0, 1, 1], ["a", "a", "b", "b"])
    1.0
    """
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(list(truth), list(labels)))


def transitions(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, Any]:
    """Persons in both assignments: how many stayed in their cluster, and the moves."""
    common = [p for p in before if p in after]
    moves: dict[str, int] = {}
    stayed = 0
    for person in common:
        a, b = before[person], after[person]
        stayed += a == b
        if a != b:
            key = f"{a}->{b}"
            moves[key] = moves.get(key, 0) + 1
    top = dict(sorted(moves.items(), key=lambda kv: -kv[1])[:10])
    share = stayed / len(common) if common else math.nan
    return {"persons": len(common), "stayed_share": round(share, 4), "top_moves": top}
