"""``tailorkit demo``: a seeded demo shop in a fresh project, then the server."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tailorkit.collect.pipeline import ACCEPTED, Collector
from tailorkit.collect.raw import raw_from_arrow
from tailorkit.demo import generate_shop
from tailorkit.demo.definitions import best_sellers, history_exposures, write_definitions
from tailorkit.project import Project, load_project
from tailorkit.project.init import write_project
from tailorkit.store.warehouse import Warehouse

if TYPE_CHECKING:
    from tailorkit.learn.build import BuildOptions

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
    # train after set-up, beside the server (start_models); else during set-up
    background_models: bool = False


FAST_MODELS = ["clusters", "journeys", "recommendations"]


def build_options(models: str) -> BuildOptions:
    """The demo's model steps and settings for ``--models`` (fast or all).

    Recommendations try one ALS setting (the full grid chose 16 factors and
    alpha 1 on the demo shop); the hybrid weights are still validated.
    """
    from tailorkit.learn.build import STEPS, BuildOptions  # late: the learning stack
    from tailorkit.learn.recommender import RecConfig

    only = tuple(FAST_MODELS) if models == "fast" else STEPS
    return BuildOptions(only=only, recommendations=RecConfig(factors_grid=(16,), alpha_grid=(1.0,)))


@dataclass
class Phases:
    """Wall-clock and CPU seconds per set-up phase (CPU: this process, all threads).

    The machine may be shared: CPU time shows the work, wall time the wait.

    >>> phases = Phases()
    >>> with phases("nap"):
    ...     pass
    >>> sorted(phases.seconds["nap"])
    ['cpu_seconds', 'seconds']
    """

    seconds: dict[str, dict[str, float]] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = {
                "seconds": round(time.perf_counter() - wall, 2),
                "cpu_seconds": round(time.process_time() - cpu, 2),
            }


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
    phases = Phases()
    if (options.directory / "tailorkit.yaml").exists():
        shutil.rmtree(options.directory)
    root = write_project(options.directory, name="demo-shop")
    # Today's midnight: the demo ends "now" and is reproducible within a day.
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with _progress(console, quiet) as bar:
        task = bar.add_task("generating shop", total=1)
        with phases("generate"):
            shop = generate_shop(
                n_users=options.users, days=options.days, seed=options.seed, end=end
            )
            start = write_definitions(root, end, best_sellers(shop.events, shop.products))
        project = load_project(root)
        bar.advance(task)
        with phases("ingest"):
            accepted = _load(project, shop.events, shop.products, bar)
        with phases("exposures"):
            exposures = _expose(project, shop.events, start, bar)
    models: dict[str, str] = {}
    if options.models != "none" and not options.background_models:
        with phases("models"):
            models = _train(project, console, quiet, options.models)
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
        "phases": phases.seconds,
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

    settings = build_options(models)
    summary = run_build(project, list(settings.only), None, console, quiet, settings)
    return {step: str(r.get("status")) for step, r in summary["steps"].items()}


def start_models(directory: Path, models: str, after: str | None = None) -> threading.Thread | None:
    """Train the demo's models in a background thread (the dashboard shows "training…").

    With ``after`` (the server's URL), training waits until ``/healthz``
    says the profiles are rebuilt: that replay of the history is pure Python
    and would share the interpreter with it.
    """
    if models == "none":
        return None
    from tailorkit.learn.background import train_in_background

    wait = (lambda: wait_until_up(after)) if after else None
    return train_in_background(load_project(directory), build_options(models), wait)


def wait_until_up(url: str, poll: float = 1.0) -> None:
    """Return once ``GET url/healthz`` answers 200 with the online profiles rebuilt."""
    import httpx

    while True:
        try:
            health = httpx.get(url.rstrip("/") + "/healthz", timeout=5)
            if health.status_code == 200 and health.json().get("profiles") == "ready":
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll)


def start_traffic(url: str, ingest_key: str) -> subprocess.Popen[bytes]:
    """Simulated live visitors in a child process (``tailorkit.demo.traffic``)."""
    command = [sys.executable, "-m", "tailorkit.demo.traffic", url.rstrip("/"), ingest_key]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
