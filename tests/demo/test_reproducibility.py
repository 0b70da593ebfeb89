"""Same seed, same bytes; another seed, other data."""

from __future__ import annotations

from tailorkit.demo import generate_events_table, generate_shop


def test_same_seed_gives_identical_tables() -> None:
    first = generate_shop(n_users=400, days=10, seed=5)
    second = generate_shop(n_users=400, days=10, seed=5)
    assert first.events.equals(second.events)
    assert first.users.equals(second.users)
    assert first.products.equals(second.products)


def test_different_seed_gives_different_events() -> None:
    first = generate_shop(n_users=400, days=10, seed=5)
    other = generate_shop(n_users=400, days=10, seed=6)
    assert not first.events.equals(other.events)
    assert set(first.events.column("event_id").to_pylist()).isdisjoint(
        other.events.column("event_id").to_pylist()
    )
    # The catalog is shared on purpose, so product ids mean the same everywhere.
    assert first.products.equals(other.products)


def test_generate_events_table_has_the_exact_count_and_is_reproducible() -> None:
    table = generate_events_table(12_345, seed=2)
    assert table.num_rows == 12_345
    assert table.equals(generate_events_table(12_345, seed=2))
