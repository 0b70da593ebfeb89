"""``tailorkit demo``: a seeded demo shop in a fresh project, then the server."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ibis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tailorkit.collect.pipeline import ACCEPTED, Collector
from tailorkit.collect.raw import raw_from_arrow
from tailorkit.demo import generate_shop
from tailorkit.demo.definitions import history_exposures, write_definitions
from tailorkit.project import Project, load_project
from tailorkit.project.init import write_project
from tailorkit.store.warehouse import Warehouse

CHUNK = 200_000


@dataclass
class DemoOptions:
    """Scale and place of the demo."""

    directory: Path
    users: int = 20_000
    days: int = 30
    seed: int = 0
    # "fast": personas, journeys, recommendations (seconds); "all" adds the
    # LightGBM propensity and churn models; "none" trains nothing.
    models: str = "fast"


FAST_MODELS = ["clusters", "journeys", "recommendations"]


def _progress(console: Console, quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )


def build_demo(options: DemoOptions, console: Console, quiet: bool = False) -> dict[str, Any]:
    """Create the demo project, generate the shop and load it; returns a summary."""
    started = time.perf_counter()
    if (options.directory / "tailorkit.yaml").exists():
        shutil.rmtree(options.directory)
    root = write_project(options.directory, name="demo-shop")
    # Today's midnight: the demo ends "now" and is reproducible within a day.
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = write_definitions(root, end)
    project = load_project(root)
    with _progress(console, quiet) as bar:
        task = bar.add_task("generating shop", total=1)
        shop = generate_shop(n_users=options.users, days=options.days, seed=options.seed, end=end)
        bar.advance(task)
        accepted = _load(project, shop.events, shop.products, bar)
        exposures = _expose(project, shop.events, start, bar)
    models = _train(project, console, quiet, options.models) if options.models != "none" else {}
    return {
        "project": str(root),
        "users": options.users,
        "days": options.days,
        "seed": options.seed,
        "events_generated": shop.events.num_rows,
        "events_stored": accepted,
        "exposures_stored": exposures,
        "models": models,
        "admin_key": project.settings.admin_keys[0],
        "ingest_key": project.settings.ingest_keys[0],
        "setup_seconds": round(time.perf_counter() - started, 1),
    }


def _load(project: Project, events: Any, products: Any, bar: Progress) -> int:
    warehouse = Warehouse(project.settings.store_url)
    collector = Collector(warehouse, project.settings)
    task = bar.add_task("validating and storing events", total=events.num_rows)
    accepted = 0
    for start in range(0, events.num_rows, CHUNK):
        part = events.slice(start, CHUNK)
        result = collector.ingest(raw_from_arrow(part), "demo")
        accepted += result.count(ACCEPTED)
        bar.advance(task, part.num_rows)
    with warehouse.lock:
        warehouse.con.create_table("products", ibis.memtable(products), overwrite=True)
    warehouse.close()
    return accepted


def _expose(project: Project, events: Any, start: datetime, bar: Progress) -> int:
    """Store the history's experiment exposures (so results exist before live traffic)."""
    task = bar.add_task("experiment exposures", total=1)
    items = history_exposures(events, start)
    warehouse = Warehouse(project.settings.store_url)
    collector = Collector(warehouse, project.settings)
    result = collector.ingest_items(items, "decision")
    warehouse.close()
    bar.advance(task)
    return result.count(ACCEPTED)


def _train(project: Project, console: Console, quiet: bool, models: str) -> dict[str, str]:
    """Train the models (``tailorkit build``); a failed step is reported, not fatal."""
    from tailorkit.cli.build import run_build  # late: imports the learning stack

    only = FAST_MODELS if models == "fast" else None
    summary = run_build(project, only, None, console, quiet)
    return {step: str(r.get("status")) for step, r in summary["steps"].items()}


def start_traffic(url: str, ingest_key: str) -> subprocess.Popen[bytes]:
    """Simulated live visitors in a child process (``tailorkit.demo.traffic``)."""
    command = [sys.executable, "-m", "tailorkit.demo.traffic", url.rstrip("/"), ingest_key]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
