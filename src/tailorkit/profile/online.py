"""Online executor for profile features: incremental, per event, bounded memory.

Aggregates that share an event filter, window and property share one
*stream*. A stream keeps, per user:

* sliding windows: a deque of non-empty buckets ``(bucket, count, sum, min,
  max)`` (min/max ``None`` unless a feature needs them) with running totals;
  a bucket is a tuple, replaced when it changes, because the garbage
  collector stops tracking tuples of numbers: lists, one per bucket, were
  most of what it scanned in a server holding many profiles;
  buckets are ``r`` minutes long (:func:`tailorkit.profile.windows.resolution`)
  and leave from the front as the clock passes ``(bucket + K) * r``.
  Memory: at most ``K + 1`` buckets (1,441 for windows in days).
  Min/max use monotonic wedges, so every operation is amortized O(1) for
  events in time order; a late event (older than the newest bucket) costs a
  rebuild, O(buckets);
* distinct counts: value -> last minute seen, oldest first, at most
  ``max_distinct`` values (the most recently seen are kept, which keeps
  ``min(true count, max_distinct)`` exact; the batch executor computes the
  same ``LEAST``);
* lifetime: counters, min/max, first/last timestamps, a set of at most
  ``max_distinct`` values.

Amounts (sum/min/max) are kept as integer micro-units,
``floor(value * 1e6 + 0.5)``, so sums are exact and identical to the
warehouse's whatever the order of additions.

>>> from tailorkit.profile.definitions import parse_features
>>> plan = ProfilePlan(parse_features({"features": {
...     "views_30m": {"count": {"events": ["page_view"], "window": "30m"}}}}))
>>> p = plan.new_profile("u1")
>>> plan.add_event(p, "page_view", 100 * 60_000_000, 100, None, "e1")
True
>>> plan.values(p, ["views_30m"], 129), plan.values(p, ["views_30m"], 130)
({'views_30m': 1}, {'views_30m': 0})
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from tailorkit.evaluate.conditions import compile_condition
from tailorkit.profile.definitions import (
    RFM_FEATURES,
    SYSTEM_EVENT_TYPES,
    Aggregate,
    FeatureSet,
    ModelScore,
    Ratio,
    Recency,
    Score,
    Trait,
)
from tailorkit.profile.generated import condition_source, define
from tailorkit.profile.windows import MINUTE_US, MINUTES_PER_DAY, resolution

UNITS = 1_000_000
_EMPTY: dict[str, Any] = {}
_NUMBER = (int, float)


def to_units(value: Any) -> int | None:
    """Micro-units of a JSON number (``None`` for anything else, booleans included).

    >>> to_units(31.19), to_units("31.19"), to_units(True)
    (31190000, None, None)
    """
    if type(value) in _NUMBER:
        return math.floor(value * 1e6 + 0.5)
    return None


def distinct_key(value: Any) -> str | float | None:
    """What a distinct count counts: strings, and numbers by value.

    >>> distinct_key("a"), distinct_key(3), distinct_key(3.0), distinct_key(True)
    ('a', 3.0, 3.0, None)
    """
    kind = type(value)
    if kind is str:
        return str(value)
    if kind is int or kind is float:
        return float(value)
    return None


class Stream:
    """One shared (filter, window, property) stream definition."""

    def __init__(self, index: int, spec: Aggregate, needs: set[str], max_distinct: int) -> None:
        self.index = index
        self.types = frozenset(spec.filter.types)
        self.where_condition = spec.filter.where
        self.where: Callable[[Any], bool] | None = (
            compile_condition(spec.filter.where) if spec.filter.where is not None else None
        )
        self.window = spec.window
        #: bucket length in minutes and buckets per window (sliding windows only)
        self.res = resolution(spec.window) if spec.window is not None else 1
        self.span = spec.window // self.res if spec.window is not None else 0
        self.path = tuple(spec.prop.split(".")) if spec.prop else ()
        self.amounts = bool(needs & {"sum", "min", "max"})
        self.extremes = bool(needs & {"min", "max"})
        self.distinct = "distinct" in needs
        self.only_distinct = needs == {"distinct"}
        self.cap = max_distinct

    def new_state(self) -> WindowState | LifetimeState:
        """Empty per-user state."""
        if self.window is None:
            return LifetimeState(self)
        return WindowState(self)


class WindowState:
    """A user's sliding-window aggregates for one stream."""

    __slots__ = ("buckets", "count", "hi", "lo", "newest", "total", "values")

    def __init__(self, stream: Stream | None) -> None:
        self.buckets: deque[tuple[int, int, int, int | None, int | None]] = deque()
        self.count = 0
        self.total = 0
        extremes = stream is not None and stream.extremes
        self.lo: deque[tuple[int, int]] | None = deque() if extremes else None
        self.hi: deque[tuple[int, int]] | None = deque() if extremes else None
        distinct = stream is not None and stream.distinct
        self.values: OrderedDict[Any, int] | None = OrderedDict() if distinct else None
        self.newest = -(1 << 62)  # the latest bucket a distinct value was seen in

    def trim(self, cutoff: int) -> None:
        """Expire if anything is at or before ``cutoff`` (cheap when nothing is)."""
        buckets, values = self.buckets, self.values
        if (buckets and buckets[0][0] <= cutoff) or (
            values and next(iter(values.values())) <= cutoff
        ):
            self.expire(cutoff)

    def add(self, minute: int, units: int | None, key: Any, cap: int) -> None:
        """Count one event of ``minute`` (the caller checked it is inside the window)."""
        buckets = self.buckets
        if not buckets or buckets[-1][0] < minute:
            buckets.append((minute, 0, 0, None, None))
            at = -1
        elif buckets[-1][0] == minute:
            at = -1
        else:
            at = self._late_index(minute)
        _, count, total, low, high = buckets[at]
        self.count += 1
        if units is not None:
            total += units
            self.total += units
            if self.lo is not None:
                low = units if low is None or units < low else low
                high = units if high is None or units > high else high
        buckets[at] = (minute, count + 1, total, low, high)
        if units is not None and self.lo is not None:
            self._wedges(at, minute, units)
        if key is not None and self.values is not None:
            self._distinct(key, minute, cap)

    def _late_index(self, minute: int) -> int:
        """The index of ``minute``'s bucket, inserted empty if there is none."""
        minutes = [b[0] for b in self.buckets]
        at = bisect.bisect_left(minutes, minute)
        if at == len(minutes) or minutes[at] != minute:
            self.buckets.insert(at, (minute, 0, 0, None, None))
        return at

    def _wedges(self, at: int, minute: int, units: int) -> None:
        """Update the min/max wedges after bucket ``at`` took ``units``."""
        if at != -1 and at != len(self.buckets) - 1:
            self.rebuild_wedges()
            return
        lo, hi = self.lo, self.hi
        assert lo is not None and hi is not None
        while lo and lo[-1][1] >= units:
            lo.pop()
        lo.append((minute, units))
        while hi and hi[-1][1] <= units:
            hi.pop()
        hi.append((minute, units))

    def rebuild_wedges(self) -> None:
        """Recompute the min/max wedges from the buckets (after a late event or a merge)."""
        if self.lo is None or self.hi is None:
            return
        self.lo.clear()
        self.hi.clear()
        for minute, _, _, low, high in self.buckets:
            if low is None or high is None:  # both are set together
                continue
            while self.lo and self.lo[-1][1] >= low:
                self.lo.pop()
            self.lo.append((minute, low))
            while self.hi and self.hi[-1][1] <= high:
                self.hi.pop()
            self.hi.append((minute, high))

    def _distinct(self, key: Any, minute: int, cap: int) -> None:
        values = self.values
        assert values is not None
        seen = values.get(key)
        if seen is not None and seen >= minute:
            return
        if minute >= self.newest:
            self.newest = minute
            values[key] = minute
            values.move_to_end(key)
            if len(values) > cap:
                values.popitem(last=False)
            return
        values[key] = minute  # a late event: restore the oldest-first order
        ordered = sorted(values.items(), key=lambda kv: kv[1])[-cap:]
        values.clear()
        values.update(ordered)

    def expire(self, cutoff: int) -> None:
        """Drop everything of minute ``<= cutoff`` (``cutoff = M - N``)."""
        buckets = self.buckets
        if not buckets or buckets[0][0] > cutoff:
            if self.values and next(iter(self.values.values())) <= cutoff:
                self._expire_values(cutoff)
            return
        while buckets and buckets[0][0] <= cutoff:
            bucket = buckets.popleft()
            self.count -= bucket[1]
            self.total -= bucket[2]
        if self.lo is not None and self.hi is not None:
            while self.lo and self.lo[0][0] <= cutoff:
                self.lo.popleft()
            while self.hi and self.hi[0][0] <= cutoff:
                self.hi.popleft()
        if self.values:
            self._expire_values(cutoff)

    def _expire_values(self, cutoff: int) -> None:
        values = self.values
        assert values is not None
        while values and next(iter(values.values())) <= cutoff:
            values.popitem(last=False)

    def oldest(self) -> int | None:
        """The oldest minute still held (its expiry is the next change)."""
        candidates = []
        if self.buckets:
            candidates.append(self.buckets[0][0])
        if self.values:
            candidates.append(next(iter(self.values.values())))
        return min(candidates) if candidates else None

    def to_json(self) -> list[Any]:
        """Plain lists for a shared (Redis) store."""
        values = list(self.values.items()) if self.values is not None else None
        return [list(self.buckets), self.count, self.total, values, self.lo is not None]

    @classmethod
    def from_json(cls, data: list[Any]) -> WindowState:
        """Inverse of :meth:`to_json`."""
        state = cls(None)
        state.buckets = deque(tuple(bucket) for bucket in data[0])
        state.count, state.total = data[1], data[2]
        if data[3] is not None:
            state.values = OrderedDict((k, m) for k, m in data[3])
            state.newest = max(state.values.values(), default=state.newest)
        if data[4]:
            state.lo, state.hi = deque(), deque()
            state.rebuild_wedges()
        return state


class LifetimeState:
    """A user's lifetime aggregates for one stream."""

    __slots__ = ("count", "first", "high", "last", "low", "total", "values")

    def __init__(self, stream: Stream | None) -> None:
        self.count = 0
        self.total = 0
        self.low: int | None = None
        self.high: int | None = None
        self.first: int | None = None
        self.last: int | None = None
        distinct = stream is not None and stream.distinct
        self.values: set[Any] | None = set() if distinct else None

    def add(self, ts_us: int, units: int | None, key: Any, cap: int) -> None:
        """Count one event."""
        self.count += 1
        if self.first is None or ts_us < self.first:
            self.first = ts_us
        if self.last is None or ts_us > self.last:
            self.last = ts_us
        if units is not None:
            self.total += units
            if self.low is None or units < self.low:
                self.low = units
            if self.high is None or units > self.high:
                self.high = units
        if key is not None and self.values is not None and len(self.values) < cap:
            # Lifetime values only accumulate: stopping at the cap keeps min(true, cap) exact
            self.values.add(key)

    def to_json(self) -> list[Any]:
        """Plain lists for a shared (Redis) store."""
        values = sorted(self.values, key=repr) if self.values is not None else None
        return [self.count, self.total, self.low, self.high, self.first, self.last, values]

    @classmethod
    def from_json(cls, data: list[Any]) -> LifetimeState:
        """Inverse of :meth:`to_json`."""
        state = cls(None)
        state.count, state.total, state.low, state.high, state.first, state.last = data[:6]
        state.values = set(data[6]) if data[6] is not None else None
        return state


class Profile:
    """One person's online state: streams, traits, batch features, consent, memberships.

    >>> p = Profile("u1", n_streams=2)
    >>> p.note_consent(100, True); p.note_consent(200, False); p.note_consent(150, True)
    >>> p.consent  # the latest event decides
    False
    >>> Profile.from_bytes(p.to_bytes()).last_us
    200
    """

    __slots__ = (
        "batch",
        "bot",
        "cache",
        "consent",
        "known",
        "last_us",
        "members",
        "person",
        "streams",
        "timers",
        "traits",
        "wake",
    )

    def __init__(self, person: str, n_streams: int) -> None:
        self.person = person
        self.known = False
        self.streams: list[Any] = [None] * n_streams
        self.traits: dict[str, list[Any]] = {}
        self.batch: dict[str, Any] = {}
        self.last_us = -(1 << 62)
        self.consent = True
        self.bot = False
        self.members = 0
        self.wake: int | None = None
        # Feature values as last computed (in process only, never serialized)
        self.cache: dict[str, Any] | None = None
        # The online engine's next wake per timer source, never late (in process only)
        self.timers: dict[int, int] | None = None

    def note_consent(self, ts_us: int, personalization: bool) -> None:
        """Consent follows the person's latest event; at a tie, a refusal wins."""
        if ts_us > self.last_us:
            self.last_us, self.consent = ts_us, personalization
        elif ts_us == self.last_us:
            self.consent = self.consent and personalization

    def to_bytes(self) -> bytes:
        """Serialize for a shared store."""
        streams = [
            None if s is None else [isinstance(s, WindowState), s.to_json()] for s in self.streams
        ]
        doc = [
            self.person,
            self.known,
            streams,
            self.traits,
            self.batch,
            self.last_us,
            self.consent,
            self.bot,
            self.members,
            self.wake,
        ]
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        """Inverse of :meth:`to_bytes`."""
        doc = orjson.loads(data)
        profile = cls(doc[0], len(doc[2]))
        profile.known = doc[1]
        profile.streams = [
            None
            if s is None
            else (WindowState.from_json(s[1]) if s[0] else LifetimeState.from_json(s[1]))
            for s in doc[2]
        ]
        profile.traits, profile.batch = doc[3], doc[4]
        profile.last_us, profile.consent, profile.bot = doc[5], doc[6], doc[7]
        profile.members, profile.wake = doc[8], doc[9]
        return profile


#: Reads one feature of a profile as of a minute, given the features read before it.
Reader = Callable[["Profile", int, dict[str, Any]], Any]


class ProfilePlan:
    """Compiled features: which streams each event type feeds, and how to read features.

    >>> from tailorkit.profile.definitions import parse_features
    >>> plan = ProfilePlan(parse_features({"features": {
    ...     "views": {"count": {"events": ["view"]}},
    ...     "spend": {"sum": {"events": ["buy"], "property": "revenue"}}}}))
    >>> [s.index for s in plan.candidates("buy")], plan.needs_properties("view")
    ([1], False)
    """

    def __init__(self, features: FeatureSet) -> None:
        self.features = features
        self.max_distinct = features.settings.max_distinct
        self.streams: list[Stream] = []
        self.stream_of: dict[str, Stream] = {}
        self._build_streams()
        self.traits = [
            (name, tuple(f.key.split(".")), f.type)
            for name, f in features.features.items()
            if isinstance(f, Trait)
        ]
        self._by_type: dict[str, tuple[Stream, ...]] = {}
        self._needs_props: dict[str, bool] = {}
        self._adders: dict[str, Callable[[list[Any], int, int, Any], int]] = {}
        self.touched = 0
        self.readers = {name: self._reader(name) for name in features.names}

    def _build_streams(self) -> None:
        specs: dict[tuple[str, int | None, str | None], tuple[Aggregate, set[str]]] = {}
        aggregates = [f for f in self.features.features.values() if isinstance(f, Aggregate)]
        for feature in aggregates:
            spec, needs = specs.setdefault(feature.stream_key, (feature, set()))
            needs.add(feature.kind)
        by_key = {}
        for i, (spec, needs) in enumerate(specs.values()):
            by_key[spec.stream_key] = Stream(i, spec, needs, self.max_distinct)
            self.streams.append(by_key[spec.stream_key])
        self.stream_of = {f.name: by_key[f.stream_key] for f in aggregates}

    def new_profile(self, person: str) -> Profile:
        """An empty profile with a slot per stream."""
        return Profile(person, len(self.streams))

    def candidates(self, event_type: str) -> tuple[Stream, ...]:
        """Streams that an event of this type may feed (before property filters)."""
        found = self._by_type.get(event_type)
        if found is None:
            if event_type in SYSTEM_EVENT_TYPES:
                found = ()
            else:
                found = tuple(s for s in self.streams if not s.types or event_type in s.types)
            self._by_type[event_type] = found
        return found

    def needs_properties(self, event_type: str) -> bool:
        """Whether events of this type must have their properties parsed."""
        needed = self._needs_props.get(event_type)
        if needed is None:
            needed = (event_type == "identify" and bool(self.traits)) or any(
                s.where is not None or s.path for s in self.candidates(event_type)
            )
            self._needs_props[event_type] = needed
        return needed

    def add_event(
        self,
        profile: Profile,
        event_type: str,
        ts_us: int,
        clock_minute: int,
        props: Any,
        event_id: str,
    ) -> bool:
        """Feed one consented event; returns whether any stream took it.

        ``props`` is the parsed properties object (``None`` when the caller
        knows no stream needs it). The touched streams are in :attr:`touched`
        (bit ``i`` for stream ``i``) until the next call.
        """
        touched = self.adder(event_type)(profile.streams, ts_us, clock_minute, props)
        if event_type == "identify" and self.traits:
            self.add_traits(profile, ts_us, event_id, props)
        self.touched = touched
        return bool(touched)

    def adder(self, event_type: str) -> Callable[[list[Any], int, int, Any], int]:
        """``add(streams, ts_us, clock_minute, props) -> touched bits``: the streams part
        of :meth:`add_event` for one event type (no traits), compiled once."""
        adder = self._adders.get(event_type)
        if adder is None:
            adder = self._adders[event_type] = _compile_adder(self.candidates(event_type))
        return adder

    def add_traits(self, profile: Profile, ts_us: int, event_id: str, props: Any) -> None:
        """The trait part of :meth:`add_event` (``identify`` events)."""
        for name, path, kind in self.traits:
            node = props
            for part in path:
                node = node.get(part) if type(node) is dict else None
            if not _has_type(node, kind):
                continue
            held = profile.traits.get(name)
            if held is None or (ts_us, event_id) > (held[0], held[1]):
                profile.traits[name] = [ts_us, event_id, float(node) if kind == "number" else node]

    # -- reading ---------------------------------------------------------------

    def expire(self, profile: Profile, clock_minute: int) -> None:
        """Bring every sliding window up to ``clock_minute``."""
        for stream in self.streams:
            state = profile.streams[stream.index]
            if stream.window is not None and state is not None:
                state.expire(clock_minute // stream.res - stream.span)

    def values(self, profile: Profile, names: Iterable[str], clock_minute: int) -> dict[str, Any]:
        """Feature values as of ``clock_minute``; ``names`` must be in dependency order."""
        out: dict[str, Any] = {}
        readers = self.readers
        for name in names:
            out[name] = readers[name](profile, clock_minute, out)
        return out

    def stream_features(self, index: int) -> list[str]:
        """Aggregates fed by stream ``index``."""
        return [n for n, s in self.stream_of.items() if s.index == index]

    def downstream(self, names: Iterable[str]) -> list[str]:
        """``names`` and every feature computed from them, in dependency order."""
        wanted = set(names)
        ordered = []
        for name in self.features.names:
            if name in wanted or any(i in wanted for i in self.features.inputs(name)):
                wanted.add(name)
                ordered.append(name)
        return ordered

    def _reader(self, name: str) -> Reader:
        feature = self.features.features.get(name)
        if name in RFM_FEATURES or isinstance(feature, ModelScore):
            return lambda p, m, done: p.batch.get(name)  # pushed from batch
        assert feature is not None
        if isinstance(feature, Aggregate):
            return self._aggregate_reader(feature)
        if isinstance(feature, Ratio):
            num, den = feature.numerator, feature.denominator
            return lambda p, m, done: _ratio(done[num], done[den])
        if isinstance(feature, Recency):
            of = feature.of
            return lambda p, m, done: _recency(done[of], m)
        if isinstance(feature, Score):
            return _score_reader(feature)
        assert isinstance(feature, Trait)
        return lambda p, m, done: (p.traits.get(name) or (None, None, None))[2]

    def reader_source(
        self, name: str, tag: str, fresh: bool = False
    ) -> tuple[list[str], dict[str, Any]] | None:
        """The reader of ``name`` as Python lines, for compiled refreshes; ``None``: call it.

        The lines set ``new`` from ``p`` (the profile), ``minute`` and
        ``cache`` (the features read before), exactly as the reader would;
        names they need are returned with the ``tag`` prefix. ``fresh``: the
        feature's stream was just fed as of ``minute`` (its state exists and
        has expired up to ``minute``), so the lines skip those checks.
        """
        feature = self.features.features.get(name)
        if name in RFM_FEATURES or feature is None:
            return None
        if isinstance(feature, Aggregate):
            return self._aggregate_source(feature, fresh)
        if isinstance(feature, Recency):
            return [
                f"v = cache[{tag}of]",
                "new = None if v is None else (minute - v // MINUTE_US) / MINUTES_PER_DAY",
            ], {f"{tag}of": feature.of, "MINUTE_US": MINUTE_US, "MINUTES_PER_DAY": MINUTES_PER_DAY}
        if isinstance(feature, Ratio):
            return [
                f"n = cache[{tag}num]",
                f"d = cache[{tag}den]",
                "new = None if n is None or not d else float(n) / float(d)",
            ], {f"{tag}num": feature.numerator, f"{tag}den": feature.denominator}
        if isinstance(feature, Score):
            return _score_source(feature, tag)
        return None

    def never_null(self, name: str) -> bool:
        """Whether the reader of ``name`` always gives a number (counts, sums, scores).

        >>> from tailorkit.profile.definitions import parse_features
        >>> plan = ProfilePlan(parse_features({"features": {"n": {"count": {}},
        ...     "last": {"last_seen": {}}}}))
        >>> plan.never_null("n"), plan.never_null("last")
        (True, False)
        """
        feature = self.features.features.get(name)
        if name in RFM_FEATURES or feature is None:
            return False
        if isinstance(feature, Aggregate):
            return feature.kind in ("count", "distinct", "sum")
        return isinstance(feature, Score)

    def _aggregate_source(
        self, feature: Aggregate, fresh: bool
    ) -> tuple[list[str], dict[str, Any]]:
        """:meth:`_aggregate_reader` as lines: the state ``s``, expired to ``minute``, read."""
        stream = self.stream_of[feature.name]
        i, kind, windowed = stream.index, feature.kind, stream.window is not None
        value = {
            "count": "s.count",
            "sum": "s.total / UNITS",
            "distinct": "len(s.values)",
            "first_seen": "s.first",  # (lifetime only)
            "last_seen": "s.last",
        }.get(kind)
        read = [f"new = {value}"]
        if value is None and windowed:  # min/max: the front of the wedge
            read = [
                f"w = s.{'lo' if kind == 'min' else 'hi'}",
                "new = w[0][1] / UNITS if w else None",
            ]
        elif value is None:
            read = [
                f"u = s.{'low' if kind == 'min' else 'high'}",
                "new = None if u is None else u / UNITS",
            ]
        names = {"UNITS": UNITS}
        if fresh:
            return [f"s = p.streams[{i}]", *read], names
        empty = {"count": "0", "sum": "0.0", "distinct": "0"}.get(kind, "None")
        lines = [f"s = p.streams[{i}]", "if s is None:", f"    new = {empty}", "else:"]
        if windowed and kind == "count":  # the readers' expiry checks (a count: buckets only)
            lines += [f"    c = minute // {stream.res} - {stream.span}", "    b = s.buckets"]
            lines += ["    if b and b[0][0] <= c:", "        s.expire(c)"]
        elif windowed:
            lines += [
                f"    c = minute // {stream.res} - {stream.span}",
                "    b, vs = s.buckets, s.values",
                "    if (b and b[0][0] <= c) or (vs and next(iter(vs.values())) <= c):",
                "        s.expire(c)",
            ]
        return lines + ["    " + line for line in read], names

    def _aggregate_reader(self, feature: Aggregate) -> Reader:
        stream = self.stream_of[feature.name]
        index, kind = stream.index, feature.kind
        if stream.window is None:
            return _lifetime_reader(index, kind)
        return _window_reader(index, stream.res, stream.span, kind, stream.new_state())


def _compile_adder(streams: tuple[Stream, ...]) -> Callable[[list[Any], int, int, Any], int]:
    """``add(states, ts_us, clock_minute, props) -> touched``: one event type's feeds, inlined.

    ``touched`` has bit ``i`` set for each stream ``i`` that took the event.

    The same steps as feeding each candidate stream in turn: the property
    filter, the state created on first use, events older than the window
    skipped, the feed, and the trim that bounds memory. Plain counts in a
    window (most streams) are updated in place without a call.
    """
    names: dict[str, Any] = {"EMPTY": _EMPTY, "MINUTE_US": MINUTE_US, "floor": math.floor}
    lines = [
        "def add(states, ts_us, clock_minute, props):",
        "    minute = ts_us // MINUTE_US",
        "    touched = 0",
    ]
    for stream in streams:
        i = stream.index
        names[f"new{i}"], names[f"where{i}"] = stream.new_state, stream.where
        pad = "    "
        if stream.where is not None:
            lines.append(f"    if {_where_source(stream, names)}:")
            pad = "        "
        body = [
            f"state = states[{i}]",
            "if state is None:",
            f"    state = states[{i}] = new{i}()",
        ]
        if stream.path:
            names.update({f"p{i}_{j}": part for j, part in enumerate(stream.path)})
            body += _value_source(stream)
        if stream.window is None:
            if stream.path:
                body.append(f"state.add(ts_us, u, k, {stream.cap})")
            else:  # LifetimeState.add of an event without a value, inlined
                body += [
                    "state.count += 1",
                    "f = state.first",
                    "if f is None or ts_us < f:",
                    "    state.first = ts_us",
                    "f = state.last",
                    "if f is None or ts_us > f:",
                    "    state.last = ts_us",
                ]
            body.append(f"touched |= {1 << i}")
        else:
            res, span = stream.res, stream.span
            body += [
                f"cutoff = clock_minute // {res} - {span}",
                "bucket = minute" if res == 1 else f"bucket = minute // {res}",
                "if bucket > cutoff:",  # else: older than the window already
            ]
            if not stream.path:  # a count: count_in_window, inlined (a late event: add)
                body += [
                    "    buckets = state.buckets",
                    "    if not buckets or buckets[-1][0] < bucket:",
                    "        buckets.append((bucket, 1, 0, None, None))",
                    "        state.count += 1",
                    "    elif buckets[-1][0] == bucket:",
                    "        buckets[-1] = (bucket, buckets[-1][1] + 1, 0, None, None)",
                    "        state.count += 1",
                    "    else:",
                    "        state.add(bucket, None, None, 0)",
                    "    if buckets[0][0] <= cutoff:",
                    "        state.expire(cutoff)",
                ]
            elif stream.distinct and not stream.amounts and stream.only_distinct:
                body += [  # WindowState._distinct when the value is new or seen earlier
                    "    if k is not None:",
                    "        vs = state.values",
                    "        seen = vs.get(k)",
                    "        if seen is not None and seen >= bucket:",
                    "            pass",
                    "        elif bucket >= state.newest:",
                    "            state.newest = bucket",
                    "            vs[k] = bucket",
                    "            vs.move_to_end(k)",
                    f"            if len(vs) > {stream.cap}:",
                    "                vs.popitem(last=False)",
                    "        else:",
                    f"            state._distinct(k, bucket, {stream.cap})",
                    *_trim_source("    "),
                ]
            else:
                body += [f"    state.add(bucket, u, k, {stream.cap})", *_trim_source("    ")]
            body.append(f"    touched |= {1 << i}")
        lines += [pad + line for line in body]
    lines.append("    return touched")
    return define(lines, names, "add")


def _trim_source(pad: str) -> list[str]:
    """:meth:`WindowState.trim` of ``state`` at ``cutoff``, inlined."""
    return [
        pad + "b, vs = state.buckets, state.values",
        pad + "if (b and b[0][0] <= cutoff) or (vs and next(iter(vs.values())) <= cutoff):",
        pad + "    state.expire(cutoff)",
    ]


def _where_source(stream: Stream, names: dict[str, Any]) -> str:
    """The stream's property filter over ``props``: inlined for a dict where it can be."""
    i = stream.index
    call = f"where{i}(props if props is not None else EMPTY)"
    try:
        inline = condition_source(stream.where_condition, names, "props", f"w{i}_")
    except Exception:  # any other shape (or a malformed one): the predicate decides
        return call
    return f"({inline} if type(props) is dict else {call})"


def _value_source(stream: Stream) -> list[str]:
    """Lines setting ``u`` (:func:`to_units`) and ``k`` (:func:`distinct_key`) of the
    value at the stream's property path (``None`` when a step is not an object)."""
    i = stream.index
    lines = ["v = props"]
    lines += [f"v = v.get(p{i}_{j}) if type(v) is dict else None" for j in range(len(stream.path))]
    lines.append("t = type(v)")
    if stream.amounts:
        lines.append("u = floor(v * 1e6 + 0.5) if t is int or t is float else None")
    else:
        lines.append("u = None")
    if stream.distinct:
        lines.append("k = str(v) if t is str else (float(v) if t is int or t is float else None)")
    else:
        lines.append("k = None")
    return lines


def _window_reader(index: int, res: int, span: int, kind: str, empty: Any) -> Reader:
    """A sliding-window reader; expiry is checked inline (it is rarely due)."""

    def state_at(p: Profile, m: int) -> Any:
        state = p.streams[index]
        if state is None:
            return empty
        cutoff = m // res - span
        buckets, values = state.buckets, state.values
        if (buckets and buckets[0][0] <= cutoff) or (
            values and next(iter(values.values())) <= cutoff
        ):
            state.expire(cutoff)
        return state

    if kind == "count":

        def count(p: Profile, m: int, done: dict[str, Any]) -> int:
            state = p.streams[index]
            if state is None:
                return 0
            buckets = state.buckets
            if buckets and buckets[0][0] <= m // res - span:
                state.expire(m // res - span)
            return int(state.count)

        return count
    if kind == "sum":
        return lambda p, m, done: state_at(p, m).total / UNITS
    if kind == "distinct":
        return lambda p, m, done: len(state_at(p, m).values)

    def extreme(p: Profile, m: int, done: dict[str, Any]) -> Any:
        state = state_at(p, m)
        wedge = state.lo if kind == "min" else state.hi
        return wedge[0][1] / UNITS if wedge else None

    return extreme


def _lifetime_reader(index: int, kind: str) -> Reader:
    def read(p: Profile, m: int, done: dict[str, Any]) -> Any:
        state = p.streams[index]
        if state is None:
            return 0 if kind in ("count", "distinct") else (0.0 if kind == "sum" else None)
        if kind == "count":
            return state.count
        if kind == "sum":
            return state.total / UNITS
        if kind == "distinct":
            return len(state.values)
        if kind in ("min", "max"):
            units = state.low if kind == "min" else state.high
            return None if units is None else units / UNITS
        return state.first if kind == "first_seen" else state.last

    if kind == "count":
        return lambda p, m, done: 0 if (s := p.streams[index]) is None else s.count
    return read


def _ratio(num: Any, den: Any) -> float | None:
    if num is None or not den:
        return None
    return float(num) / float(den)


def _recency(ts_us: int | None, clock_minute: int) -> float | None:
    if ts_us is None:
        return None
    return (clock_minute - ts_us // MINUTE_US) / MINUTES_PER_DAY


def _score_source(feature: Score, tag: str) -> tuple[list[str], dict[str, Any]]:
    """:func:`_score_reader` as lines (the same operations in the same order)."""
    names: dict[str, Any] = {"log": math.log}
    lines = ["t = 0.0"]
    for j, (name, weight) in enumerate(feature.weights):
        names[f"{tag}in{j}"], names[f"{tag}w{j}"] = name, weight
        lines.append(f"x = float(cache[{tag}in{j}] or 0)")
        if feature.transform == "log1p":
            lines.append("x = log(1.0 + (x if x > 0.0 else 0.0))")
        lines.append(f"t = t + {tag}w{j} * x")
    return [*lines, "new = t"], names


def _score_reader(feature: Score) -> Reader:
    weights = feature.weights
    log = feature.transform == "log1p"

    def read(p: Profile, m: int, done: dict[str, Any]) -> float:
        total = 0.0
        for name, weight in weights:
            value = float(done[name] or 0)
            if log:
                # ln(1 + max(x, 0)) rather than log1p: the warehouse computes LN(1 + x)
                value = math.log(1.0 + (value if value > 0.0 else 0.0))
            total = total + weight * value
        return total

    return read


def _has_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return type(value) is str
    if kind == "boolean":
        return type(value) is bool
    return type(value) in _NUMBER


def merge_profiles(plan: ProfilePlan, source: Profile, target: Profile, clock_minute: int) -> None:
    """Fold ``source`` (an anonymous visitor) into ``target`` (the known user).

    >>> from tailorkit.profile.definitions import parse_features
    >>> plan = ProfilePlan(parse_features({"features": {"n": {"count": {}}}}))
    >>> anon, user = plan.new_profile("a1"), plan.new_profile("u1")
    >>> _ = plan.add_event(anon, "view", 60_000_000, 1, None, "e1")
    >>> _ = plan.add_event(user, "view", 120_000_000, 2, None, "e2")
    >>> merge_profiles(plan, anon, user, 2)
    >>> plan.values(user, ["n"], 2)
    {'n': 2}

    The result is what one profile fed with both event histories would hold,
    so that the online executor agrees with the warehouse, which resolves
    anonymous history to the user retroactively.
    """
    plan.expire(source, clock_minute)
    plan.expire(target, clock_minute)
    for stream in plan.streams:
        a, b = source.streams[stream.index], target.streams[stream.index]
        if a is None:
            continue
        if b is None:
            target.streams[stream.index] = a
        elif isinstance(a, WindowState):
            _merge_windows(a, b, stream.cap)
        else:
            _merge_lifetimes(a, b, stream.cap)
    for name, held in source.traits.items():
        mine = target.traits.get(name)
        if mine is None or (held[0], held[1]) > (mine[0], mine[1]):
            target.traits[name] = held
    for name, value in source.batch.items():
        target.batch.setdefault(name, value)
    target.note_consent(source.last_us, source.consent)
    target.bot = target.bot or source.bot
    target.known = target.known or source.known
    target.cache = None  # the merged history changes every feature
    target.timers = None


def _merge_windows(a: WindowState, b: WindowState, cap: int) -> None:
    by_minute: dict[int, list[Any]] = {bucket[0]: list(bucket) for bucket in b.buckets}
    for minute, count, total, low, high in a.buckets:
        mine = by_minute.get(minute)
        if mine is None:
            by_minute[minute] = [minute, count, total, low, high]
            continue
        mine[1] += count
        mine[2] += total
        mine[3] = _pick(min, mine[3], low)
        mine[4] = _pick(max, mine[4], high)
    b.buckets = deque(tuple(by_minute[m]) for m in sorted(by_minute))
    b.count = sum(bucket[1] for bucket in b.buckets)
    b.total = sum(bucket[2] for bucket in b.buckets)
    b.rebuild_wedges()
    if a.values is not None and b.values is not None:
        merged = dict(b.values)
        for key, minute in a.values.items():
            merged[key] = max(minute, merged.get(key, minute))
        b.values = OrderedDict(sorted(merged.items(), key=lambda kv: kv[1])[-cap:])
        b.newest = max(a.newest, b.newest)


def _merge_lifetimes(a: LifetimeState, b: LifetimeState, cap: int) -> None:
    b.count += a.count
    b.total += a.total
    b.low = _pick(min, b.low, a.low)
    b.high = _pick(max, b.high, a.high)
    b.first = _pick(min, b.first, a.first)
    b.last = _pick(max, b.last, a.last)
    if a.values is not None and b.values is not None:
        for key in sorted(a.values - b.values, key=repr):
            if len(b.values) >= cap:
                break
            b.values.add(key)


def _pick(choose: Callable[[int, int], int], x: int | None, y: int | None) -> int | None:
    if x is None:
        return y
    return x if y is None else choose(x, y)
