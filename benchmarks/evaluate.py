"""Benchmark: tailorkit's evaluation core vs the official ``growthbook`` Python SDK.

The same 20 feature definitions (targeting conditions, percentage rollouts,
2- and 3-way experiments) are evaluated for the same users by both, in one
process, after checking that every value and variation is identical.  Two
patterns are timed:

* ``warm``: one evaluation on a context that already exists (a GrowthBook
  instance, or a tailorkit ``Context``, built and used once beforehand);
* ``per_request``: a new context per request (``GrowthBook(attributes=...,
  features=...)`` vs ``Evaluator.context(attributes)``), then all 20 features.

Prints one JSON line per pattern; the last line is the headline (warm, per
evaluation).  ``--users N`` sets the number of users (default 100,000).

Rollout coverages sit off the hash grid (0.30005, not 0.3): the JavaScript
SDK, which tailorkit follows, includes a user whose hash equals the coverage
and the Python SDK does not, which would otherwise differ for 1 user in 1,000.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from growthbook import GrowthBook

from tailorkit.evaluate import Evaluator

CHUNK = 1000

FEATURES: dict[str, Any] = {
    "dark-mode": {
        "defaultValue": False,
        "rules": [
            {"id": "r1", "condition": {"country": {"$in": ["DE", "AT", "CH"]}}, "force": True}
        ],
    },
    "free-shipping-threshold": {
        "defaultValue": 50,
        "rules": [
            {"condition": {"plan": "premium"}, "force": 0},
            {"condition": {"cart_value": {"$gte": 100}}, "force": 25},
        ],
    },
    "new-checkout": {
        "defaultValue": False,
        "rules": [{"force": True, "coverage": 0.30005, "hashVersion": 2}],
    },
    "search-v2": {"defaultValue": False, "rules": [{"force": True, "coverage": 0.50005}]},
    "homepage-hero": {
        "defaultValue": "a",
        "rules": [
            {
                "key": "hero-test",
                "seed": "hero-test",
                "hashVersion": 2,
                "variations": ["a", "b", "c"],
                "weights": [0.34, 0.33, 0.33],
                "meta": [{"key": "control"}, {"key": "bold"}, {"key": "video"}],
            }
        ],
    },
    "pricing-page": {
        "defaultValue": "classic",
        "rules": [
            {
                "key": "pricing-test",
                "condition": {"country": {"$in": ["US", "CA", "GB", "DE"]}},
                "variations": ["classic", "tiered"],
                "coverage": 0.8,
                "hashVersion": 2,
            }
        ],
    },
    "recommendations-widget": {
        "defaultValue": "off",
        "rules": [{"key": "reco-test", "variations": ["off", "carousel"]}],
    },
    "onboarding-flow": {
        "defaultValue": "standard",
        "rules": [
            {
                "condition": {
                    "age": {"$lt": 25},
                    "segments": {"$elemMatch": {"$eq": "new_visitors"}},
                },
                "force": "guided",
            }
        ],
    },
    "app-banner": {
        "defaultValue": False,
        "rules": [{"condition": {"app_version": {"$vgte": "2.3.0"}}, "force": True}],
    },
    "mobile-layout": {
        "defaultValue": "desktop",
        "rules": [
            {
                "condition": {"device": "mobile", "browser": {"$regex": "^(chrome|safari)"}},
                "force": "compact",
            }
        ],
    },
    "cart-abandon-offer": {
        "defaultValue": None,
        "rules": [
            {
                "condition": {"segments": {"$elemMatch": {"$eq": "cart_abandoners"}}},
                "force": {"discount": 10, "message": "Still thinking it over?"},
            }
        ],
    },
    "loyalty-message": {
        "defaultValue": "",
        "rules": [
            {
                "condition": {"$or": [{"plan": "enterprise"}, {"cart_value": {"$gt": 250}}]},
                "force": "Thanks for being a loyal customer",
            }
        ],
    },
    "checkout-button-color": {
        "defaultValue": "blue",
        "rules": [
            {
                "key": "button-color",
                "namespace": ["checkout", 0, 0.5],
                "hashVersion": 2,
                "variations": ["blue", "green", "orange"],
            }
        ],
    },
    "email-capture": {
        "defaultValue": False,
        "rules": [{"force": True, "range": [0, 0.25], "hashVersion": 2, "seed": "email"}],
    },
    "price-anchoring": {
        "defaultValue": 0,
        "rules": [{"key": "anchor-test", "variations": [0, 1], "coverage": 0.5}],
    },
    "search-ranking": {
        "defaultValue": "bm25",
        "rules": [
            {
                "key": "ranking-test",
                "condition": {"segments": {"$nin": ["bots"]}},
                "variations": ["bm25", "learned", "hybrid"],
                "weights": [0.5, 0.25, 0.25],
                "hashVersion": 2,
            }
        ],
    },
    "young-premium": {
        "defaultValue": False,
        "rules": [
            {
                "condition": {"$and": [{"plan": {"$ne": "free"}}, {"age": {"$lt": 30}}]},
                "force": True,
            }
        ],
    },
    "promo-banner": {
        "defaultValue": "none",
        "rules": [
            {
                "condition": {"country": {"$nin": ["FR", "IT"]}, "cart_value": {"$exists": True}},
                "force": "spring-sale",
            }
        ],
    },
    "enterprise-or-test": {
        "defaultValue": "x",
        "rules": [
            {"condition": {"plan": "enterprise"}, "force": "custom"},
            {"key": "multi-exp", "variations": ["x", "y"], "hashVersion": 2},
        ],
    },
    "page-size": {"defaultValue": {"limit": 20}},
}

COUNTRIES = ["US", "CA", "GB", "DE", "AT", "CH", "FR", "IT", "ES", "NL", "BR", "JP"]
SEGMENTS = ["new_visitors", "cart_abandoners", "vip", "bargain_hunters", "bots"]


def make_users(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Deterministic attribute documents for ``count`` users."""
    rng = random.Random(seed)
    users = []
    for i in range(count):
        user: dict[str, Any] = {
            "id": f"user-{i}",
            "country": rng.choice(COUNTRIES),
            "age": rng.randint(16, 80),
            "plan": rng.choice(["free", "free", "premium", "enterprise"]),
            "segments": rng.sample(SEGMENTS, rng.randint(0, 3)),
            "app_version": f"2.{rng.randint(0, 6)}.{rng.randint(0, 12)}",
            "device": rng.choice(["mobile", "desktop", "tablet"]),
            "browser": rng.choice(["chrome", "safari", "firefox", "edge"]),
        }
        if rng.random() < 0.8:
            user["cart_value"] = round(rng.uniform(0, 400), 2)
        users.append(user)
    return users


def summary(result: Any) -> tuple[Any, ...]:
    """What must agree: value, source and the experiment assignment."""
    exp = (
        result.experiment_result
        if hasattr(result, "experiment_result")
        else result.experimentResult
    )
    if exp is None:
        return (result.value, result.source, None, None)
    variation = exp.variation_id if hasattr(exp, "variation_id") else exp.variationId
    in_experiment = exp.in_experiment if hasattr(exp, "in_experiment") else exp.inExperiment
    return (result.value, result.source, variation, in_experiment)


def check_identical(users: list[dict[str, Any]], keys: list[str]) -> int:
    """Compare every user × feature; return the number of evaluations checked."""
    ev = Evaluator(FEATURES)
    checked = 0
    for attrs in users:
        gb = GrowthBook(attributes=attrs, features=FEATURES)
        ctx = ev.context(attrs)
        for key in keys:
            ours, theirs = summary(ev.eval_feature(key, ctx)), summary(gb.eval_feature(key))
            if ours != theirs:
                raise SystemExit(f"mismatch for {attrs['id']} / {key}: {ours} != {theirs}")
            checked += 1
    return checked


def timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def warm_seconds(
    chunk: list[dict[str, Any]], keys: list[str], ev: Evaluator
) -> tuple[float, float]:
    """Evaluation time on contexts built (and used once) beforehand: (ours, theirs)."""
    contexts = [ev.context(attrs) for attrs in chunk]
    instances = [GrowthBook(attributes=attrs, features=FEATURES) for attrs in chunk]
    for ctx, gb in zip(contexts, instances, strict=True):
        ev.eval_feature(keys[0], ctx)
        gb.eval_feature(keys[0])

    def run_ours() -> None:
        evaluate = ev.eval_feature
        for ctx in contexts:
            for key in keys:
                evaluate(key, ctx)

    def run_theirs() -> None:
        for gb in instances:
            for key in keys:
                gb.eval_feature(key)

    return timed(run_ours), timed(run_theirs)


def per_request_seconds(
    chunk: list[dict[str, Any]], keys: list[str], ev: Evaluator
) -> tuple[float, float]:
    """A new context per request, then every feature: (ours, theirs)."""

    def run_ours() -> None:
        evaluate = ev.eval_feature
        for attrs in chunk:
            ctx = ev.context(attrs)
            for key in keys:
                evaluate(key, ctx)

    def run_theirs() -> None:
        for attrs in chunk:
            gb = GrowthBook(attributes=attrs, features=FEATURES)
            for key in keys:
                gb.eval_feature(key)

    return timed(run_ours), timed(run_theirs)


def measure(users: list[dict[str, Any]], keys: list[str]) -> dict[str, float]:
    """Total seconds per pattern and implementation.

    Chunks of users alternate between the two implementations, so that load
    from other processes on the machine affects both alike.
    """
    ev = Evaluator(FEATURES)
    totals = dict.fromkeys(("ours_req", "theirs_req", "ours_warm", "theirs_warm"), 0.0)
    for start in range(0, len(users), CHUNK):
        chunk = users[start : start + CHUNK]
        gc.collect()
        ours, theirs = per_request_seconds(chunk, keys, ev)
        totals["ours_req"] += ours
        totals["theirs_req"] += theirs
        gc.collect()
        ours, theirs = warm_seconds(chunk, keys, ev)
        totals["ours_warm"] += ours
        totals["theirs_warm"] += theirs
    return totals


def line(metric: str, value: float, baseline: float, **extra: Any) -> str:
    return json.dumps(
        {
            "bench": "evaluate",
            "metric": metric,
            "value": round(value, 3),
            "baseline": round(baseline, 3),
            "ratio": round(baseline / value, 2),
            **extra,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000, help="number of users")
    args = parser.parse_args()
    logging.getLogger("growthbook").setLevel(logging.ERROR)
    users = make_users(args.users)
    keys = list(FEATURES)
    assert len(keys) == 20
    checked = check_identical(users, keys)
    evaluations = len(users) * len(keys)

    totals = measure(users, keys)
    ours_req, theirs_req = totals["ours_req"], totals["theirs_req"]
    ours_warm, theirs_warm = totals["ours_warm"], totals["theirs_warm"]

    per_request = 1e6 / len(users)
    print(line("us_per_request_20_features", ours_req * per_request, theirs_req * per_request,
               users=len(users), checked=checked))  # fmt: skip
    per_eval = 1e6 / evaluations
    print(line("us_per_eval_warm", ours_warm * per_eval, theirs_warm * per_eval,
               users=len(users), checked=checked))  # fmt: skip


if __name__ == "__main__":
    main()
