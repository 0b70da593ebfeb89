"""A project with 22 features (conditions, rollouts, 2- and 3-way experiments) and its users.

Every kind of rule GrowthBook exports appears: force rules with conditions
(every operator family, saved groups, segments), percentage rollouts
(``coverage``, ``range`` + ``seed``), experiments (weights, coverage,
namespaces, filters, ``hashAttribute``, hash versions 1 and 2, passthrough
variations) and prerequisites (gating and non-gating).

Inputs stay inside what the official Python SDK evaluates like JavaScript
(``tests/evaluate/departures.py``): attributes keep one type each, rollout
coverages sit off the 1/1000 hash grid.
"""

from __future__ import annotations

import random
from typing import Any

SAVED_GROUPS = {"beta_testers": [f"u{i}" for i in range(0, 10_000, 7)]}

FEATURES: dict[str, Any] = {
    "dark-mode": {
        "defaultValue": False,
        "description": "tailorkit-only key, never sent to SDKs",
        "rules": [
            {"id": "dach", "condition": {"country": {"$in": ["DE", "AT", "CH"]}}, "force": True}
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
                "variations": ["a", "b", "c"],
                "weights": [0.5, 0.25, 0.25],
                "coverage": 0.8,
                "hashVersion": 2,
                "meta": [{"key": "control"}, {"key": "bold"}, {"key": "minimal"}],
                "name": "Hero test",
                "phase": "1",
            }
        ],
    },
    "button-color": {
        "defaultValue": "blue",
        "rules": [
            {
                "condition": {"browser": {"$in": ["chrome", "firefox"]}},
                "key": "button-color-test",
                "variations": ["blue", "green"],
            }
        ],
    },
    "pricing-page": {
        "defaultValue": "standard",
        "rules": [
            {
                "key": "pricing-by-company",
                "hashAttribute": "company_id",
                "variations": ["standard", "annual-first"],
                "weights": [0.4, 0.6],
                "hashVersion": 2,
            }
        ],
    },
    "beta-features": {
        "defaultValue": False,
        "rules": [{"condition": {"id": {"$inGroup": "beta_testers"}}, "force": True}],
    },
    "recommendations-algo": {
        "defaultValue": "popular",
        "rules": [
            {"condition": {"segments": {"$elemMatch": {"$eq": "vip"}}}, "force": "vip-model"},
            {
                "key": "reco-algo",
                "variations": ["collaborative", "content-based"],
                "hashVersion": 2,
                "seed": "reco-2026",
            },
        ],
    },
    "banner-config": {
        "defaultValue": {"color": "blue", "text": "Welcome"},
        "rules": [
            {
                "condition": {"$or": [{"country": "US"}, {"age": {"$gte": 65}}]},
                "force": {"color": "red", "text": "Hello", "sizes": [1, 2, 3]},
            }
        ],
    },
    "version-gate": {
        "defaultValue": False,
        "rules": [{"condition": {"app_version": {"$vgte": "2.3.0"}}, "force": True}],
    },
    "staff-tools": {
        "defaultValue": "none",
        "rules": [{"condition": {"email": {"$regex": "@example\\.com$"}}, "force": "internal"}],
    },
    "namespaced-test": {
        "defaultValue": 0,
        "rules": [
            {
                "key": "ns-test",
                "variations": [0, 1],
                "namespace": ["pricing", 0, 0.5],
                "hashVersion": 2,
            }
        ],
    },
    "filtered-test": {
        "defaultValue": "off",
        "rules": [
            {
                "key": "filtered",
                "variations": ["off", "on"],
                "filters": [{"seed": "holdout-2026", "ranges": [[0, 0.6]], "hashVersion": 2}],
                "hashVersion": 2,
            }
        ],
    },
    "dark-mode-extras": {
        "defaultValue": "none",
        "rules": [
            {
                "parentConditions": [{"id": "dark-mode", "condition": {"value": True}}],
                "force": "extras",
            }
        ],
    },
    "checkout-upsell": {
        "defaultValue": False,
        "rules": [
            {
                "parentConditions": [
                    {"id": "new-checkout", "condition": {"value": True}, "gate": True}
                ]
            },
            {"condition": {"cart_value": {"$gt": 30}}, "force": True},
        ],
    },
    "max-items": {
        "defaultValue": 10,
        "rules": [
            {
                "condition": {"plan": {"$in": ["pro", "premium"]}},
                "force": 20,
                "range": [0, 0.50005],
                "seed": "max-items-rollout",
                "hashVersion": 2,
            }
        ],
    },
    "onboarding-flow": {
        "defaultValue": "classic",
        "rules": [
            {
                "key": "onboarding",
                "variations": ["classic", "guided", "video"],
                "hashVersion": 1,
            }
        ],
    },
    "passthrough-test": {
        "defaultValue": "default",
        "rules": [
            {
                "key": "holdback",
                "variations": ["ignored", "treated"],
                "meta": [{"key": "holdback", "passthrough": True}, {"key": "treated"}],
                "hashVersion": 2,
            },
            {"force": "after-passthrough"},
        ],
    },
    "adult-non-us": {
        "defaultValue": False,
        "rules": [
            {
                "condition": {
                    "$nor": [{"country": "US"}, {"age": {"$lt": 18}}],
                    "$not": {"plan": "free"},
                },
                "force": True,
            }
        ],
    },
    "power-user": {
        "defaultValue": False,
        "rules": [
            {
                "condition": {"tags": {"$size": {"$gte": 2}, "$all": ["mobile"]}},
                "force": True,
            }
        ],
    },
    "b2b-layout": {
        "defaultValue": "consumer",
        "rules": [
            {
                "condition": {"company_id": {"$exists": True}, "age": {"$type": "number"}},
                "force": "business",
            }
        ],
    },
}

DOCUMENT: dict[str, Any] = {"features": FEATURES, "savedGroups": SAVED_GROUPS}

_COUNTRIES = ["DE", "AT", "CH", "US", "FR", "GB", "NL", "BR"]
_BROWSERS = ["chrome", "firefox", "safari", "edge"]
_PLANS = ["free", "pro", "premium"]
_SEGMENTS = ["vip", "new", "cart_abandoners"]
_TAGS = ["mobile", "desktop", "newsletter", "app"]


def users(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` users' attribute documents, the same for the same seed."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        user: dict[str, Any] = {
            "id": f"u{i}",
            "country": rng.choice(_COUNTRIES),
            "browser": rng.choice(_BROWSERS),
            "age": rng.randint(14, 80),
            "plan": rng.choice(_PLANS),
            "cart_value": round(rng.uniform(0, 200), 2),
            "app_version": f"{rng.randint(1, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 12)}",
            "email": f"user{i}@{rng.choice(['example.com', 'mail.test', 'example.org'])}",
            "segments": rng.sample(_SEGMENTS, rng.randint(0, 2)),
            "tags": rng.sample(_TAGS, rng.randint(0, 3)),
        }
        if rng.random() < 0.5:
            user["company_id"] = f"c{rng.randint(1, 300)}"
        out.append(user)
    return out
