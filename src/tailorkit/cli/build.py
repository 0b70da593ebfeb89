"""``tailorkit build``: train every model with a progress bar per step, then a summary."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tailorkit.cli.segments import parse_instant
from tailorkit.collect.quality import refresh_flags
from tailorkit.learn.build import STEPS, BuildOptions, build
from tailorkit.project import Project
from tailorkit.store.warehouse import Warehouse


def run_build(
    project: Project,
    only: list[str] | None,
    at: str | None,
    console: Console,
    quiet: bool,
    settings: BuildOptions | None = None,
) -> dict[str, Any]:
    """Build with Rich progress bars on ``console`` (none when ``quiet``).

    ``settings`` gives the model settings (default: :class:`BuildOptions`'s).
    """
    steps = tuple(only or STEPS)
    at_instant = parse_instant(at) if at else None
    options = replace(settings or BuildOptions(), at=at_instant, only=steps)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description:<18}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=quiet) as bar:
        tasks = {s: bar.add_task(s, total=1, status="waiting", start=False) for s in steps}
        loading = bar.add_task("reading events", total=1, status="", start=True)
        started = time.perf_counter()

        def progress(step: str, state: str, details: dict[str, Any]) -> None:
            if state == "start":
                bar.update(loading, completed=1, status=f"{time.perf_counter() - started:.1f}s")
                bar.start_task(tasks[step])
                bar.update(tasks[step], status="training")
                return
            status = "[green]ok" if state == "done" else f"[red]failed: {details.get('error')}"
            bar.update(tasks[step], completed=1, status=status[:80])

        summary = build(project, options, progress)
    summary["quality_flags"] = refresh_quality_flags(project)
    return summary


def refresh_quality_flags(project: Project) -> dict[str, Any] | None:
    """Store fresh bot/outlier flags (what analyses read), unless exclusion is off.

    >>> from pathlib import Path
    >>> from tailorkit.project.loader import Settings
    >>> refresh_quality_flags(Project(Path("."), Settings("duckdb://:memory:"), {}))
    {'flagged_users': 0}
    """
    quality = project.settings.quality
    if not quality.exclude_flagged_users:
        return None
    wh = Warehouse(project.settings.store_url)
    try:
        flags = refresh_flags(wh, quality)
        with wh.lock:
            n = int(flags.person_id.nunique().execute())
    finally:
        wh.close()
    return {"flagged_users": n}


def render(summary: dict[str, Any], console: Console) -> None:
    """One line per step: status, version, headline numbers."""
    table = Table(title=f"tailorkit build as of {summary['as_of']} ({summary['seconds']} s)")
    for column in ("step", "status", "version", "result"):
        table.add_column(column)
    for step, result in summary["steps"].items():
        details = {k: v for k, v in result.items() if k not in ("status", "version")}
        shown = ", ".join(f"{k}={_short(v)}" for k, v in details.items())
        colour = "green" if result["status"] == "ok" else "red"
        table.add_row(step, f"[{colour}]{result['status']}", result.get("version", ""), shown)
    console.print(table)
    if summary.get("quality_flags") is not None:
        flagged = summary["quality_flags"]["flagged_users"]
        console.print(f"bot/outlier flags refreshed: {flagged} persons flagged")
    if summary["failed"]:
        console.print(
            "[yellow]failed steps keep serving their previous version "
            f"(models/<step>/last_failure.json): {', '.join(summary['failed'])}"
        )


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
