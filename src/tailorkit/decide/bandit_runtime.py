"""Bandits at serving time: live policies, reward attribution and persisted state.

The pure policies of :mod:`tailorkit.decide.bandits` choose arms; this
module keeps one live policy per bandit of ``placements.yaml``, remembers
each user's pending decision, and turns stored events into rewards:

* a decision is *pending* for the bandit's attribution window;
* a reward event (``reward.event``, for example ``click``) of the same
  person within the window (and, by default, with ``properties.placement``
  naming the decision's placement) rewards it with 1 (or with
  ``properties.reward`` when that is a number in [0, 1]);
* a pending decision that saw no reward by the end of its window, or that
  a newer decision of the same bandit replaces, gets reward 0.

Updates are applied in batches (``update_many``) by :meth:`BanditRuntime.sweep`,
called from a background thread, so the request path only pulls.

With a shared store (:class:`~tailorkit.decide.bandit_state.RedisBanditStats`,
``redis.url`` in ``tailorkit.yaml``) every sweep also sends the statistics the
batch added to Redis and adopts the totals of all replicas, so replicas serve
the same posteriors within a sweep or two. Decisions never wait for Redis; while
it is unreachable a replica learns locally and sends its deltas later.

State (``to_state``) is saved as JSON to a file (default
``<project>/.tailorkit/bandits.json``) and restored at start when the
bandit's definition (its fingerprint) did not change.

>>> from tailorkit.decide.placements import BanditSpec
>>> spec = BanditSpec("hero", "thompson", ("a", "b"), 0.05, (), (), {}, "click", 3600.0,
...                   True, "f1")
>>> runtime = BanditRuntime(seed=1)
>>> runtime.sync({"hero": spec})
>>> pick = runtime.choose(spec, "u1", [], {}, "home", now=0.0)
>>> pick.arm_key in ("a", "b"), 0.05 <= pick.propensity <= 0.95
(True, True)
>>> runtime.reward_events([("u1", "click", '{"placement": "home"}', 10.0)])
1
>>> runtime.sweep(now=20.0)
1
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tailorkit.decide.bandit_state import RedisBanditStats
from tailorkit.decide.bandits import (
    UCB1,
    EpsilonGreedy,
    LinearThompsonSampling,
    LinUCB,
    Policy,
    SegmentedPolicy,
    ThompsonSampling,
    UniformPolicy,
    policy_from_state,
)
from tailorkit.decide.placements import BanditSpec

__all__ = ["BanditRuntime", "Pick", "make_policy"]

log = logging.getLogger(__name__)
OTHER_SEGMENT = "other"
MAX_PENDING = 200_000
CLOCK_SLACK = 5.0

_CLASSES: dict[str, type[Policy]] = {
    "thompson": ThompsonSampling,
    "ucb1": UCB1,
    "epsilon_greedy": EpsilonGreedy,
    "uniform": UniformPolicy,
    "linucb": LinUCB,
    "linear_thompson": LinearThompsonSampling,
}


def make_policy(spec: BanditSpec, rng: Any = None) -> Policy:
    """Build the policy a spec describes (raises ``ValueError``/``TypeError`` if it cannot).

    >>> spec = BanditSpec("b", "ucb1", ("x", "y", "z"), 0.0, ("vip",), (), {"c": 2.0}, None,
    ...                   3600.0, True, "f")
    >>> type(make_policy(spec)).__name__
    'SegmentedPolicy'
    """
    cls: Any = _CLASSES[spec.policy]  # constructors differ: checked when definitions load
    options: dict[str, Any] = dict(spec.options)
    if spec.features:
        options["n_features"] = len(spec.features)
    policy: Policy = cls(n_arms=len(spec.arms), floor=spec.floor, rng=rng, **options)
    if spec.by_segment:
        return SegmentedPolicy(policy, rng=rng)
    return policy


@dataclass(frozen=True, slots=True)
class Pick:
    """One bandit decision: the arm, its propensity and the context it was drawn in."""

    arm: int
    arm_key: str
    propensity: float
    segment: str | None
    context: Any


# A decision waiting for its reward: (bandit, arm, context, placement, at); once resolved:
# (bandit, arm, context, reward). Plain tuples of strings and numbers on purpose: one
# waits per user and bandit for the whole reward window, and the garbage collector stops
# tracking such tuples, while objects were scanned at every collection they survived.
_Pending = tuple[str, int, Any, str, float]
_Resolved = tuple[str, int, Any, float]


def _resolved(pending: _Pending, reward: float) -> _Resolved:
    bandit, arm, context, _, _ = pending
    return (bandit, arm, context, reward)


class _Live:
    """One live policy and its lock (pulls on the request path, updates in the sweeper)."""

    def __init__(self, spec: BanditSpec, policy: Policy) -> None:
        self.spec = spec
        self.policy = policy
        self.lock = threading.Lock()
        self.decisions = 0
        self.rewards = 0.0
        self.updates = 0
        # statistics learned here and not yet sent to the shared store
        self.outbox: dict[str, float] = {}
        self.shared: dict[str, float] | None = None  # last totals adopted from it
        self.in_step = False  # whether the last exchange with the shared store worked

    def learned(self, arms: list[int], rewards: list[float], contexts: Any) -> None:
        """Apply a batch (the caller holds ``lock``) and keep its statistics for sharing."""
        self.policy.update_many(arms, rewards, contexts)
        for name, value in self.policy.statistics_of(arms, rewards, contexts).items():
            self.outbox[name] = self.outbox.get(name, 0.0) + value


class BanditRuntime:
    """Live bandits: choose, attribute rewards, update in batches, persist."""

    def __init__(
        self,
        state_path: Path | None = None,
        seed: int | None = None,
        shared: RedisBanditStats | None = None,
    ) -> None:
        self.state_path = state_path
        self.seed = seed
        self.shared = shared
        self._live: dict[str, _Live] = {}
        self._pending: OrderedDict[tuple[str, str], _Pending] = OrderedDict()
        self._resolved: list[_Resolved] = []
        self._lock = threading.Lock()
        self._dirty = False
        self._saved = self._read_state()

    # -- definitions ------------------------------------------------------------------

    def sync(self, specs: Mapping[str, BanditSpec]) -> None:
        """Adopt new definitions: unchanged bandits keep learning, changed ones restart."""
        live: dict[str, _Live] = {}
        for key, spec in specs.items():
            current = self._live.get(key)
            if current is not None and current.spec.fingerprint == spec.fingerprint:
                current.spec = spec  # reward settings may change without a restart
                live[key] = current
            else:
                live[key] = _Live(spec, self._restore(spec))
        self._live = live  # one assignment: requests see the old or the new set

    def _restore(self, spec: BanditSpec) -> Policy:
        saved = self._saved.get(spec.key)
        if saved is not None and saved.get("fingerprint") == spec.fingerprint:
            try:
                return policy_from_state(saved["state"], rng=self.seed)
            except (KeyError, TypeError, ValueError):
                log.warning("saved state of bandit %s is unusable; starting afresh", spec.key)
        return make_policy(spec, rng=self.seed)

    # -- request path -----------------------------------------------------------------

    def choose(
        self,
        spec: BanditSpec,
        person: str | None,
        segments: Sequence[str],
        attributes: Mapping[str, Any],
        placement: str,
        now: float,
    ) -> Pick:
        """Pull an arm for one user and keep the decision pending for its reward."""
        live = self._live[spec.key]
        segment, context = _context(spec, segments, attributes)
        with live.lock:
            decision = live.policy.pull(context)
            live.decisions += 1
        pick = Pick(decision.arm, spec.arms[decision.arm], decision.propensity, segment, context)
        if person is not None and spec.reward_event is not None:
            self._remember(person, (spec.key, decision.arm, context, placement, now))
        return pick

    def _remember(self, person: str, pending: _Pending) -> None:
        key = (person, pending[0])
        with self._lock:
            old = self._pending.pop(key, None)
            if old is not None:  # replaced before any reward: the earlier showing failed
                self._resolved.append(_resolved(old, 0.0))
            self._pending[key] = pending
            if len(self._pending) > MAX_PENDING:
                _, oldest = self._pending.popitem(last=False)
                self._resolved.append(_resolved(oldest, 0.0))

    # -- rewards ----------------------------------------------------------------------

    def on_stored(self, events: pa.Table) -> None:
        """Collector hook: reward pending decisions from stored events (never raises)."""
        try:
            wanted = {x.spec.reward_event for x in self._live.values() if x.spec.reward_event}
            if not wanted or events.num_rows == 0:
                return
            rows = _reward_rows(events, wanted)
            if rows:
                self.reward_events(rows)
        except Exception:
            log.exception("bandit reward attribution failed for %d events", events.num_rows)

    def reward_events(self, rows: Iterable[tuple[str, str, str | None, float]]) -> int:
        """Attribute ``(person, event type, properties JSON, epoch s)`` rows; count rewards."""
        by_event: dict[str, list[_Live]] = {}
        for live in self._live.values():
            if live.spec.reward_event:
                by_event.setdefault(live.spec.reward_event, []).append(live)
        matched = 0
        with self._lock:
            for person, event_type, properties, at in rows:
                for live in by_event.get(event_type, ()):
                    matched += self._attribute(live.spec, person, properties, at)
        return matched

    def _attribute(self, spec: BanditSpec, person: str, properties: str | None, at: float) -> int:
        pending = self._pending.get((person, spec.key))
        # Client clocks are corrected for skew but not exact: a click stamped a few
        # seconds before the decision still follows it.
        if pending is None:
            return 0
        _, _, _, placement, decided_at = pending
        if not -CLOCK_SLACK <= at - decided_at <= spec.reward_window:
            return 0
        props = _properties(properties)
        if spec.same_placement and props.get("placement") != placement:
            return 0
        value = props.get("reward", 1.0)
        reward = float(value) if isinstance(value, int | float) and 0 <= value <= 1 else 1.0
        del self._pending[(person, spec.key)]
        self._resolved.append(_resolved(pending, reward))
        return 1

    def sweep(self, now: float) -> int:
        """Close expired decisions with reward 0 and apply every resolved reward; count updates."""
        with self._lock:
            expired = [key for key, p in self._pending.items() if now - p[4] > self._window(p[0])]
            for key in expired:
                self._resolved.append(_resolved(self._pending.pop(key), 0.0))
            resolved, self._resolved = self._resolved, []
        applied = self._apply(resolved)
        if self.shared is not None:
            self.share()
        return applied

    def share(self) -> int:
        """Send what each bandit learned here to the shared store and adopt the totals.

        Returns how many bandits are in step with the store; bandits whose
        exchange failed keep their deltas for the next call.
        """
        if self.shared is None:
            return 0
        in_step = 0
        for key, live in list(self._live.items()):
            with live.lock:
                outbox, live.outbox = live.outbox, {}
            totals = self.shared.exchange(
                f"{key}:{live.spec.fingerprint}", outbox, partial(_statistics, live)
            )
            live.in_step = totals is not None
            if totals is None:
                with live.lock:
                    for name, value in outbox.items():
                        live.outbox[name] = live.outbox.get(name, 0.0) + value
                continue
            in_step += 1
            if totals != live.shared:
                with live.lock:
                    # deltas learned meanwhile are in the policy but not in the totals:
                    # adopt the totals plus those, so nothing learned here is undone
                    merged = dict(totals)
                    for name, value in live.outbox.items():
                        merged[name] = merged.get(name, 0.0) + value
                    live.policy.set_statistics(merged)
                live.shared = totals
                self._dirty = True
        return in_step

    def policy(self, key: str) -> Policy:
        """The live policy of bandit ``key`` (``KeyError`` if there is none)."""
        return self._live[key].policy

    def _window(self, bandit: str) -> float:
        live = self._live.get(bandit)
        return live.spec.reward_window if live is not None else 0.0

    def _apply(self, resolved: list[_Resolved]) -> int:
        groups: dict[str, list[_Resolved]] = {}
        for r in resolved:
            groups.setdefault(r[0], []).append(r)
        applied = 0
        for key, items in groups.items():
            live = self._live.get(key)
            if live is None:
                continue  # the bandit was removed or redefined: its old rewards do not apply
            arms = [arm for _, arm, _, _ in items]
            rewards = [float(reward) for _, _, _, reward in items]
            contexts = (
                [context for _, _, context, _ in items] if _needs_context(live.spec) else None
            )
            with live.lock:
                live.learned(arms, rewards, contexts)
            live.updates += len(items)
            live.rewards += math.fsum(rewards)
            applied += len(items)
        if applied:
            self._dirty = True
        return applied

    def update(self, key: str, arm: str, reward: float, segment: str | None = None) -> None:
        """Apply one reward directly (admin API, offline joins)."""
        live = self._live[key]
        index = live.spec.arms.index(arm)
        context = segment if live.spec.by_segment else None
        if live.spec.by_segment and context is None:
            raise ValueError(f"bandit {key} is per segment: give the segment")
        if live.spec.features:
            raise ValueError(f"bandit {key} is linear: its rewards need the feature vector")
        with live.lock:
            live.learned([index], [reward], [context] if context is not None else None)
        live.updates += 1
        live.rewards += reward
        self._dirty = True

    def forget(self, persons: Iterable[str]) -> None:
        """Drop pending decisions of ``persons`` (consent withdrawn): they will not learn."""
        with self._lock:
            for person in persons:
                for key in [k for k in self._pending if k[0] == person]:
                    del self._pending[key]

    # -- state ------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Per bandit: arms, probabilities, counts (admin API)."""
        out = {}
        for key, live in self._live.items():
            with live.lock:
                state = live.policy.to_state()
                probabilities = _probabilities(live)
            out[key] = {
                "policy": live.spec.policy,
                "arms": list(live.spec.arms),
                "probabilities": probabilities,
                "decisions": live.decisions,
                "updates": live.updates,
                "rewards": live.rewards,
                "pending": sum(1 for k in self._pending if k[1] == key),
                "shared": None if self.shared is None else live.in_step,
                "state": state,
            }
        return out

    def save(self, force: bool = False) -> bool:
        """Write every policy's state to the state file (when anything changed)."""
        if self.state_path is None or not (self._dirty or force):
            return False
        doc = {}
        for key, live in self._live.items():
            with live.lock:
                doc[key] = {"fingerprint": live.spec.fingerprint, "state": live.policy.to_state()}
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))
        os.replace(tmp, self.state_path)  # atomic: a crash never leaves half a file
        self._dirty = False
        return True

    def _read_state(self) -> dict[str, Any]:
        if self.state_path is None or not self.state_path.is_file():
            return {}
        try:
            loaded: dict[str, Any] = json.loads(self.state_path.read_text())
            return loaded
        except (OSError, ValueError):
            log.warning("bandit state file %s is unreadable; starting afresh", self.state_path)
            return {}


def _statistics(live: _Live) -> dict[str, float]:
    with live.lock:
        return live.policy.statistics()


def _context(
    spec: BanditSpec, segments: Sequence[str], attributes: Mapping[str, Any]
) -> tuple[str | None, Any]:
    if spec.by_segment:
        segment = next((s for s in spec.by_segment if s in segments), OTHER_SEGMENT)
        return segment, segment
    if spec.features:
        return None, [_number(attributes.get(name)) for name in spec.features]
    return None, None


def _needs_context(spec: BanditSpec) -> bool:
    return bool(spec.by_segment or spec.features)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return 0.0


def _probabilities(live: _Live) -> Any:
    policy = live.policy
    if isinstance(policy, SegmentedPolicy):
        return {seg: list(p.probabilities()) for seg, p in policy.segments.items()}
    if live.spec.features:
        return None  # depends on the feature vector
    return list(policy.probabilities())


def _properties(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _reward_rows(events: pa.Table, wanted: set[str]) -> list[tuple[str, str, str | None, float]]:
    # picked by Arrow: most stored events (the decision log's among them) are not rewards
    picked = events.filter(pc.is_in(events["type"], pa.array(list(wanted), pa.string())))
    if not picked.num_rows:
        return []
    users = picked.column("user_id").to_pylist()
    anons = picked.column("anonymous_id").to_pylist()
    props = picked.column("properties").to_pylist()
    stamps = picked.column("timestamp").cast(pa.int64()).to_pylist()
    rows = []
    for i, t in enumerate(picked.column("type").to_pylist()):
        at = stamps[i] / 1e6
        for person in {users[i], anons[i]} - {None}:
            rows.append((person, t, props[i], at))
    return rows
