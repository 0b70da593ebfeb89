"""A small demo shop loaded into an in-memory warehouse once per test session.

The learn and segment ML tests share it (``functools.cache``): events go
through the real collector (validation, consent, pseudonymization) into
DuckDB, and ``personas`` maps each resolved person to the generator's hidden
label, for checking clusters against the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import ibis
import ibis.expr.types as ir
import pandas as pd

from tailorkit.collect.pipeline import Collector
from tailorkit.collect.raw import raw_from_arrow
from tailorkit.demo import DemoShop, generate_shop
from tailorkit.learn.build import event_source
from tailorkit.learn.data import EventSource, data_range
from tailorkit.project.loader import QualitySettings, Settings
from tailorkit.store.warehouse import Warehouse

USERS = 1200
DAYS = 30
SEED = 5


@dataclass
class LoadedShop:
    """The generated shop, its warehouse and the parsed activity events."""

    shop: DemoShop
    wh: Warehouse
    source: EventSource
    events: ir.Table  # source.clean(): every cleaned behavioural event
    end: datetime  # just after the last stored event
    personas: pd.Series  # person_id -> hidden persona


def load(shop: DemoShop, url: str = "duckdb://:memory:") -> Warehouse:
    """Ingest ``shop`` through the collector; store its catalog as ``products``."""
    wh = Warehouse(url)
    collector = Collector(wh, Settings(store_url=url))
    for start in range(0, shop.events.num_rows, 100_000):
        collector.ingest(raw_from_arrow(shop.events.slice(start, 100_000)), "demo")
    wh.con.create_table("products", ibis.memtable(shop.products), overwrite=True)
    return wh


def persona_of(shop: DemoShop) -> pd.Series:
    """Resolved person id (user id once known, else anonymous id) -> persona."""
    users = shop.users.to_pandas()
    person = users.user_id.fillna(users.anonymous_id)
    return pd.Series(users.persona.to_numpy(), index=person.to_numpy())


@cache
def demo_shop(users: int = USERS, days: int = DAYS, seed: int = SEED) -> LoadedShop:
    """The shared small shop (built on first use)."""
    shop = generate_shop(n_users=users, days=days, seed=seed)
    wh = load(shop)
    source = event_source(wh, QualitySettings())
    span = data_range(wh, source.clean())
    assert span is not None
    end = span[1] + timedelta(microseconds=1)
    return LoadedShop(shop, wh, source, source.clean(), end, persona_of(shop))
