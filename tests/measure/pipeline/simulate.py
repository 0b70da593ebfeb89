"""Seeded simulated experiments as raw events, with known effects.

Each user of an experiment gets (all timestamps whole seconds, in UTC):

* one exposure at a random instant of the first ``days`` days (20% a second
  one later, 1% a second one *in another variation* — they must be excluded);
  5% are exposed anonymously and identify themselves an hour later;
* segment membership events before the exposure (``mobile``/``desktop``; some
  leave ``mobile`` again before the exposure; some enter ``vip`` only *after*
  it — neither may count);
* ``signup`` within 72 h with the variation's probability (some sign up
  later than the window, which must not count);
* ``purchase`` events with a lognormal ``revenue``: a per-user rate ``λ``
  drives both the 14 days before the exposure and the time after it (so
  pre- and post-exposure revenue correlate, as CUPED needs), the variation
  multiplies the rate after exposure;
* ``impression`` events and ``click`` events (click-through rate per variation);
* 0.5% of users browse with a crawler's user agent (flagged as bots).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

START = datetime(2026, 9, 1, tzinfo=UTC)
AT = datetime(2026, 10, 15, tzinfo=UTC)
SEGMENTS = ("mobile", "desktop", "vip")
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1)"
UA = "Mozilla/5.0 (X11; Linux x86_64)"


@dataclass(frozen=True)
class Design:
    """What to simulate; tuples are per variation (control first)."""

    key: str
    users: int
    weights: tuple[float, ...] = (0.5, 0.5)
    signup: tuple[float, ...] = (0.10, 0.10)
    purchase_rate: tuple[float, ...] = (1.0, 1.0)
    ctr: tuple[float, ...] = (0.2, 0.2)
    #: signup probabilities per variation for one segment (heterogeneous effects)
    segment_signup: dict[str, tuple[float, ...]] = field(default_factory=dict)
    days: int = 14
    seed: int = 0


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class _User:
    """Builds one user's events."""

    def __init__(self, design: Design, i: int, rng: np.random.Generator) -> None:
        self.d, self.rng, self.n = design, rng, 0
        self.uid = f"{design.key}-u{i}"
        self.events: list[dict[str, Any]] = []
        self.ua = BOT_UA if rng.random() < 0.005 else UA

    def add(self, type_: str, t: datetime, props: dict[str, Any], **ids: Any) -> None:
        self.n += 1
        self.events.append({
            "event_id": f"{self.uid}-{self.n}", "type": type_,
            "timestamp": _iso(min(t, AT - timedelta(seconds=1))),
            "properties": props, "context": {"user_agent": self.ua},
            **(ids or {"user_id": self.uid}),
        })  # fmt: skip

    def seconds(self, lo: float, hi: float) -> timedelta:
        return timedelta(seconds=int(self.rng.uniform(lo, hi)))


def _exposure(d: Design, v: int) -> dict[str, Any]:
    return {"kind": "experiment", "key": d.key, "variation": v, "variation_key": f"v{v}",
            "propensity": d.weights[v], "hash_attribute": "id"}  # fmt: skip


def _expose(u: _User, v: int) -> datetime:
    d, rng = u.d, u.rng
    t = START + u.seconds(0, d.days * 86400)
    if rng.random() < 0.05:  # anonymous at exposure, identified an hour later
        anon = f"anon-{u.uid}"
        u.add("exposure", t, _exposure(d, v), anonymous_id=anon)
        u.add("identify", t + timedelta(hours=1), {}, anonymous_id=anon, user_id=u.uid)
    else:
        u.add("exposure", t, _exposure(d, v))
    if rng.random() < 0.2:
        u.add("exposure", t + u.seconds(3600, 5 * 86400), _exposure(d, v))
    if rng.random() < 0.01:
        other = (v + 1) % len(d.weights)
        u.add("exposure", t + u.seconds(3600, 5 * 86400), _exposure(d, other))
    return t


def _segments(u: _User, t: datetime) -> str | None:
    rng = u.rng
    seg = rng.choice(["mobile", "desktop", "none"], p=[0.45, 0.45, 0.10])
    if seg != "none":
        u.add("segment_entered", t - u.seconds(86400, 5 * 86400), {"segment": seg})
    if seg == "mobile" and rng.random() < 0.1:  # left again before the exposure
        u.add("segment_exited", t - u.seconds(60, 43200), {"segment": "mobile"})
        seg = "none"
    if rng.random() < 0.1:  # joined only after the exposure: not "at exposure"
        u.add("segment_entered", t + u.seconds(60, 86400), {"segment": "vip"})
    return None if seg == "none" else str(seg)


def _metrics(u: _User, t: datetime, v: int, seg: str | None) -> None:
    d, rng = u.d, u.rng
    p = d.segment_signup.get(seg or "", d.signup)[v]
    if rng.random() < p:
        u.add("signup", t + u.seconds(0, 72 * 3600 - 1), {})
    elif rng.random() < 0.05:  # after the attribution window
        u.add("signup", t + u.seconds(80 * 3600, 120 * 3600), {})
    rate = rng.gamma(1.5, 1.0)
    for _ in range(rng.poisson(rate)):  # the 14 days before exposure (CUPED covariate)
        u.add("purchase", t - u.seconds(1, 14 * 86400), {"revenue": _amount(rng)})
    for _ in range(rng.poisson(0.5)):  # older than the pre-period
        u.add("purchase", t - u.seconds(15 * 86400, 30 * 86400), {"revenue": _amount(rng)})
    for _ in range(rng.poisson(rate * d.purchase_rate[v])):
        u.add("purchase", t + u.seconds(0, 20 * 86400), {"revenue": _amount(rng)})
    impressions = 1 + rng.poisson(2)
    clicks = rng.binomial(impressions, d.ctr[v])
    for k in range(impressions):
        u.add("impression", t + u.seconds(0, 10 * 86400), {"slot": k})
    for _ in range(clicks):
        u.add("click", t + u.seconds(0, 10 * 86400), {})


def _amount(rng: np.random.Generator) -> float:
    return round(float(rng.lognormal(3.0, 0.6)), 2)


def simulate(design: Design) -> list[dict[str, Any]]:
    """All events of the simulated experiment, in a deterministic order."""
    rng = np.random.default_rng(design.seed)
    weights = np.asarray(design.weights) / sum(design.weights)
    events: list[dict[str, Any]] = []
    for i in range(design.users):
        u = _User(design, i, rng)
        v = int(rng.choice(len(weights), p=weights))
        t = _expose(u, v)
        _metrics(u, t, v, _segments(u, t))
        events.extend(u.events)
    return events
