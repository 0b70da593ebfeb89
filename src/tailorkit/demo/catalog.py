"""The demo shop's product catalog, search queries and page URLs.

The catalog is built from its own fixed seed, independent of the seed of the
generated visitors, so that a product id means the same product in every
generated data set and in live traffic (placements and recommendations can
refer to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa

SHOP_URL = "https://shop.example.com"
CATALOG_SEED = 20_240_601
N_PRODUCTS = 400
CURRENCY = "EUR"


@dataclass(frozen=True)
class CategorySpec:
    """One product category: its share of the catalog, price level and vocabulary."""

    name: str
    title: str
    share: float
    typical_price: float
    nouns: tuple[str, ...]
    features: tuple[str, ...]
    queries: tuple[str, ...]


CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec(
        "shoes",
        "Shoes",
        0.14,
        75.0,
        ("Sneaker", "Running Shoe", "Boot", "Loafer", "Sandal", "Trail Runner"),
        (
            "cushioned sole",
            "breathable mesh upper",
            "waterproof leather",
            "grippy outsole",
            "arch support",
            "lightweight build",
        ),
        ("running shoes", "white sneakers", "leather boots", "sandals", "trail shoes"),
    ),
    CategorySpec(
        "apparel",
        "Apparel",
        0.18,
        38.0,
        ("T-Shirt", "Hoodie", "Jacket", "Dress", "Jeans", "Sweater"),
        (
            "organic cotton",
            "relaxed fit",
            "stretch fabric",
            "recycled polyester",
            "machine washable",
            "warm lining",
        ),
        ("black hoodie", "summer dress", "denim jeans", "rain jacket", "wool sweater"),
    ),
    CategorySpec(
        "electronics",
        "Electronics",
        0.13,
        190.0,
        ("Headphones", "Smartwatch", "Speaker", "Tablet", "Camera", "E-Reader"),
        (
            "noise cancelling",
            "long battery life",
            "bluetooth 5.3",
            "water resistant",
            "fast charging",
            "high resolution display",
        ),
        ("wireless headphones", "smartwatch", "bluetooth speaker", "4k camera", "tablet 10 inch"),
    ),
    CategorySpec(
        "home",
        "Home & Living",
        0.14,
        55.0,
        ("Lamp", "Cushion", "Vase", "Blanket", "Coffee Maker", "Storage Box"),
        (
            "handmade ceramic",
            "soft wool",
            "energy saving LED",
            "scandinavian design",
            "dishwasher safe",
            "solid oak",
        ),
        ("desk lamp", "throw blanket", "coffee maker", "ceramic vase", "storage boxes"),
    ),
    CategorySpec(
        "beauty",
        "Beauty",
        0.12,
        22.0,
        ("Face Cream", "Serum", "Lipstick", "Shampoo", "Perfume", "Sunscreen"),
        (
            "vegan formula",
            "hyaluronic acid",
            "fragrance free",
            "SPF 50",
            "dermatologically tested",
            "natural oils",
        ),
        ("face cream", "vitamin c serum", "sunscreen spf 50", "shampoo", "perfume"),
    ),
    CategorySpec(
        "sports",
        "Sports",
        0.11,
        50.0,
        ("Yoga Mat", "Dumbbell Set", "Water Bottle", "Backpack", "Tennis Racket", "Bike Light"),
        (
            "non-slip surface",
            "adjustable weight",
            "insulated steel",
            "ergonomic straps",
            "carbon frame",
            "USB rechargeable",
        ),
        ("yoga mat", "dumbbells", "hiking backpack", "water bottle", "tennis racket"),
    ),
    CategorySpec(
        "books",
        "Books",
        0.10,
        16.0,
        ("Novel", "Cookbook", "Travel Guide", "Biography", "Comic", "Workbook"),
        (
            "hardcover edition",
            "illustrated",
            "bestseller",
            "award winning",
            "new translation",
            "large print",
        ),
        ("crime novel", "vegan cookbook", "travel guide italy", "biography", "comics"),
    ),
    CategorySpec(
        "toys",
        "Toys",
        0.08,
        28.0,
        ("Building Set", "Puzzle", "Plush Bear", "Board Game", "Toy Car", "Craft Kit"),
        (
            "for ages 6 and up",
            "1000 pieces",
            "wooden",
            "family game night",
            "battery free",
            "educational",
        ),
        ("lego set", "jigsaw puzzle", "board games", "plush toys", "wooden toys"),
    ),
)
N_CATEGORIES = len(CATEGORIES)
_ADJECTIVES = (
    "Classic",
    "Urban",
    "Pro",
    "Eco",
    "Lite",
    "Max",
    "Nova",
    "Aero",
    "Everyday",
    "Premium",
    "Nordic",
    "Studio",
    "Active",
    "Cozy",
    "Prime",
    "Vista",
)
_COLORS = ("Black", "White", "Navy", "Grey", "Red", "Green", "Sand", "Blue")
_DISCOUNTS = np.array([0.2, 0.3, 0.4, 0.5])
_BARGAIN_PREFIXES = ("cheap", "sale")


@dataclass(frozen=True, eq=False)  # hashed by identity: build_catalog caches one per size
class Catalog:
    """Products sorted by category: category ``c`` owns rows ``cat_start[c]:cat_start[c+1]``."""

    product_id: tuple[str, ...]
    name: tuple[str, ...]
    description: tuple[str, ...]
    category: np.ndarray
    price: np.ndarray
    list_price: np.ndarray
    on_sale: np.ndarray
    in_stock: np.ndarray
    popularity: np.ndarray
    cat_start: np.ndarray
    queries: tuple[str, ...]
    query_category: np.ndarray
    query_is_bargain: np.ndarray

    @property
    def n_products(self) -> int:
        """Number of products."""
        return len(self.product_id)

    @property
    def queries_per_category(self) -> int:
        """Queries per category: base queries first, then their bargain variants."""
        return len(self.queries) // N_CATEGORIES

    def table(self) -> pa.Table:
        """The catalog as the ``products`` table of :class:`~tailorkit.demo.generator.DemoShop`."""
        names = [c.name for c in CATEGORIES]
        return pa.table(
            {
                "product_id": pa.array(self.product_id, pa.string()),
                "name": pa.array(self.name, pa.string()),
                "category": pa.array([names[c] for c in self.category], pa.string()),
                "price": pa.array(self.price, pa.float64()),
                "list_price": pa.array(self.list_price, pa.float64()),
                "on_sale": pa.array(self.on_sale, pa.bool_()),
                "in_stock": pa.array(self.in_stock, pa.bool_()),
                "description": pa.array(self.description, pa.string()),
            }
        )


def _category_sizes(n_products: int) -> np.ndarray:
    shares = np.array([c.share for c in CATEGORIES])
    sizes = np.floor(shares / shares.sum() * n_products).astype(np.int64)
    sizes[np.argsort(-shares)[: n_products - sizes.sum()]] += 1  # hand out the remainder
    return sizes


def _prices(rng: np.random.Generator, category: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    typical = np.array([c.typical_price for c in CATEGORIES])[category]
    # Shop prices end in .99; spread is log-normal as in real catalogs.
    list_price = np.maximum(np.floor(typical * rng.lognormal(0.0, 0.5, category.size)), 1) + 0.99
    on_sale = rng.random(category.size) < 0.2
    discount = np.where(on_sale, rng.choice(_DISCOUNTS, category.size), 0.0)
    return np.round(list_price * (1 - discount), 2), list_price


def _texts(rng: np.random.Generator, category: np.ndarray) -> tuple[list[str], list[str]]:
    names, descriptions = [], []
    for c in category:
        spec = CATEGORIES[int(c)]
        adjective = _ADJECTIVES[rng.integers(len(_ADJECTIVES))]
        noun = spec.nouns[rng.integers(len(spec.nouns))]
        color = _COLORS[rng.integers(len(_COLORS))]
        first, second = rng.choice(len(spec.features), 2, replace=False)
        names.append(f"{adjective} {noun} ({color})")
        descriptions.append(
            f"{adjective} {noun.lower()} in {color.lower()}: {spec.features[first]} and "
            f"{spec.features[second]}. {spec.title} for every day."
        )
    return names, descriptions


def _queries() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    queries: list[str] = []
    category: list[int] = []
    bargain: list[bool] = []
    for c, spec in enumerate(CATEGORIES):
        variants = [(q, False) for q in spec.queries]
        variants += [(f"{p} {q}", True) for p in _BARGAIN_PREFIXES for q in spec.queries[:2]]
        queries += [q for q, _ in variants]
        category += [c] * len(variants)
        bargain += [b for _, b in variants]
    return tuple(queries), np.array(category, np.int16), np.array(bargain)


@lru_cache(maxsize=4)
def build_catalog(n_products: int = N_PRODUCTS, seed: int = CATALOG_SEED) -> Catalog:
    """Build the (cached, deterministic) demo catalog.

    >>> catalog = build_catalog()
    >>> catalog.n_products, catalog.product_id[0]
    (400, 'p0000')
    """
    rng = np.random.default_rng(seed)
    sizes = _category_sizes(n_products)
    category = np.repeat(np.arange(N_CATEGORIES, dtype=np.int16), sizes)
    price, list_price = _prices(rng, category)
    names, descriptions = _texts(rng, category)
    queries, query_category, query_is_bargain = _queries()
    return Catalog(
        product_id=tuple(f"p{i:04d}" for i in range(n_products)),
        name=tuple(names),
        description=tuple(descriptions),
        category=category,
        price=price,
        list_price=list_price,
        on_sale=price < list_price,
        in_stock=rng.random(n_products) < 0.93,
        popularity=rng.lognormal(0.0, 1.0, n_products),
        cat_start=np.concatenate([[0], np.cumsum(sizes)]),
        queries=queries,
        query_category=query_category,
        query_is_bargain=query_is_bargain,
    )
