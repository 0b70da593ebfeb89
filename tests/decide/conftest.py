"""A project with placements, segments, features and templates for the decide tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tailorkit.project.init import write_project

SEGMENTS = {
    "features": {
        "cart_adds_24h": {"count": {"events": ["add_to_cart"], "window": "24h"}},
        "page_views_7d": {"count": {"events": ["page_view"], "window": "7d"}},
        "first_name": {"trait": {"key": "first_name_plain", "type": "string"}},
    },
    "segments": {"cart_abandoners": {"condition": {"cart_adds_24h": {"$gte": 1}}}},
}

FEATURES = {
    "features": {
        "new_checkout": {
            "defaultValue": False,
            "rules": [{"force": True, "condition": {"country": "DE"}}],
        },
        "hero_copy": {
            "defaultValue": "generic",
            "rules": [
                {"key": "hero-copy-test", "variations": ["generic", "bold"], "hashVersion": 2}
            ],
        },
    }
}

PLACEMENTS = {
    "settings": {"deadline_ms": 50, "reload_seconds": 0.5},
    "recommendations": {
        "popular": {
            "items": [
                {"id": "p1", "name": "Boots"},
                {"id": "p2", "name": "Socks"},
                {"id": "p3", "name": "Hat"},
            ],
            "by_segment": {"cart_abandoners": [{"id": "p9", "name": "Your cart"}]},
        }
    },
    "bandits": {
        "promo_bandit": {
            "arms": ["sale", "new_in"],
            "floor": 0.05,
            "reward": {"event": "click", "window": "1h"},
        }
    },
    "placements": {
        "home_hero": {
            "default": "generic",
            "variants": {
                "generic": {"template": "hero_generic.html.j2"},
                "cart": {"content": "<h1>{{ profile.first_name or 'Hi' }}, see your cart</h1>"},
                "mobile": {"content": "<h1>On the go? {{ context.device }}</h1>"},
                "bold": {"content": "<h1><b>BIG</b> news</h1>"},
            },
            "rules": [
                {
                    "id": "abandoners",
                    "priority": 100,
                    "condition": {"segments": "cart_abandoners"},
                    "variant": "cart",
                },
                {
                    "id": "mobile",
                    "priority": 50,
                    "condition": {"device": "mobile"},
                    "variant": "mobile",
                },
                {"id": "copy_test", "priority": 10, "feature": "hero_copy"},
            ],
        },
        "promo": {
            "default": "none",
            "variants": {
                "none": {"content": ""},
                "sale": {"content": "<p>Sale</p>"},
                "new_in": {"content": "<p>New in</p>"},
            },
            "bandit": "promo_bandit",
        },
        "recs": {
            "default": "empty",
            "variants": {
                "empty": {"content": "<ul></ul>"},
                "grid": {
                    "content": "{% for r in recommendations %}<li>{{ r.name }}</li>{% endfor %}"
                },
            },
            "rules": [
                {
                    "id": "popular",
                    "priority": 1,
                    "variant": "grid",
                    "recommendations": {"from": "popular", "count": 2},
                }
            ],
        },
        "banner": {
            "default": "plain",
            "min_dwell": "1h",
            "variants": {
                "plain": {"content": "<div>Free shipping</div>"},
                "de": {
                    "content": "<div>Kostenloser Versand</div>",
                    "frequency_cap": {"max": 2, "window": "1d"},
                },
            },
            "rules": [
                {"id": "german", "priority": 1, "condition": {"country": "DE"}, "variant": "de"}
            ],
        },
    },
}


def write_decide_project(root: Path, placements: dict | None = None) -> Path:
    """A fresh project with the decide test definitions."""
    project = write_project(root)
    (project / "segments.yaml").write_text(yaml.safe_dump(SEGMENTS))
    (project / "features.yaml").write_text(yaml.safe_dump(FEATURES))
    (project / "placements.yaml").write_text(
        yaml.safe_dump(placements or PLACEMENTS, sort_keys=False)
    )
    (project / "templates" / "hero_generic.html.j2").write_text(
        "<h1>Welcome to {{ placement }}</h1>\n"
    )
    return project


@pytest.fixture
def decide_dir(tmp_path: Path) -> Path:
    """A project folder with placements, segments and features."""
    return write_decide_project(tmp_path / "shop")
