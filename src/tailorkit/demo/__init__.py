"""tailorkit.demo — seeded demo shop generator and live traffic model.

>>> from tailorkit.demo import generate_shop
>>> generate_shop(n_users=100, days=3, seed=0).products.num_rows
400
"""

from tailorkit.demo.generator import (
    DEFAULT_END,
    SESSION_GAP,
    DemoShop,
    DemoUser,
    demo_users,
    generate_events_table,
    generate_shop,
    new_user,
    simulate_session,
)
from tailorkit.demo.ndjson import iter_event_dicts, write_ndjson

__all__ = [
    "DEFAULT_END",
    "SESSION_GAP",
    "DemoShop",
    "DemoUser",
    "demo_users",
    "generate_events_table",
    "generate_shop",
    "iter_event_dicts",
    "new_user",
    "simulate_session",
    "write_ndjson",
]
