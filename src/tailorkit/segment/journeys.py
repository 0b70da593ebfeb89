"""Journeys: frequent paths (PrefixSpan), funnels per segment, the next step after a path.

Input is a list of sequences — usually one per session, the ordered steps a
visitor took (event types, optionally with the product category; see
:func:`tailorkit.learn.data.session_steps`). :func:`encode` turns them into a
:class:`SequenceDB`:

* identical sequences are stored once with a weight (sessions repeat a lot:
  on the demo shop a few thousand distinct step sequences cover hundreds of
  thousands of sessions), so every count below is a weighted count;
* all sequences sit end to end in one array, each followed by a sentinel
  row, and ``next_at[g, a]`` is the position of the first ``a`` at or after
  position ``g`` in the same sequence (``-1``: none).

With that table, projecting a database on an item is one vectorized gather:
PrefixSpan's pseudo-projection keeps, per sequence containing the prefix, the
position just after the prefix's earliest match, and the support of every
extension ``a`` is ``weights @ (next_at[positions, a] >= 0)``. Funnels walk
the same table step by step for all sequences at once.

Support is the number of sequences containing the pattern as a subsequence
(items in order, gaps allowed), as in the reference PrefixSpan and the
``prefixspan`` package.

>>> db = encode([["home", "view", "cart", "buy"], ["home", "view"], ["view", "cart"]])
>>> [(p.support, p.steps) for p in prefixspan(db, min_support=2, max_length=2)]
[(3, ('view',)), (2, ('cart',)), (2, ('home',)), (2, ('home', 'view')), (2, ('view', 'cart'))]
>>> funnel(db, ["view", "cart", "buy"])["all"][1]["conversion"]
0.6667
>>> next_steps(db, ["home", "view"])[0]
{'step': '(exit)', 'count': 1, 'share': 0.5}
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

EXIT = "(exit)"
ALL = "all"


@dataclass(frozen=True)
class Pattern:
    """A frequent sequential pattern and the (weighted) number of sequences containing it."""

    support: int
    steps: tuple[Hashable, ...]

    def to_dict(self, total: int) -> dict[str, Any]:
        """JSON form with the share of all sequences."""
        return {
            "steps": list(self.steps),
            "support": self.support,
            "share": round(self.support / total, 4) if total else 0.0,
        }


@dataclass
class SequenceDB:
    """Distinct sequences end to end, with weights, groups and the next-occurrence table."""

    items: list[Hashable]  # code -> item
    codes: np.ndarray  # (R,) item code per position, -1 at each sequence's sentinel
    starts: np.ndarray  # (S,) first position of each distinct sequence
    weights: np.ndarray  # (S,) how many input sequences it stands for
    groups: np.ndarray  # (S,) group code
    group_names: list[Hashable]
    next_at: np.ndarray  # (R, A) next position of item a at or after g, -1 if none
    total: int  # input sequences

    def code(self, item: Hashable) -> int:
        """Code of ``item`` (-2 when it never occurs, which matches nothing)."""
        try:
            return self.items.index(item)
        except ValueError:
            return -2


def collapse_repeats(steps: Sequence[Hashable]) -> list[Hashable]:
    """Drop immediate repetitions: ``view, view, cart`` -> ``view, cart``.

    >>> collapse_repeats(["a", "a", "b", "a"])
    ['a', 'b', 'a']
    """
    out: list[Hashable] = []
    for s in steps:
        if not out or out[-1] != s:
            out.append(s)
    return out


def encode(
    sequences: Iterable[Sequence[Hashable]],
    groups: Iterable[Hashable] | None = None,
    weights: Iterable[int] | None = None,
) -> SequenceDB:
    """Build a :class:`SequenceDB`; ``groups`` (e.g. segment or cluster per sequence) optional."""
    seqs = [tuple(s) for s in sequences]
    group_list = list(groups) if groups is not None else [ALL] * len(seqs)
    weight_list = list(weights) if weights is not None else [1] * len(seqs)
    if not len(seqs) == len(group_list) == len(weight_list):
        raise ValueError("sequences, groups and weights must have the same length")
    merged: dict[tuple[tuple[Hashable, ...], Hashable], int] = {}
    for seq, group, w in zip(seqs, group_list, weight_list, strict=True):
        key = (seq, group)
        merged[key] = merged.get(key, 0) + int(w)
    vocab: dict[Hashable, int] = {}
    group_codes: dict[Hashable, int] = {}
    for (seq, group), _ in merged.items():
        for item in seq:
            vocab.setdefault(item, len(vocab))
        group_codes.setdefault(group, len(group_codes))
    lengths = np.fromiter((len(s) + 1 for s, _ in merged), dtype=np.int64, count=len(merged))
    starts = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
    codes = np.full(int(lengths.sum()), -1, dtype=np.int32)
    for start, (seq, _) in zip(starts, merged, strict=True):
        codes[start : start + len(seq)] = [vocab[i] for i in seq]
    return SequenceDB(
        items=list(vocab),
        codes=codes,
        starts=starts,
        weights=np.fromiter(merged.values(), dtype=np.int64, count=len(merged)),
        groups=np.fromiter((group_codes[g] for _, g in merged), dtype=np.int64, count=len(merged)),
        group_names=list(group_codes),
        next_at=_next_table(codes, starts, lengths, len(vocab)),
        total=int(sum(merged.values())),
    )


def _next_table(codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray, n: int) -> np.ndarray:
    """``next_at[g, a]``: first position >= g of item ``a`` within g's sequence, else -1."""
    size = codes.size
    positions = np.arange(size, dtype=np.int64)
    # each position's sentinel (end of its sequence); a next occurrence past it is foreign
    end = np.repeat(starts + lengths - 1, lengths)
    table = np.full((size, n), -1, dtype=np.int32 if size < 2**31 else np.int64)
    for a in range(n):
        hit = np.where(codes == a, positions, size)
        nxt = np.minimum.accumulate(hit[::-1])[::-1]  # next hit at or after g, globally
        table[:, a] = np.where(nxt < end, nxt, -1)
    return table


def _threshold(min_support: float, total: int) -> int:
    """Absolute support from a count (>= 1) or a share of all sequences (< 1)."""
    if min_support <= 0:
        raise ValueError("min_support must be positive")
    if min_support < 1:
        return max(1, math.ceil(min_support * total))
    return math.ceil(min_support)


def prefixspan(
    db: SequenceDB,
    min_support: float,
    max_length: int = 10,
    top_k: int | None = None,
    min_length: int = 1,
) -> list[Pattern]:
    """Frequent sequential patterns: support >= ``min_support``, length in [min, max].

    ``min_support`` is a count, or a share of sequences when below 1. With
    ``top_k``, only the ``top_k`` most frequent patterns (of at least
    ``min_support``) are kept, and the support threshold rises as better
    patterns are found (support never grows with the pattern, so whole
    branches are skipped). Ties at the k-th place keep the pattern found
    first. Results are sorted by support (descending), then pattern.
    """
    miner = _Miner(db, _threshold(min_support, db.total), max_length, top_k, min_length)
    start = db.starts.copy()
    miner.grow((), start, db.weights)
    found = [Pattern(s, tuple(db.items[c] for c in p)) for s, _, p in miner.results()]
    return sorted(found, key=lambda p: (-p.support, [str(s) for s in p.steps]))


class _Miner:
    """Depth-first PrefixSpan over a :class:`SequenceDB` with pseudo-projection."""

    def __init__(
        self, db: SequenceDB, min_support: int, max_length: int, top_k: int | None, min_length: int
    ) -> None:
        self.db = db
        self.min_support = min_support
        self.max_length = max_length
        self.top_k = top_k
        self.min_length = min_length
        self.found: list[tuple[int, int, tuple[int, ...]]] = []  # (support, -order, codes)
        self.order = 0

    def bar(self) -> int:
        """Lowest support still worth exploring."""
        if self.top_k is not None and len(self.found) >= self.top_k:
            return max(self.min_support, self.found[0][0] + 1)
        return self.min_support

    def keep(self, support: int, pattern: tuple[int, ...]) -> None:
        self.order += 1
        entry = (support, -self.order, pattern)
        if self.top_k is None:
            self.found.append(entry)
        elif len(self.found) < self.top_k:
            heapq.heappush(self.found, entry)
        elif support > self.found[0][0]:
            heapq.heapreplace(self.found, entry)

    def grow(self, prefix: tuple[int, ...], positions: np.ndarray, weights: np.ndarray) -> None:
        nxt = self.db.next_at[positions]  # (m, A): where each extension first occurs
        present = nxt >= 0
        support = weights @ present
        # best first: in top-k mode the threshold rises fastest this way
        for a in np.argsort(-support, kind="stable"):
            s = int(support[a])
            if s < self.bar():
                break
            pattern = (*prefix, int(a))
            if len(pattern) >= self.min_length:
                self.keep(s, pattern)
            if len(pattern) < self.max_length:
                rows = present[:, a]
                self.grow(pattern, nxt[rows, a] + 1, weights[rows])

    def results(self) -> list[tuple[int, int, tuple[int, ...]]]:
        return self.found


def funnel(db: SequenceDB, steps: Sequence[Hashable]) -> dict[str, list[dict[str, Any]]]:
    """Ordered funnel per group: sequences reaching each step (in order, gaps allowed).

    For each group (and ``"all"``): per step, ``count``, ``conversion`` from
    the previous step, ``from_start`` (from the first step) and ``drop_off``
    (share of the previous step's sequences lost here).
    """
    if not steps:
        raise ValueError("a funnel needs at least one step")
    reached = np.zeros((len(steps), db.starts.size), dtype=bool)
    pos = db.starts.copy()
    alive = np.ones(db.starts.size, dtype=bool)
    for i, step in enumerate(steps):
        code = db.code(step)
        if code < 0:
            alive[:] = False
        else:
            hit = db.next_at[pos, code]
            alive &= hit >= 0
            pos = np.where(alive, hit + 1, pos)
        reached[i] = alive
    out: dict[str, list[dict[str, Any]]] = {}
    names = [ALL] if db.group_names == [ALL] else [ALL, *db.group_names]
    for name in names:
        members = np.ones_like(alive) if name == ALL else db.groups == db.group_names.index(name)
        counts = [int(db.weights[members & r].sum()) for r in reached]
        out[str(name)] = _funnel_rows(steps, counts)
    return out


def _funnel_rows(steps: Sequence[Hashable], counts: list[int]) -> list[dict[str, Any]]:
    rows = []
    for i, (step, n) in enumerate(zip(steps, counts, strict=True)):
        before = counts[i - 1] if i else n
        conversion = n / before if before else 0.0
        rows.append(
            {
                "step": step,
                "count": n,
                "conversion": round(conversion, 4),
                "from_start": round(n / counts[0], 4) if counts[0] else 0.0,
                "drop_off": round(1 - conversion, 4) if i else 0.0,
            }
        )
    return rows


def next_steps(db: SequenceDB, path: Sequence[Hashable], top: int = 5) -> list[dict[str, Any]]:
    """The most common steps right after ``path`` (consecutive steps), ``(exit)`` if it ends.

    Every occurrence counts (a path seen twice in a session counts twice).
    """
    codes = [db.code(s) for s in path]
    if not codes or min(codes) < 0:
        return []
    weight_at = np.repeat(db.weights, np.diff(np.r_[db.starts, db.codes.size]))
    n = db.codes.size - len(codes)
    match = db.codes[:n] == codes[0]
    for i, c in enumerate(codes[1:], start=1):
        match &= db.codes[i : i + n] == c
    where = np.flatnonzero(match)
    following = db.codes[where + len(codes)]  # sentinel (-1) when the sequence ends there
    counts = np.bincount(following + 1, weights=weight_at[where], minlength=len(db.items) + 1)
    total = counts.sum()
    order = np.argsort(-counts, kind="stable")[:top]
    return [
        {
            "step": EXIT if c == 0 else db.items[c - 1],
            "count": int(counts[c]),
            "share": round(float(counts[c] / total), 4),
        }
        for c in order
        if counts[c] > 0
    ]
