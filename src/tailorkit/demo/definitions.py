"""Demo definitions: segments, experiments, a bandit and personalization rules.

:func:`write_definitions` fills a fresh project folder with what the demo shows
(``segments.yaml`` from the shop example, two experiments in ``features.yaml``,
three placements with a bandit in ``placements.yaml`` and their templates).
:func:`history_exposures` gives the generated history its experiment
exposures, so results exist before any live traffic arrives.
"""

from __future__ import annotations

import copy
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import yaml

from tailorkit.decide.exposures import exposure_event_for
from tailorkit.evaluate import Evaluator, ExposureRecord

SHOP_SEGMENTS = Path(__file__).parent.parent / "segment" / "examples" / "shop.yaml"
#: days before the end of the history when both experiments started
EXPERIMENT_DAYS = 7

FEATURES = {
    "features": {
        "welcome-offer": {
            "defaultValue": "none",
            "description": "Welcome offer for new visitors (targeted experiment).",
            "owner": "growth-team",
            "rules": [
                {
                    "key": "welcome-offer",
                    "condition": {"segments": {"$elemMatch": {"$eq": "new_visitors"}}},
                    "variations": ["none", "ten-percent"],
                    "weights": [0.5, 0.5],
                    "hashAttribute": "id",
                    "hashVersion": 2,
                    "meta": [{"key": "control"}, {"key": "ten-percent"}],
                }
            ],
        },
        "checkout-layout": {
            "defaultValue": {"button": "blue", "copy": "short"},
            "description": "2x2 factorial: button colour x checkout copy.",
            "owner": "payments-team",
            "rules": [
                {
                    "key": "checkout-layout",
                    "variations": [
                        {"button": "blue", "copy": "short"},
                        {"button": "green", "copy": "short"},
                        {"button": "blue", "copy": "long"},
                        {"button": "green", "copy": "long"},
                    ],
                    "weights": [0.25, 0.25, 0.25, 0.25],
                    "hashAttribute": "id",
                    "hashVersion": 2,
                    "meta": [
                        {"key": "blue-short"},
                        {"key": "green-short"},
                        {"key": "blue-long"},
                        {"key": "green-long"},
                    ],
                }
            ],
        },
    },
}

_METRICS = {
    "purchase": {"type": "binomial", "event": "purchase", "window_hours": 72},
    "revenue": {
        "type": "mean",
        "event": "purchase",
        "value": "revenue",
        "window_hours": 72,
        "winsorize_percentile": 0.99,
        "winsorize_ignore_zeros": True,  # most users buy nothing: cap the buyers' amounts
    },
    "cart_adds": {"type": "mean", "event": "add_to_cart", "window_hours": 72},
}


def _experiments(start: datetime) -> dict[str, Any]:
    """Analysis metadata of both experiments (``experiments:`` in features.yaml)."""
    common = {"metrics": _METRICS, "primary_metric": "purchase", "start": start.isoformat()}
    return {
        "welcome-offer": {
            **common,
            "name": "Welcome offer for new visitors",
            "feature": "welcome-offer",
            "guardrails": ["cart_adds"],
            "segments": ["hot_browsers", "window_shoppers"],
        },
        "checkout-layout": {
            **common,
            "name": "Checkout layout (2x2 factorial)",
            "feature": "checkout-layout",
            "segments": ["new_visitors", "window_shoppers", "champions"],
        },
    }


PLACEMENTS: dict[str, Any] = {
    "settings": {"reload_seconds": 2, "exposure_dedup": "30m"},
    "bandits": {
        "promo_bandit": {
            "policy": "thompson",
            "arms": ["sale", "new_in", "free_shipping"],
            "floor": 0.05,
            "by_segment": ["new_visitors", "window_shoppers", "champions"],
            "reward": {"event": "add_to_cart", "window": "1h"},
        }
    },
    "recommendations": {
        # the trained hybrid model once ``tailorkit build`` published one; until then
        # (the demo trains in the background) the best sellers, see write_definitions
        "popular": {"model": "hybrid", "items": []}
    },
    "placements": {
        "home_hero": {
            "default": "generic",
            "min_dwell": "10m",
            "variants": {
                "generic": {"template": "hero_generic.html.j2"},
                "cart": {"template": "hero_cart.html.j2"},
                "welcome": {"content": "<h2>Welcome! Here is 10% off your first order.</h2>"},
                "vip": {"content": "<h2>Thanks for being one of our best customers.</h2>"},
            },
            "rules": [
                {
                    "id": "abandoners",
                    "priority": 100,
                    "condition": {"segments": "cart_abandoners"},
                    "variant": "cart",
                },
                {
                    "id": "champions",
                    "priority": 80,
                    "condition": {"segments": "champions"},
                    "variant": "vip",
                },
                {
                    "id": "newcomers",
                    "priority": 50,
                    "condition": {"segments": "new_visitors"},
                    "variant": "welcome",
                },
            ],
        },
        "promo": {
            "default": "none",
            "variants": {
                "none": {"content": ""},
                "sale": {"content": "<p class='promo'>Summer sale: up to 40% off</p>"},
                "new_in": {"content": "<p class='promo'>New in this week</p>"},
                "free_shipping": {"content": "<p class='promo'>Free shipping today</p>"},
            },
            "rules": [
                {
                    "id": "cart_rescue",
                    "priority": 100,
                    "condition": {"segments": "cart_abandoners"},
                    "variant": "free_shipping",
                },
                # everyone else: the bandit learns which promotion brings cart adds
                {"id": "explore", "priority": 1, "bandit": "promo_bandit"},
            ],
        },
        "recs": {
            "default": "empty",
            "variants": {
                "empty": {"content": ""},
                "grid": {
                    "content": "<ul class='recs'>{% for r in recommendations %}"
                    "<li>{{ r.name }}</li>{% endfor %}</ul>"
                },
            },
            "rules": [
                {
                    "id": "popular",
                    "priority": 1,
                    "variant": "grid",
                    "recommendations": {"from": "popular", "count": 4},
                }
            ],
        },
    },
}

TEMPLATES = {
    "hero_generic.html.j2": "<h2>New season, new favourites</h2>\n",
    "hero_cart.html.j2": "<h2>Your cart is waiting — complete your order today</h2>\n",
}


def _dump(path: Path, doc: dict[str, Any], header: str) -> None:
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def best_sellers(events: pa.Table, products: pa.Table, n: int = 8) -> list[dict[str, Any]]:
    """The ``n`` products bought most often in ``events`` (ties by id), with name and price.

    >>> from tailorkit.demo import generate_shop
    >>> shop = generate_shop(n_users=300, days=7, seed=0)
    >>> top = best_sellers(shop.events, shop.products, 3)
    >>> len(top), sorted(top[0])
    (3, ['id', 'name', 'price'])
    """
    con = duckdb.connect()
    con.register("events", events)
    con.register("products", products)
    rows = con.execute(
        """
        WITH bought AS (
          SELECT unnest(json_extract_string(properties, '$.product_ids[*]')) AS product_id
          FROM events WHERE type = 'purchase'
        )
        SELECT p.product_id, p.name, p.price, count(*) AS n
        FROM bought b JOIN products p USING (product_id)
        GROUP BY ALL ORDER BY n DESC, p.product_id LIMIT $n
        """,
        {"n": n},
    ).fetchall()
    con.close()
    return [{"id": i, "name": name, "price": price} for i, name, price, _ in rows]


def write_definitions(
    root: Path, end: datetime, popular: list[dict[str, Any]] | None = None
) -> datetime:
    """Write the demo's definition files into ``root``; returns the experiments' start.

    ``popular`` (e.g. :func:`best_sellers`) is what the ``recs`` placement
    shows until a recommendation model is trained.
    """
    start = end - timedelta(days=EXPERIMENT_DAYS)
    shutil.copyfile(SHOP_SEGMENTS, root / "segments.yaml")
    features = {**FEATURES, "experiments": _experiments(start)}
    _dump(root / "features.yaml", features, "# Demo flags and experiments (tailorkit demo).\n")
    placements = copy.deepcopy(PLACEMENTS)
    placements["recommendations"]["popular"]["items"] = popular or []
    _dump(root / "placements.yaml", placements, "# Demo placements (tailorkit demo).\n")
    templates = root / "templates"
    templates.mkdir(exist_ok=True)
    for name, text in TEMPLATES.items():
        (templates / name).write_text(text)
    return start


def _first_visits(events: pa.Table, start: datetime) -> list[tuple[str, str | None, Any, bool]]:
    """Per visitor active since ``start``: anonymous id, user id, first visit, new or not."""
    con = duckdb.connect()
    con.register("events", events)
    rows = con.execute(
        """
        WITH e AS (SELECT anonymous_id, user_id, epoch_us(timestamp) AS us FROM events)
        SELECT anonymous_id, max(user_id), min(us) FILTER (WHERE us >= $s), min(us) >= $s
        FROM e WHERE anonymous_id IS NOT NULL
        GROUP BY anonymous_id HAVING max(us) >= $s ORDER BY anonymous_id
        """,
        {"s": int(start.timestamp() * 1_000_000)},
    ).fetchall()
    con.close()
    # microseconds, not timestamps: DuckDB would need pytz to return aware datetimes
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return [(a, u, epoch + timedelta(microseconds=t), bool(new)) for a, u, t, new in rows]


def history_exposures(events: pa.Table, start: datetime) -> list[dict[str, Any]]:
    """Exposure events for the history: each visitor's first visit since ``start``.

    Assignment is tailorkit's own (GrowthBook hashing of ``features.yaml``);
    a visitor whose first ever visit falls after ``start`` counts as a new
    visitor at that moment, which is what the targeted experiment asks for.
    """
    evaluator = Evaluator(FEATURES["features"])
    out: list[dict[str, Any]] = []
    for anonymous_id, user_id, first, new in _first_visits(events, start):
        records: list[ExposureRecord] = []
        person = user_id or anonymous_id
        segments = ["new_visitors"] if new else []
        ctx = evaluator.context({"id": person, "segments": segments}, on_exposure=records.append)
        for feature in FEATURES["features"]:
            evaluator.eval_feature(feature, ctx)
        for record in records:
            out.append(
                exposure_event_for(
                    record, user_id=user_id, anonymous_id=anonymous_id, timestamp=first
                )
            )
    return out
