"""``tailorkit segments``: the warehouse report of segment sizes, flags, overlap and history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from tailorkit.project import Project
from tailorkit.segment.batch import stored_report
from tailorkit.segment.definitions import parse_definitions
from tailorkit.store.warehouse import Warehouse


def parse_instant(text: str | None) -> datetime:
    """An ISO-8601 instant in UTC (taken as UTC when no offset is given), or now.

    Other offsets are converted: the warehouse returns timestamps in the zone
    they were given in, and converting a fixed offset back needs pytz.

    >>> parse_instant("2024-06-01T00:00:00Z").isoformat()
    '2024-06-01T00:00:00+00:00'
    >>> parse_instant("2024-06-01T00:00:00-05:00").isoformat()
    '2024-06-01T05:00:00+00:00'
    """
    if not text:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def build_report(project: Project, at: str | None, days: int) -> dict[str, Any]:
    """Parse the definitions and run the batch report as of ``at``."""
    definitions = parse_definitions(project.definitions.get("segments", {}))
    warehouse = Warehouse(project.settings.store_url)
    try:
        quality = project.settings.quality
        return stored_report(definitions, warehouse, quality, parse_instant(at), days)
    finally:
        warehouse.close()


def render(data: dict[str, Any], console: Console) -> None:
    """Readable tables: sizes with flags, then the overlap matrix."""
    sizes = Table(title=f"segments as of {data['as_of']} ({data['profiles']} profiles)")
    for column in ("segment", "size", "min_users", "group", "priority", "flag"):
        sizes.add_column(column)
    for seg in data["segments"]:
        flag = "below min_users" + (" (forced)" if seg["forced"] else "")
        sizes.add_row(
            seg["key"],
            str(seg["size"]),
            str(seg["min_users"]),
            seg["exclusive_group"] or "",
            str(seg["priority"]),
            flag if seg["below_min_users"] else "",
        )
    console.print(sizes)
    keys = [s["key"] for s in data["segments"]]
    pairs = [(data["overlap"][a][b], a, b) for i, a in enumerate(keys) for b in keys[i + 1 :]]
    pairs = sorted((p for p in pairs if p[0]), reverse=True)[:10]
    if pairs:
        overlap = Table(title="largest overlaps (--json for the whole matrix)")
        for column in ("segment", "segment", "both", "share of smaller"):
            overlap.add_column(column)
        for both, a, b in pairs:
            smaller = min(data["overlap"][a][a], data["overlap"][b][b]) or 1
            overlap.add_row(a, b, str(both), f"{both / smaller:.0%}")
        console.print(overlap)
