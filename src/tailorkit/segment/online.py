"""Online executor: profiles and segment memberships updated on every stored event.

Hook :meth:`SegmentEngine.on_stored` into the collector
(``Collector(..., on_stored=engine.on_stored)``). For each committed batch
(in timestamp order) the engine

1. resolves the person (user id, else the user an anonymous id was merged
   into, else the anonymous id) and merges an anonymous profile into the user
   on ``identify``/``alias``;
2. updates that person's features incrementally (:mod:`tailorkit.profile.online`);
3. re-evaluates only the segments whose inputs the event changed (plus the
   other members of their exclusive groups);
4. reports membership changes as :class:`Change` s, which become
   ``segment_entered``/``segment_exited`` events and webhook deliveries.

The clock is the latest event time seen (but never more than five minutes
ahead of the wall clock), or the wall clock when :meth:`advance_to` is called
with it (the server's sweep does that every few seconds). Every profile whose
windows or recency thresholds will change its segments is on a timer wheel
at the minute of the next possible change (never later; each profile keeps
one timer per window and recency threshold, see :meth:`SegmentEngine._timer_step`);
the sweep (and any event of that person) evaluates those minutes in order, so
exits carry the minute the window moved, whenever the sweep runs.

Persons are profiled only while their latest event has personalization
consent, their events carry no bot user agent and the batch quality job has
not flagged them (:meth:`set_flagged`); otherwise they are in no segment.

>>> from tailorkit.segment.definitions import parse_definitions
>>> import pyarrow as pa
>>> from datetime import datetime, UTC
>>> engine = SegmentEngine(parse_definitions({
...     "features": {"views_24h": {"count": {"events": ["page_view"], "window": "24h"}}},
...     "segments": {"active": {"condition": {"views_24h": {"$gte": 1}}}}}))
>>> changes = engine.process(events_table([{"event_id": "e1", "type": "page_view",
...     "user_id": "u1", "timestamp": datetime(2024, 5, 1, 10, 0, tzinfo=UTC)}]))
>>> [(c.person, c.segment, c.kind) for c in changes]
[('u1', 'active', 'segment_entered')]
>>> [c.kind for c in engine.advance_to(datetime(2024, 5, 2, 10, 0, tzinfo=UTC))]
['segment_exited']
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tailorkit.collect.quality import BOT_PATTERN
from tailorkit.evaluate.conditions import compile_condition
from tailorkit.profile.definitions import (
    SYSTEM_EVENT_TYPES,
    Aggregate,
    Recency,
    Score,
    Trait,
)
from tailorkit.profile.generated import condition_source, define
from tailorkit.profile.online import Profile, ProfilePlan, merge_profiles
from tailorkit.profile.windows import MINUTE_US, MINUTES_PER_DAY, iso, to_us
from tailorkit.segment.definitions import ENTERED, EXITED, Definitions, time_dependent
from tailorkit.segment.explain import explain
from tailorkit.segment.triggers import Atom, atoms, flip_source, integer_bounds, truth
from tailorkit.store.profiles import MemoryProfileStore, Profiles, ProfileStore
from tailorkit.store.warehouse import EVENT_ARROW_SCHEMA

T = TypeVar("T")

log = logging.getLogger(__name__)
NAMESPACE = uuid.UUID("6f1c2a0e-5b7d-4c1e-9a57-7e2f3b9c4d10")
_BOT = re.compile(BOT_PATTERN)
_NEVER = -(1 << 62)
_SYSTEM = pa.array(sorted(SYSTEM_EVENT_TYPES))
#: Events may be dated this far after the wall clock before they stop moving the clock.
FUTURE_TOLERANCE_US = 5 * MINUTE_US


@dataclass(frozen=True)
class Change:
    """A person entered or left a segment at ``ts_us`` (epoch microseconds).

    ``reason``: ``event`` (their behaviour), ``window`` (the clock moved a
    window or a recency threshold), ``merged`` (identity merge), ``consent``,
    ``excluded`` (bot/outlier) or ``batch`` (batch features refreshed).
    """

    person: str
    known: bool
    segment: str
    kind: str
    ts_us: int
    reason: str

    @property
    def event_id(self) -> str:
        """Deterministic, so that replays deduplicate.

        >>> c = Change("u1", True, "vip", ENTERED, 0, "event")
        >>> c.event_id == Change("u1", True, "vip", ENTERED, 0, "event").event_id
        True
        >>> c.to_event()["timestamp"], c.to_event()["properties"]
        ('1970-01-01T00:00:00Z', {'segment': 'vip', 'reason': 'event'})
        """
        return str(uuid.uuid5(NAMESPACE, f"{self.kind}|{self.segment}|{self.person}|{self.ts_us}"))

    def to_event(self) -> dict[str, Any]:
        """The ``segment_entered``/``segment_exited`` event, as sent to the collector."""
        ids = {"user_id": self.person} if self.known else {"anonymous_id": self.person}
        return {
            "event_id": self.event_id,
            "type": self.kind,
            **ids,
            "timestamp": iso(self.ts_us),
            "properties": {"segment": self.segment, "reason": self.reason},
        }


@dataclass
class _Effects:
    """What one store transaction decided; applied only after it commits."""

    changes: list[Change] = field(default_factory=list)
    wakes: dict[str, int] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    sizes: Counter[str] = field(default_factory=Counter)


class _Steps(Protocol):
    """Recomputes some cached features of a profile as of a minute; returns the
    segments whose conditions may have flipped (see :func:`_compile_refresh`)."""

    def __call__(self, p: Profile, minute: int, cache: dict[str, Any], ts_us: int = 0) -> int: ...


#: What an event that fed a stream may change in the timers: (stream index, has a wake
#: window, res, span, threshold mode, window source, [(recency source, kind, offsets)])
_Wake = tuple[int, bool, int, int, Any, int, tuple[tuple[int, str, tuple[int, ...]], ...]]
#: ("count"|"distinct", thresholds, ((falling score, lowest >= bound, lowest > bound), ...))
_Mode = tuple[str, tuple[float, ...], tuple[tuple[str, float, float], ...]]


@dataclass(frozen=True)
class _EvalPlan:
    #: ``match(cache, p, minute)``: the volatile features read into the cache, then the
    #: matched segments, exclusive groups applied
    match: Callable[..., int]
    mask: int


@dataclass
class _Batch:
    """One stored batch as Python lists, sorted by time, persons resolved."""

    event_id: list[str]
    type: list[str]
    user_id: list[str | None]
    ts: list[int]
    properties: list[str | None]
    context: list[str | None]
    consent: list[bool]
    person: list[str] = field(default_factory=list)
    merges: dict[int, tuple[str, str]] = field(default_factory=dict)


def events_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Stored-event rows (as the collector hands them over) from dicts; for tests and docs."""
    defaults = {"source": "test", "personalization": True, "properties": "{}", "context": "{}"}
    filled = []
    for row in rows:
        full = {**defaults, **row}
        full.setdefault("received_at", full["timestamp"])
        for name in ("properties", "context"):
            if isinstance(full[name], dict):
                full[name] = orjson.dumps(full[name]).decode()
        filled.append(full)
    return pa.Table.from_pylist(filled, schema=EVENT_ARROW_SCHEMA)


class SegmentEngine:
    """Profiles and segment memberships, updated incrementally (thread-safe).

    >>> from tailorkit.segment.definitions import parse_definitions
    >>> engine = SegmentEngine(parse_definitions({
    ...     "features": {"buys": {"count": {"events": ["purchase"]}}},
    ...     "segments": {"buyers": {"condition": {"buys": {"$gte": 1}}, "min_users": 2}}}))
    >>> t = datetime(2024, 5, 1, tzinfo=UTC)
    >>> _ = engine.process(events_table([
    ...     {"event_id": "e1", "type": "purchase", "user_id": "u1", "timestamp": t}]))
    >>> engine.members("u1"), engine.attributes("u1")  # below min_users: not targetable
    (['buyers'], {'buys': 1, 'segments': []})
    """

    def __init__(
        self,
        definitions: Definitions,
        store: ProfileStore | None = None,
        on_changes: Callable[[list[Change]], None] | None = None,
        detect_bots: bool = True,
    ) -> None:
        self.definitions = definitions
        self.plan = ProfilePlan(definitions.features)
        self.store = store or MemoryProfileStore()
        self.on_changes = on_changes
        self.detect_bots = detect_bots
        self.flagged: frozenset[str] = frozenset()
        self.clock_us = _NEVER
        self._lock = threading.RLock()
        self._bot_cache: dict[str, bool] = {}
        self._compile()

    # -- compiled tables ---------------------------------------------------------

    def _compile(self) -> None:
        defs, features = self.definitions, self.definitions.features
        self.keys = [s.key for s in defs.segments]
        self.preds = [compile_condition(s.condition) for s in defs.segments]
        self.all_mask = (1 << len(self.keys)) - 1
        self.group_bits = [
            tuple(defs.bits[s.key] for s in members) for members in defs.groups().values()
        ]
        self.bit_group = {bit: g for g in self.group_bits for bit in g}
        users: dict[str, int] = {}
        for seg in defs.segments:
            for name in features.closure(list(seg.inputs)):
                users[name] = users.get(name, 0) | (1 << defs.bits[seg.key])
        self.users = users
        # Features segments need, in dependency order: what the per-profile cache holds
        self.needed = tuple(n for n in features.names if n in users)
        self.stream_mask = [0] * len(self.plan.streams)
        for name, stream in self.plan.stream_of.items():
            self.stream_mask[stream.index] |= users.get(name, 0)
        self.volatile = frozenset(
            n for n in self.needed if isinstance(features.features.get(n), Recency)
        )
        self.volatile_names = tuple(n for n in self.needed if n in self.volatile)
        self.time_mask = 0
        for seg in defs.segments:
            if time_dependent(defs, seg):
                self.time_mask |= 1 << defs.bits[seg.key]
        self._eval_plans: dict[int, _EvalPlan] = {}
        self._compile_triggers()
        self._compile_wakes()

    def _compile_triggers(self) -> None:
        """Per feature: the segments reading it directly, with their thresholds."""
        features = self.definitions.features
        self.direct: dict[str, tuple[tuple[int, tuple[Atom, ...] | None], ...]] = {}
        for seg in self.definitions.segments:
            bit = self.definitions.bits[seg.key]
            for name in seg.inputs:
                numeric = features.value_type(name) in ("int", "float")
                found = atoms(seg.condition, name) if numeric else None
                self.direct[name] = (*self.direct.get(name, ()), (bit, found))
        self._refresh_names: dict[tuple[int, ...], tuple[str, ...]] = {}
        self._touched_steps: dict[tuple[int, ...], _Steps] = {}
        self._step_cache: dict[tuple[tuple[str, ...], str | None, int], _Steps] = {}
        trait_names = [
            n for n, f in features.features.items() if isinstance(f, Trait) and n in self.users
        ]
        self.trait_names = tuple(self.plan.downstream(trait_names))
        batch = [n for n in features.batch_names if n in self.users]
        self.batch_names = tuple(n for n in self.plan.downstream(batch) if n in self.users)

    def _compile_wakes(self) -> None:
        """Which streams can move a segment with the clock, and at which offsets."""
        features = self.definitions.features
        # stream index -> (bucket minutes, buckets per window)
        self.wake_windows: dict[int, tuple[int, int]] = {}
        for stream in self.plan.streams:
            if stream.window is not None and self.stream_mask[stream.index]:
                self.wake_windows[stream.index] = (stream.res, stream.span)
        # streams whose expiry matters only when a count reaches a threshold
        self.wake_modes: dict[int, _Mode] = {}
        self.falling_scores: set[str] = set()
        for index in self.wake_windows:
            mode = self._threshold_mode(index)
            if mode is not None:
                self.wake_modes[index] = mode
        self.recency_offsets: dict[int, list[tuple[str, tuple[int, ...]]]] = {}
        for name in self.volatile:
            f = features.features[name]
            assert isinstance(f, Recency)
            base = features.features[f.of]
            assert isinstance(base, Aggregate)
            offsets: set[int] = set()
            for c in self.definitions.thresholds(name):
                x = c * MINUTES_PER_DAY
                # (M - L) / 1440 crosses c between these minute offsets
                offsets.update({math.floor(x), math.floor(x) + 1, math.ceil(x)})
            offsets = _changing_offsets(offsets, self.direct.get(name, ()))
            if offsets:
                index = self.plan.stream_of[f.of].index
                entry = (base.kind, tuple(sorted(offsets)))
                self.recency_offsets.setdefault(index, []).append(entry)
        self._compile_timers()

    def _compile_timers(self) -> None:
        """Timer sources (:attr:`Profile.timers` keys): wake windows, then recency entries."""
        #: source -> (stream index, res, span) for the wake windows
        self.window_sources = list(self.wake_windows.items())
        self.window_source = {index: j for j, (index, _) in enumerate(self.window_sources)}
        #: stream index -> [(source, kind, offsets)] for the recency entries
        self.recency_sources: dict[int, list[tuple[int, str, tuple[int, ...]]]] = {}
        source = len(self.window_sources)
        for index, entries in self.recency_offsets.items():
            for kind, offsets in entries:
                self.recency_sources.setdefault(index, []).append((source, kind, offsets))
                source += 1
        self.recency_by_source = {
            j: (index, kind, offsets)
            for index, entries in self.recency_sources.items()
            for j, kind, offsets in entries
        }
        self._timer_steps: dict[int, _Steps] = {}
        # streams to re-arm when segments reading their falling scores may have flipped
        self.rearm: list[tuple[int, int, int, int, int]] = []
        for index, mode in self.wake_modes.items():
            bits = 0
            for score, *_ in mode[2]:
                for bit, _ in self.direct.get(score, ()):
                    bits |= 1 << bit
            if bits:
                res, span = self.wake_windows[index]
                self.rearm.append((bits, index, res, span, self.window_source[index]))
        self.falling_bits = 0
        for bits, *_ in self.rearm:
            self.falling_bits |= bits
        self._event_plans: dict[int, _Steps] = {}
        self._by_type: dict[str, tuple[Callable[[list[Any], int, int, Any], int], bool]] = {}

    def _threshold_mode(self, index: int) -> _Mode | None:
        """``("count"|"distinct", bounds, scores)`` when only thresholds matter (bounds:
        :func:`~tailorkit.segment.triggers.integer_bounds` of the comparisons).

        True when every feature of the stream is a count (or every one a
        distinct count), read by segment conditions directly and only through
        numeric comparisons, and otherwise only by :meth:`_falling_score` s:
        expiry lowers those, so it matters only while one of their lower
        bounds holds (``scores``: each with its lowest ``>=`` and ``>`` bounds).
        """
        features = self.definitions.features
        names = self.plan.stream_features(index)
        kinds = {features.features[n].kind for n in names}  # type: ignore[union-attr]
        if kinds not in ({"count"}, {"distinct"}):
            return None
        numbers: set[float] = set()
        scores: dict[str, tuple[Atom, ...]] = {}
        for name in names:
            for n in self.plan.downstream([name]):
                if n == name or n not in self.users:
                    continue
                bounds = self._falling_score(n)
                if bounds is None:
                    return None  # a ratio or score reads it: every expiry matters
                scores[n] = bounds
            for _, found in self.direct.get(name, ()):
                if found is None:
                    return None
                numbers.update(integer_bounds(found))
        self.falling_scores.update(scores)
        lowest = tuple((n, _lowest(f, "ge"), _lowest(f, "gt")) for n, f in sorted(scores.items()))
        return (kinds.pop(), tuple(sorted(numbers)), lowest)

    def _falling_score(self, name: str) -> tuple[Atom, ...] | None:
        """The comparisons of a score that expiry can only lower, if it is one.

        A score of aggregates with non-negative weights only falls when a
        window count expires; read by segments only through lower bounds
        (``$gt``/``$gte``) and by no other feature, a fall matters only while
        a bound holds. ``None`` otherwise.
        """
        features = self.definitions.features
        f = features.features.get(name)
        if not isinstance(f, Score) or f.transform not in ("linear", "log1p"):
            return None
        if any(not (w >= 0.0 and math.isfinite(w)) for _, w in f.weights):
            return None
        if not all(isinstance(features.features.get(n), Aggregate) for n, _ in f.weights):
            return None
        if any(n != name and n in self.users for n in self.plan.downstream([name])):
            return None
        bounds: set[Atom] = set()
        for _, found in self.direct.get(name, ()):
            if found is None or any(kind not in ("gt", "ge") for kind, _ in found):
                return None
            bounds.update(found)
        return tuple(sorted(bounds))

    def _stream_wake(
        self, state: Any, index: int, res: int, span: int, cache: dict[str, Any] | None
    ) -> int | None:
        """The first minute at which this stream's expiry may change a segment."""
        mode = self.wake_modes.get(index)
        if mode is None or _holds(mode[2], cache):
            oldest = _oldest(state, None)
            return None if oldest is None else (oldest + span) * res
        kind, marks, _ = mode
        value = state.count if kind == "count" else len(state.values)
        at = bisect.bisect_right(marks, value)
        if at == 0 or value == 0:
            return None  # only decreases until the next event: no threshold below
        need = value - marks[at - 1] + 1  # to fall below the highest bound it is at or above
        # a long walk stops at the 256th bucket or value and resumes at the next wake
        if kind != "count":  # one per value: the value whose expiry drops `need`
            skip = max(0, min(math.ceil(need) - 1, 255))
            minute = next(itertools.islice(state.values.values(), skip, None), None)
            return None if minute is None else (minute + span) * res
        dropped = 0
        for steps, bucket in enumerate(state.buckets):
            dropped += bucket[1]
            if dropped >= need or steps >= 255:
                return (bucket[0] + span) * res
        return None

    def _names_for(self, touched: tuple[int, ...]) -> tuple[str, ...]:
        """Cached features to recompute after these streams changed."""
        names = self._refresh_names.get(touched)
        if names is None:
            fed = [n for i in touched for n in self.plan.stream_features(i)]
            wanted = {n for n in self.plan.downstream(fed) if n in self.users}
            # a falling score is recomputed from fresh inputs: theirs may lag (see _timer_step)
            features = self.definitions.features
            for n in wanted & self.falling_scores:
                wanted.update(features.inputs(n))
            names = tuple(n for n in features.names if n in wanted)
            self._refresh_names[touched] = names
        return names

    def _steps_for(self, touched: tuple[int, ...]) -> _Steps:
        """:meth:`_steps` of :meth:`_names_for`, memoized by the touched streams."""
        steps = self._touched_steps.get(touched)
        if steps is None:
            steps = self._touched_steps[touched] = self._steps(self._names_for(touched))
        return steps

    def _eval_plan(self, mask: int) -> _EvalPlan:
        """What evaluating ``mask`` reads and matches (memoized: few distinct masks)."""
        plan = self._eval_plans.get(mask)
        if plan is None:
            plan = self._eval_plans[mask] = self._new_eval_plan(mask)
        return plan

    def _new_eval_plan(self, mask: int) -> _EvalPlan:
        while True:
            grown = mask
            for bit in _bits(mask):
                for member in self.bit_group.get(bit, ()):
                    grown |= 1 << member
                # a recency read here moves the cached value: evaluate all its readers
                for name in self.definitions.segments[bit].inputs:
                    if name in self.volatile:
                        grown |= self.users[name]
            if grown == mask:
                break
            mask = grown
        bits = list(_bits(mask))
        inputs = [n for b in bits for n in self.definitions.segments[b].inputs]
        groups = tuple(g for g in self.group_bits if mask & (1 << g[0]))
        names = self.definitions.features.closure(inputs)
        volatile = tuple(n for n in names if n in self.volatile)
        segments = self.definitions.segments
        tests = [(b, segments[b].condition, self.preds[b]) for b in bits]
        return _EvalPlan(_compile_match(tests, groups, self._reads_source(volatile)), mask)

    def _reads_source(self, names: tuple[str, ...]) -> tuple[list[str], dict[str, Any]]:
        """Lines storing these features in ``cache``, read from ``p`` as of ``minute``."""
        lines: list[str] = []
        found: dict[str, Any] = {}
        for i, name in enumerate(names):
            source = self.plan.reader_source(name, f"r{i}_")
            found[f"rk{i}"], found[f"rd{i}"] = name, self.plan.readers[name]
            if source is None:
                lines.append(f"new = rd{i}(p, minute, cache)")
            else:
                lines += source[0]
                found.update(source[1])
            lines.append(f"cache[rk{i}] = new")
        return lines, found

    # -- evaluation --------------------------------------------------------------

    def _visible(self, p: Profile) -> bool:
        return p.consent and not p.bot and p.person not in self.flagged

    def _fill(self, p: Profile, minute: int) -> dict[str, Any]:
        """Compute every cached feature afresh (a profile new to this process)."""
        p.cache = self.plan.values(p, self.needed, minute)
        return p.cache

    def _steps(
        self,
        names: tuple[str, ...],
        tail: tuple[list[str], dict[str, Any]] | None = None,
        fresh: int = 0,
    ) -> _Steps:
        """The refresh of these cached features, compiled (memoized); ``tail``: lines to
        run after it (see :func:`_compile_refresh`); ``fresh``: the streams (bits) just
        fed as of the refresh's minute (:meth:`ProfilePlan.reader_source`)."""
        key = (names, None if tail is None else "\n".join(tail[0]), fresh)
        steps = self._step_cache.get(key)
        if steps is None:
            stream_of, plan = self.plan.stream_of, self.plan
            steps = self._step_cache[key] = _compile_refresh(
                [
                    (
                        n,
                        plan.readers[n],
                        self.direct.get(n),
                        plan.reader_source(
                            n, f"x{i}_", n in stream_of and bool(fresh >> stream_of[n].index & 1)
                        ),
                        not plan.never_null(n),
                    )
                    for i, n in enumerate(names)
                ],
                tail,
            )
        return steps

    def _refresh(self, p: Profile, steps: _Steps, minute: int) -> int:
        """Recompute cached features; return the segments whose conditions may have flipped."""
        assert p.cache is not None
        return steps(p, minute, p.cache)

    def _evaluate(
        self, p: Profile, mask: int, minute: int, ts_us: int, reason: str, eff: _Effects
    ) -> None:
        plan = self._eval_plans.get(mask) or self._eval_plan(mask)
        matched = 0
        if p.consent and not p.bot and p.person not in self.flagged:  # _visible
            cache = p.cache if p.cache is not None else self._fill(p, minute)
            matched = plan.match(cache, p, minute)  # recency read first: it moves with the clock
        elif reason == "event":
            reason = "consent" if not p.consent else "excluded"
        new = (p.members & ~plan.mask) | matched
        if new != p.members:
            self._changed(p, p.members, new, ts_us, reason, eff)
            p.members = new

    def _changed(
        self, p: Profile, old: int, new: int, ts_us: int, reason: str, eff: _Effects
    ) -> None:
        for bit in _bits(old ^ new):
            key = self.keys[bit]
            entered = bool(new >> bit & 1)
            eff.changes.append(
                Change(p.person, p.known, key, ENTERED if entered else EXITED, ts_us, reason)
            )
            eff.sizes[key] += 1 if entered else -1

    def _next_wake(self, p: Profile, minute: int) -> int | None:
        """The next minute after ``minute`` at which the clock alone may move a segment.

        Also sets every timer source's own next minute (:attr:`Profile.timers`).
        """
        timers: dict[int, int] = {}
        streams = p.streams
        for j, (index, (res, span)) in enumerate(self.window_sources):
            state = streams[index]
            if state is None:
                continue
            cutoff = minute // res - span
            buckets, values = state.buckets, state.values
            if (buckets and buckets[0][0] <= cutoff) or (
                values and next(iter(values.values())) <= cutoff
            ):
                state.expire(cutoff)
            candidate = self._stream_wake(state, index, res, span, p.cache)
            if candidate is not None:
                timers[j] = candidate
        for index, entries in self.recency_sources.items():
            for j, kind, offsets in entries:
                candidate = _recency_wake(streams[index], kind, offsets, minute)
                if candidate is not None:
                    timers[j] = candidate
        p.timers = timers
        return min(timers.values()) if timers else None

    def _timer_step(self, p: Profile, at: int, timers: dict[int, int], eff: _Effects) -> None:
        """The clock reached ``at``, the earliest timer: refresh what is due, re-arm those.

        Timers are never later than their source's next change (events only
        lower them), so the due ones cover every window that can move a
        segment now. A count stream whose buckets expire before its threshold
        timer keeps its cached value until then: every reader compares it with
        thresholds only, and none is crossed before the timer.
        """
        due = 0
        for j, t in timers.items():
            if t <= at:
                due |= 1 << j
        step = self._timer_steps.get(due) or self._timer_step_of(due)
        assert p.cache is not None
        mask = step(p, at, p.cache)
        if mask:
            self._evaluate(p, mask, at, at * MINUTE_US, "window", eff)
        if mask & self.falling_bits:
            self._rearm(p, mask, at)
        p.wake = min(timers.values()) if timers else None

    def _timer_step_of(self, due: int) -> _Steps:
        """For the due timer sources (bits): the refresh of what they feed, then their
        re-arming (before the segments are evaluated, which reads and writes neither)."""
        n_windows = len(self.window_sources)
        sources = list(_bits(due))
        touched = tuple(sorted(self.window_sources[j][0] for j in sources if j < n_windows))
        names = self._names_for(touched)
        names += tuple(n for n in self.volatile_names if n not in names)
        lines = ["timers = p.timers", "streams = p.streams"]
        rearm: dict[str, Any] = {"stream_wake": self._stream_wake, "_oldest": _oldest}
        rearm.update(MINUTE_US=MINUTE_US)
        for j in sources:
            if j >= n_windows:
                index, kind, offsets = self.recency_by_source[j]
                lines += _recency_source(index, j, kind, offsets)
                continue
            index, (res, span) = self.window_sources[j]
            if index in self.wake_modes:
                wake = [f"e = stream_wake(s, {index}, {res}, {span}, cache)"]
            else:  # every expiry matters: _stream_wake without a mode, inlined
                wake = ["o = _oldest(s, None)", f"e = None if o is None else (o + {span}) * {res}"]
            lines += [
                f"s = streams[{index}]",
                "if s is None:",
                f"    del timers[{j}]",
                "else:",
                f"    cutoff = minute // {res} - {span}",
                "    b, vs = s.buckets, s.values",  # WindowState.trim, inlined
                "    if (b and b[0][0] <= cutoff) or (vs and next(iter(vs.values())) <= cutoff):",
                "        s.expire(cutoff)",
                *["    " + line for line in wake],
                "    if e is None:",
                f"        del timers[{j}]",
                "    else:",
                f"        timers[{j}] = e",
            ]
        found = self._timer_steps[due] = self._steps(names, (lines, rearm))
        return found

    def _due_names(self, p: Profile, minute: int) -> tuple[str, ...]:
        """Cached features that the clock reaching ``minute`` may change."""
        touched = []
        streams = p.streams
        for index, (res, span) in self.wake_windows.items():
            state = streams[index]
            if state is not None:
                buckets, values = state.buckets, state.values
                cutoff = minute // res - span
                if (buckets and buckets[0][0] <= cutoff) or (
                    values and next(iter(values.values())) <= cutoff
                ):
                    touched.append(index)
        names = self._names_for(tuple(touched))
        return names + tuple(n for n in self.volatile_names if n not in names)

    def _catch_up(self, p: Profile, minute: int, eff: _Effects) -> None:
        """Evaluate every clock-driven change due up to ``minute``, in order."""
        start = p.wake
        while p.wake is not None and p.wake <= minute:
            at = p.wake
            if p.timers is not None and p.cache is not None:
                self._timer_step(p, at, p.timers, eff)
                continue
            if p.cache is None:
                self._fill(p, at)
                self._evaluate(p, self.time_mask, at, at * MINUTE_US, "window", eff)
            else:
                mask = self._refresh(p, self._steps(self._due_names(p, at)), at)
                if mask:
                    self._evaluate(p, mask, at, at * MINUTE_US, "window", eff)
            p.wake = self._next_wake(p, at)
        if p.wake != start and p.wake is not None:
            eff.wakes[p.person] = p.wake

    def _prepare(self, p: Profile, minute: int, clock: int, eff: _Effects) -> None:
        """Bring a profile to ``minute``: due clock changes, and a cache if it has none."""
        if p.wake is not None and p.wake <= minute:
            self._catch_up(p, minute, eff)
        if p.cache is None:
            # first use in this process (e.g. loaded from Redis): evaluate everything
            self._fill(p, minute)
            self._evaluate(p, self.all_mask, minute, clock, "window", eff)

    def _band_wake(
        self, state: Any, mode: _Mode, res: int, span: int, cache: dict[str, Any] | None
    ) -> int | None:
        """After one more event: an earlier check is due only if a threshold was just reached.

        Otherwise the count only moved away from the thresholds below it and
        the check already scheduled comes no later than the crossing (a
        score's bound that holds arms the first expiry, as it may not have been).
        """
        value = state.count if mode[0] == "count" else len(state.values)
        marks = mode[1]
        at = bisect.bisect_right(marks, value)
        reached = at > 0 and marks[at - 1] > value - 1
        scores = mode[2]
        if not reached and (value != 1 or at == 0) and not (scores and _holds(scores, cache)):
            return None  # (at 1 with every threshold above: nothing to cross)
        oldest = _oldest(state, None)
        return None if oldest is None else (oldest + span) * res

    def _wake_source(self, wakes: tuple[_Wake, ...]) -> tuple[list[str], dict[str, Any]]:
        """Lines updating the timers after an event (``p``, ``minute``, ``ts_us``).

        Window sources only move earlier: to the new bucket's expiry, or for a
        threshold mode to the oldest expiry when a threshold was just reached
        (:meth:`_band_wake`: most events leave it unchanged). Recency sources
        are replaced, exactly, from the new first/last timestamp. Without
        timers (a profile from a shared store): :meth:`_lower_wake`. ``cache``
        is the profile's (never ``None`` here).
        """
        names: dict[str, Any] = {
            "bisect_right": bisect.bisect_right,
            "_oldest": _oldest,
            "MINUTE_US": MINUTE_US,
            "inf": math.inf,
            "lower_wake": lambda p, ts_us, minute: self._lower_wake(p, wakes, ts_us, minute),
        }
        lines = ["timers = p.timers", "if timers is None:", "    lower_wake(p, ts_us, minute)"]
        lines += ["else:", "    em = ts_us // MINUTE_US", "    streams = p.streams"]
        body: list[str] = []
        for w, (index, windowed, res, span, mode, source, recency) in enumerate(wakes):
            if windowed and mode is None:  # the timers hold ints: inf stands for none held
                body.append(f"e = (em // {res} + {span}) * {res}")
                body += [f"if e < timers.get({source}, inf):", f"    timers[{source}] = e"]
            elif windowed:
                kind, marks, scores = mode
                names[f"marks{w}"] = marks
                body += [
                    f"s = streams[{index}]",
                    "value = s.count" if kind == "count" else "value = len(s.values)",
                ]
                if not marks:
                    body.append("hold = False")
                elif len(marks) == 1:  # bisect_right of one mark, inlined
                    names[f"mark{w}"] = marks[0]
                    body.append(f"hold = value >= mark{w} and (mark{w} > value - 1 or value == 1)")
                else:  # a threshold just reached (bisect_right finds the highest below)
                    body += [
                        f"at = bisect_right(marks{w}, value)",
                        f"hold = at and (marks{w}[at - 1] > value - 1 or value == 1)",
                    ]
                for k, (score, ge, gt) in enumerate(scores):  # _holds, inlined
                    names[f"score{w}_{k}"], names[f"ge{w}_{k}"], names[f"gt{w}_{k}"] = score, ge, gt
                    body += [
                        "if not hold:",
                        f"    x = cache.get(score{w}_{k})",
                        "    if x is None:",
                        "        x = 0.0",
                        f"    hold = x >= ge{w}_{k} or x > gt{w}_{k}",
                    ]
                body += [
                    "if hold:",
                    "    o = _oldest(s, None)",
                    "    if o is not None:",
                    f"        e = (o + {span}) * {res}",
                    f"        if e < timers.get({source}, inf):",
                    f"            timers[{source}] = e",
                ]
            for j, kind, offsets in recency:
                body += _recency_source(index, j, kind, offsets)
        body.append("p.wake = min(timers.values()) if timers else None")
        return lines + ["    " + line for line in body], names

    def _lower_wake(self, p: Profile, wakes: tuple[_Wake, ...], ts_us: int, minute: int) -> None:
        """Without timers (a profile loaded from a shared store): only ever earlier."""
        best = p.wake
        event_minute = ts_us // MINUTE_US
        streams = p.streams
        for index, windowed, res, span, mode, _, recency in wakes:
            candidates = [_recency_wake(streams[index], k, o, minute) for _, k, o in recency]
            if windowed:
                if mode is None:
                    candidates.append((event_minute // res + span) * res)
                else:
                    candidates.append(self._band_wake(streams[index], mode, res, span, p.cache))
            for candidate in candidates:
                if candidate is not None and (best is None or candidate < best):
                    best = candidate
        p.wake = best

    # -- ingestion ---------------------------------------------------------------

    def on_stored(self, events: pa.Table) -> None:
        """Collector hook: never raises (the events are stored whatever happens here).

        While a shared store is unreachable the batch is skipped (logged once
        per outage by the store's fallback); ``tailorkit worker`` does not lose
        such updates (:meth:`process_once`), the in-process path does.
        """
        try:
            self.guarded(lambda: self.process(events), list)
        except Exception:
            log.exception("online segment update failed for a batch of %d events", len(events))

    def guarded(self, call: Callable[[], T], fallback: Callable[[], T]) -> T:
        """``call()``, or ``fallback()`` while a shared store is down or if it fails.

        Request paths use it to answer without a profile instead of waiting
        on (or logging a traceback for) an unreachable Redis.
        """
        guard = self.store.fallback
        return call() if guard is None else guard.guard(call, fallback)

    def process(self, events: pa.Table) -> list[Change]:
        """Apply a batch of stored events; returns the membership changes (also reported)."""
        events = _without_system(events)
        if events.num_rows == 0:
            return []
        with self._lock:
            batch, touched = self._batch(events)
            eff = self.store.update(touched, lambda profiles: self._apply(batch, profiles))
            self._commit(eff)
            return eff.changes + self.advance_to(self.clock_us)

    def _batch(self, events: pa.Table) -> tuple[_Batch, set[str]]:
        """The batch's columns (aliases resolved) and every person it touches."""
        batch = self._resolve(self._lists(events))
        touched = set(batch.person)
        touched.update(anon for anon, _ in batch.merges.values())
        return batch, touched

    def process_once(self, events: pa.Table, markers: Sequence[str]) -> bool:
        """:meth:`process` unless one of ``markers`` was written with an earlier batch.

        The profile writes and the markers are one transaction
        (:meth:`ProfileStore.apply_once`): a crash leaves both or neither, so
        a redelivered batch is applied exactly once. Returns whether it was
        applied now (False: a marker exists; nothing changed).
        """
        events = _without_system(events)
        if events.num_rows == 0:
            return True
        with self._lock:
            batch, touched = self._batch(events)
            eff = self.store.apply_once(
                touched, lambda profiles: self._apply(batch, profiles), markers
            )
            if eff is None:
                return False
            self._report(eff)
            self.advance_to(self.clock_us)
            return True

    def _lists(self, events: pa.Table) -> _Batch:
        ts = events.column("timestamp").cast(pa.int64())
        ordered = pc.all(pc.less_equal(ts[:-1], ts[1:])).as_py()  # (None: one event)
        if ts.null_count or ordered is False:
            # a stable sort: a batch already in time order (the usual case) would stay as it is
            events = events.sort_by([("timestamp", "ascending")])
            ts = events.column("timestamp").cast(pa.int64())

        def col(name: str) -> list[Any]:
            return events.column(name).to_pylist()

        batch = _Batch(
            col("event_id"),
            col("type"),
            col("user_id"),
            ts.to_pylist(),
            col("properties"),
            col("context"),
            col("personalization"),
        )
        batch.person = col("anonymous_id")  # resolved in place by _resolve
        return batch

    def _resolve(self, batch: _Batch) -> _Batch:
        """Persons per event, and the merges ``identify``/``alias`` events carry.

        An anonymous event belongs to the user its id was merged into by then
        (an earlier batch, or an earlier event of this one).
        """
        users, anons, kinds = batch.user_id, batch.person, batch.type
        aliases = self.store.aliases({a for a in anons if a is not None})
        get = aliases.get

        def resolved(start: int, end: int) -> list[str]:
            pairs = zip(users[start:end], anons[start:end], strict=True)
            return [u if u is not None else get(a, a) for u, a in pairs]

        persons: list[str] = []
        start = 0  # events before it are resolved
        for i in [i for i, kind in enumerate(kinds) if kind == "identify" or kind == "alias"]:
            uid = users[i]
            if uid is None:
                continue
            merged = _merged_id(kinds[i], anons[i], batch.properties[i])
            if merged is not None and merged != uid and merged not in aliases:
                persons += resolved(start, i + 1)
                start = i + 1
                aliases[merged] = uid
                batch.merges[i] = (merged, uid)
        batch.person = persons + resolved(start, len(users))
        return batch

    def _apply(self, batch: _Batch, profiles: Profiles) -> _Effects:
        eff = _Effects()
        plan, clock = self.plan, self.clock_us
        # an event dated in the future must not move everybody's windows
        limit = now_us() + FUTURE_TOLERANCE_US
        minute, merges = clock // MINUTE_US, batch.merges
        for i, (person, ts) in enumerate(zip(batch.person, batch.ts, strict=True)):
            if ts > clock:
                clock = ts if ts < limit else max(clock, limit)
                minute = clock // MINUTE_US
            if merges and i in merges:
                self._merge(profiles, *merges[i], minute, clock, eff)
            p = profiles.get(person)
            fresh = p is None
            if p is None:
                p = profiles[person] = plan.new_profile(person)
                p.timers = {}  # no history: no timer
                self._fill(p, minute)
            elif p.cache is None or (p.wake is not None and p.wake <= minute):
                self._prepare(p, minute, clock, eff)
            self._event(p, batch, i, minute, clock, fresh, eff)
        self.clock_us = clock
        return eff

    def _event(
        self,
        p: Profile,
        batch: _Batch,
        i: int,
        minute: int,
        clock: int,
        fresh: bool,
        eff: _Effects,
    ) -> None:
        if batch.user_id[i] == p.person:
            p.known = True
        flagged = self.flagged
        was = p.consent and not p.bot and p.person not in flagged
        consent = batch.consent[i]
        ts = batch.ts[i]
        p.note_consent(ts, consent)
        if self.detect_bots and not p.bot and self._is_bot(batch.context[i]):
            p.bot = True
        mask = 0
        kind = batch.type[i]
        start = p.wake
        if consent:
            adder, needs_properties = self._by_type.get(kind) or self._type_plan(kind)
            props = _parse(batch.properties[i]) if needs_properties else None
            touched = adder(p.streams, ts, minute, props)
            if touched:
                after = self._event_plans.get(touched) or self._event_plan(touched)
                assert p.cache is not None
                mask = after(p, minute, p.cache, ts)
            if kind == "identify" and self.plan.traits:  # read by templates too, not only segments
                self.plan.add_traits(p, ts, batch.event_id[i], props)
                if self.trait_names:
                    mask |= self._refresh(p, self._steps(self.trait_names), minute)
        if fresh or was != (p.consent and not p.bot and p.person not in flagged):
            mask = self.all_mask  # a new profile may match with nothing changed
        if mask:
            self._evaluate(p, mask, minute, clock, "event", eff)
        if mask & self.falling_bits:
            self._rearm(p, mask, minute)
        if p.wake != start and p.wake is not None:
            eff.wakes[p.person] = p.wake

    def _rearm(self, p: Profile, mask: int, minute: int) -> None:
        """A falling score may have risen to a bound: its streams' expiry matters again."""
        timers = p.timers
        for bits, index, res, span, source in self.rearm:
            state = p.streams[index]
            if not mask & bits or state is None:
                continue
            state.trim(minute // res - span)
            candidate = self._stream_wake(state, index, res, span, p.cache)
            if candidate is None:
                continue
            if timers is not None:
                held = timers.get(source)
                if held is None or candidate < held:
                    timers[source] = candidate
            if p.wake is None or candidate < p.wake:
                p.wake = candidate

    def _type_plan(self, kind: str) -> tuple[Callable[[list[Any], int, int, Any], int], bool]:
        """The stream updates of an event type and whether they read its properties."""
        found = self._by_type[kind] = (self.plan.adder(kind), self.plan.needs_properties(kind))
        return found

    def _event_plan(self, touched: int) -> _Steps:
        """After an event fed the streams of ``touched`` (bits): the refresh of what they feed,
        then the timer updates (:meth:`_wake_source`); memoized. Returns the refresh's mask.

        The timers are updated before the segments are evaluated, which reads
        and writes neither them nor the scores they read.
        """
        found = self._event_plans.get(touched)
        if found is None:
            indexes = tuple(_bits(touched))
            wakes = []
            for index in indexes:
                window = self.wake_windows.get(index)
                recency = tuple(self.recency_sources.get(index, ()))
                if window is None and not recency:
                    continue
                res, span = window if window is not None else (0, 0)
                source = self.window_source.get(index, -1)
                wakes.append((index, window is not None, res, span, self.wake_modes.get(index),
                              source, recency))  # fmt: skip
            tail = self._wake_source(tuple(wakes)) if wakes else None
            names = self._names_for(indexes)
            found = self._event_plans[touched] = self._steps(names, tail, touched)
        return found

    def _merge(
        self, profiles: Profiles, anon: str, user: str, minute: int, clock: int, eff: _Effects
    ) -> None:
        eff.aliases[anon] = user
        source = profiles.get(anon)
        if source is None:
            return
        self._prepare(source, minute, clock, eff)
        self._changed(source, source.members, 0, clock, "merged", eff)
        target = profiles.get(user)
        if target is None:
            target = profiles[user] = self.plan.new_profile(user)
        else:
            self._prepare(target, minute, clock, eff)
        merge_profiles(self.plan, source, target, minute)
        profiles[anon] = None
        target.known = True
        self._fill(target, minute)
        self._evaluate(target, self.all_mask, minute, clock, "merged", eff)
        target.wake = self._next_wake(target, minute)
        if target.wake is not None:
            eff.wakes[user] = target.wake

    def _is_bot(self, context: str | None) -> bool:
        if not context:
            return False
        agent = _user_agent(context)
        if agent is None:
            return False
        hit = self._bot_cache.get(agent)
        if hit is None:
            if len(self._bot_cache) > 100_000:
                self._bot_cache.clear()
            hit = self._bot_cache[agent] = _BOT.search(agent) is not None
        return hit

    def _commit(self, eff: _Effects) -> None:
        if eff.aliases:
            self.store.set_aliases(eff.aliases)
        if eff.wakes:
            self.store.schedule(eff.wakes)
        if eff.sizes:
            self.store.add_sizes(eff.sizes)
        self._report(eff)

    def _report(self, eff: _Effects) -> None:
        if eff.changes and self.on_changes is not None:
            try:
                self.on_changes(eff.changes)
            except Exception:
                log.exception("reporting %d segment changes failed", len(eff.changes))

    # -- the clock and batch inputs ---------------------------------------------

    def advance_to(self, now: datetime | int) -> list[Change]:
        """Move the clock to ``now`` (datetime or epoch µs) and apply due window changes."""
        now_us = now if isinstance(now, int) else to_us(now)
        with self._lock:
            self.clock_us = max(self.clock_us, now_us)
            minute = self.clock_us // MINUTE_US
            due = self.store.due(minute)
            if not due:
                return []

            def sweep(profiles: Profiles) -> _Effects:
                eff = _Effects()
                for p in profiles.values():
                    if p is None or p.wake is None:
                        continue
                    if p.wake <= minute:
                        self._catch_up(p, minute, eff)
                    else:  # an older entry: the store keeps one per person, re-arm the real one
                        eff.wakes[p.person] = p.wake
                return eff

            eff = self.store.update(due, sweep)
            self._commit(eff)
            return eff.changes

    def set_flagged(self, persons: Iterable[str]) -> list[Change]:
        """Replace the set of persons excluded by the batch quality job (bots, outliers)."""
        new = frozenset(persons)
        with self._lock:
            changed = sorted(new ^ self.flagged)
            self.flagged = new
            return self._reevaluate(changed, lambda p: self.all_mask, "excluded")

    def set_batch_features(self, rows: Mapping[str, Mapping[str, Any]]) -> list[Change]:
        """Store features computed in batch (RFM, model scores) on the profiles; others lose theirs.

        ``rows``: ``{person: {feature: value}}``; a person missing from it
        loses every batch value. Segments reading a value that changed are
        re-evaluated (changes with reason ``batch``).
        """
        with self._lock:
            persons = sorted(set(self.store.persons()) | set(rows))
            minute = self.clock_us // MINUTE_US

            def assign(p: Profile) -> int:
                values = {k: v for k, v in rows.get(p.person, {}).items() if v is not None}
                if values == p.batch:
                    return 0
                p.batch = values
                return self._refresh(p, self._steps(self.batch_names), minute)

            return self._reevaluate(persons, assign, "batch", create=True)

    def _reevaluate(
        self,
        persons: list[str],
        change: Callable[[Profile], int],
        reason: str,
        create: bool = False,
    ) -> list[Change]:
        """Apply ``change`` (returns the segments to re-evaluate) to each person, in chunks."""
        changes: list[Change] = []
        minute, clock = self.clock_us // MINUTE_US, self.clock_us

        def run(profiles: Profiles) -> _Effects:
            eff = _Effects()
            for person, p in list(profiles.items()):
                if p is None and create:
                    p = self.plan.new_profile(person)
                    p.consent = False  # no event seen yet: not profiled until one arrives
                    profiles[person] = p
                    self._fill(p, minute)
                if p is None:
                    continue
                self._prepare(p, minute, clock, eff)
                mask = change(p)
                if mask:
                    self._evaluate(p, mask, minute, clock, reason, eff)
            return eff

        for start in range(0, len(persons), 1000):
            eff = self.store.update(persons[start : start + 1000], run)
            self._commit(eff)
            changes.extend(eff.changes)
        return changes

    def forget(self, person: str, anonymous_ids: Iterable[str] = ()) -> bool:
        """Erase a person's online profile (and merged anonymous ones) without any event.

        Sizes are adjusted; no ``segment_exited`` is written, since that would
        record the erased person again.
        """
        with self._lock:
            people = [person, *anonymous_ids]

            def erase(profiles: Profiles) -> tuple[bool, Counter[str]]:
                sizes: Counter[str] = Counter()
                found = False
                for key, p in profiles.items():
                    if p is not None:
                        found = True
                        for bit in _bits(p.members):
                            sizes[self.keys[bit]] -= 1
                        profiles[key] = None
                return found, sizes

            found, sizes = self.store.update(people, erase)
            self.store.add_sizes(sizes)
            return found

    # -- reading -----------------------------------------------------------------

    def person_of(self, person_or_anon: str) -> str:
        """The person an id belongs to now (anonymous ids follow their merge)."""
        return self.store.aliases([person_or_anon]).get(person_or_anon, person_or_anon)

    def features(self, person: str, at: datetime | None = None) -> dict[str, Any] | None:
        """Every feature of a profiled person (timestamps as epoch µs), or ``None``."""
        return self._read(person, at, lambda p, values: values if self._visible(p) else None)

    def members(self, person: str) -> list[str]:
        """Segments the person is in (as last evaluated; the sweep keeps it current)."""
        p = self.store.get(self.person_of(person))
        return [] if p is None else [self.keys[b] for b in _bits(p.members)]

    def describe(self, person: str, at: datetime | None = None) -> dict[str, Any] | None:
        """Features, segments and, per segment, which condition parts held (admin API)."""
        return self._read(person, at, self._describe)

    def _read(
        self, person: str, at: datetime | None, fn: Callable[[Profile, dict[str, Any]], Any]
    ) -> Any:
        with self._lock:
            if at is not None:
                self.advance_to(at)
            person = self.person_of(person)
            minute = self.clock_us // MINUTE_US
            eff = _Effects()

            def read(profiles: Profiles) -> Any:
                p = profiles.get(person)
                if p is None:
                    return None
                self._catch_up(p, minute, eff)
                return fn(p, self.plan.values(p, self.definitions.features.names, minute))

            result = self.store.update([person], read)
            self._commit(eff)
            return result

    def _describe(self, p: Profile, values: dict[str, Any]) -> dict[str, Any]:
        features = self.definitions.features
        shown = {
            n: iso(v) if features.value_type(n) == "timestamp" else v for n, v in values.items()
        }
        members = [self.keys[b] for b in _bits(p.members)]
        why = {}
        for seg in self.definitions.segments:
            detail = explain(seg.condition, values)
            detail["member"] = seg.key in members
            group = self.bit_group.get(self.definitions.bits[seg.key], ())
            winner = next((self.keys[b] for b in group if p.members >> b & 1), None)
            if detail["held"] and not detail["member"] and winner:
                detail["excluded_by"] = winner
            why[seg.key] = detail
        return {
            "person_id": p.person,
            "known": p.known,
            "profiled": self._visible(p),
            "not_profiled_because": _hidden_reason(p, self.flagged),
            "as_of": iso(self.clock_us),
            "features": shown,
            "segments": members,
            "targetable_segments": self.targetable(members),
            "explanations": why,
        }

    def targetable(self, members: Iterable[str]) -> list[str]:
        """Segments usable for targeting: at least ``min_users`` members, or forced."""
        sizes = self.store.sizes()
        out = []
        for key in members:
            seg = self.definitions.segment(key)
            if seg.force or sizes.get(key, 0) >= seg.min_users:
                out.append(key)
        return out

    def attributes(self, person: str) -> dict[str, Any]:
        """Attributes for targeting conditions: features plus ``segments`` (targetable)."""
        values = self.features(person) or {}
        features = self.definitions.features
        attrs = {n: v for n, v in values.items() if features.value_type(n) != "timestamp"}
        attrs["segments"] = self.targetable(self.members(person)) if values else []
        return attrs

    def sizes(self) -> dict[str, int]:
        """Online segment sizes."""
        sizes = self.store.sizes()
        return {key: sizes.get(key, 0) for key in self.keys}


def _without_system(events: pa.Table) -> pa.Table:
    """The events, without the segment changes and other system events."""
    system = pc.is_in(events["type"], _SYSTEM)
    return events.filter(pc.invert(system)) if pc.any(system).as_py() else events


def _holds(scores: tuple[tuple[str, float, float], ...], cache: dict[str, Any] | None) -> bool:
    """Whether a lower bound (``>= ge`` or ``> gt``) of one of these scores holds.

    Unknown (no cache): assume it does. Null is 0, as in :func:`truth`.
    """
    if not scores:
        return False
    if cache is None:
        return True
    for name, ge, gt in scores:
        x = cache.get(name)
        if x is None:
            x = 0.0
        if x >= ge or x > gt:
            return True
    return False


def _lowest(found: tuple[Atom, ...], kind: str) -> float:
    return min((c for k, c in found if k == kind), default=math.inf)


def _compile_refresh(
    steps: list[tuple[str, Any, Any, Any, bool]],
    tail: tuple[list[str], dict[str, Any]] | None = None,
) -> _Steps:
    """One function recomputing these features in order (readers see earlier results).

    ``steps``: ``(feature, reader, segments reading it directly (see
    :func:`flip_source`) or None, reader source or None, nullable)``;
    readers with a source are inlined. A value that did not change (``None``
    differs from everything) costs no flip test; ``nullable`` False: the
    values are numbers, never ``None``. ``tail``: lines (and the names they
    use) run last, which may read ``ts_us``, the function's optional fourth
    argument.
    """
    names: dict[str, Any] = {}
    lines = ["def refresh(p, minute, cache, ts_us=0):", "    mask = 0"]
    for i, (name, reader, readers, source, nullable) in enumerate(steps):
        names[f"k{i}"], names[f"r{i}"] = name, reader
        if source is None:
            lines.append(f"    new = r{i}(p, minute, cache)")
        else:
            lines += ["    " + line for line in source[0]]
            names.update(source[1])
        changed = "not (new == old) or (new is None) != (old is None)" if nullable else "new != old"
        lines += [f"    old = cache[k{i}]", f"    if {changed}:", f"        cache[k{i}] = new"]
        if readers is not None:
            flip, numbers = flip_source(readers, f"f{i}_", "old", "new", "mask", nullable)
            lines += ["        " + line for line in flip]
            names.update(numbers)
    if tail is not None:
        lines += ["    " + line for line in tail[0]]
        names.update(tail[1])
    lines.append("    return mask")
    return define(lines, names, "refresh")


def _compile_match(
    tests: list[tuple[int, Any, Callable[[Any], bool]]],
    groups: tuple[tuple[int, ...], ...],
    reads: tuple[list[str], dict[str, Any]] = ([], {}),
) -> Callable[..., int]:
    """``match(cache, p, minute) -> bits``: these segments' conditions, then exclusive groups.

    ``tests``: ``(bit, condition, compiled predicate)``. A condition is inlined
    where :func:`condition_source` can (numeric comparisons), else its
    predicate is called; in a group only the first member matched (by
    priority) stays. ``reads``: lines (and their names) run first, which
    may update ``cache`` from ``p`` as of ``minute``.

    >>> cond = {"n": {"$gte": 2}, "$not": {"m": 0}}
    >>> match = _compile_match([(3, cond, compile_condition(cond))], ())
    >>> match({"n": 2, "m": 1}), match({"n": 2, "m": 0}), match({"n": None, "m": 1})
    (8, 0, 0)
    """
    names: dict[str, Any] = dict(reads[1])
    lines = ["def match(cache, p=None, minute=0):", *["    " + line for line in reads[0]]]
    lines.append("    m = 0")
    for bit, condition, pred in tests:
        try:
            expr = condition_source(condition, names, "cache", "m")
        except Exception:  # any other shape (or a malformed one): the predicate decides
            names[f"pred{bit}"] = pred
            expr = f"pred{bit}(cache)"
        lines += [f"    if {expr}:", f"        m |= {1 << bit}"]
    for group in groups:
        everyone = sum(1 << b for b in group)
        lines.append(f"    if m & {everyone}:")
        for j, b in enumerate(group):
            lines.append(f"        {'elif' if j else 'if'} m & {1 << b}:")
            lines.append(f"            m &= {~(everyone & ~(1 << b))}")
    lines.append("    return m")
    return define(lines, names, "match")


def _bits(mask: int) -> Iterable[int]:
    """The set bits of ``mask``, lowest first.

    >>> list(_bits(0b101001))
    [0, 3, 5]
    """
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _oldest(state: Any, cutoff: int | None) -> int | None:
    """The oldest bucket a sliding-window state holds (after expiring up to ``cutoff``)."""
    if state is None:
        return None
    buckets, values = state.buckets, state.values
    if cutoff is not None and (
        (buckets and buckets[0][0] <= cutoff) or (values and next(iter(values.values())) <= cutoff)
    ):
        state.expire(cutoff)
    oldest = buckets[0][0] if buckets else None
    if values:
        first = next(iter(values.values()))
        if oldest is None or first < oldest:
            oldest = first
    return oldest


def _changing_offsets(
    offsets: set[int], readers: tuple[tuple[int, tuple[Atom, ...] | None], ...]
) -> set[int]:
    """The minute offsets at which some comparison of a recency (``offset / 1440`` days,
    computed as the feature is) differs from the minute before; all of them when a
    reader's comparisons are not known (unsafe).

    >>> sorted(_changing_offsets({2880, 2881}, ((0, (("lt", 2.0),)),)))
    [2880]
    >>> sorted(_changing_offsets({2880, 2881}, ((0, (("gt", 2.0),)), (1, None))))
    [2880, 2881]
    """
    if any(found is None for _, found in readers):
        return offsets
    compared = {atom for _, found in readers for atom in found or ()}
    return {
        k
        for k in offsets
        if any(
            truth(atom, k / MINUTES_PER_DAY) != truth(atom, (k - 1) / MINUTES_PER_DAY)
            for atom in compared
        )
    }


def _recency_source(index: int, source: int, kind: str, offsets: tuple[int, ...]) -> list[str]:
    """Lines setting the timer ``source`` to :func:`_recency_wake` as of ``minute`` (or
    removing it), from ``streams`` and ``timers``."""
    attr = "first" if kind == "first_seen" else "last"
    lines = [f"s = streams[{index}]", f"t = None if s is None else s.{attr}"]
    lines += ["if t is None:", f"    timers.pop({source}, None)", "else:", "    b = t // MINUTE_US"]
    for k, offset in enumerate(offsets):
        lines.append(f"    {'elif' if k else 'if'} b + {offset} > minute:")
        lines.append(f"        timers[{source}] = b + {offset}")
    return [*lines, "    else:", f"        timers.pop({source}, None)"]


def _recency_wake(state: Any, kind: str, offsets: tuple[int, ...], minute: int) -> int | None:
    if state is None:
        return None
    ts = state.first if kind == "first_seen" else state.last
    if ts is None:
        return None
    base = ts // MINUTE_US
    for offset in offsets:
        if base + offset > minute:
            return base + offset
    return None


def _merged_id(kind: str, anon: str | None, properties: str | None) -> str | None:
    """The anonymous id an identify/alias merges (``previous_id`` for alias)."""
    if kind == "alias" and properties:
        previous = _parse(properties).get("previous_id")
        if isinstance(previous, str) and previous:
            return previous
    return anon


def _parse(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _user_agent(context: str) -> str | None:
    """``context.user_agent`` without parsing the whole context when it is plain."""
    start = context.find('"user_agent"')
    if start < 0:
        return None
    if "\\" in context or context.find('"user_agent"', start + 1) >= 0:
        agent = _parse(context).get("user_agent")
        return agent if isinstance(agent, str) else None
    colon = context.find(":", start + 12)
    quote = context.find('"', colon)
    if colon < 0 or quote < 0 or context[colon + 1 : quote].strip():
        return None  # not a string value
    end = context.find('"', quote + 1)
    return context[quote + 1 : end] if end > 0 else None


def _hidden_reason(p: Profile, flagged: frozenset[str]) -> str | None:
    if not p.consent:
        return "no personalization consent"
    if p.bot:
        return "bot user agent"
    if p.person in flagged:
        return "flagged by the data-quality job"
    return None


def now_us() -> int:
    """The wall clock in epoch microseconds."""
    return to_us(datetime.now(UTC))
