"""The ``tailorkit`` command line. Every command takes ``--json`` for machine output."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table

from tailorkit.cli.ope import command as ope_command
from tailorkit.project import ConfigError, Project, load_project

app = typer.Typer(
    help="tailorkit: personalization and experimentation engine.", no_args_is_help=True
)
console = Console(stderr=True)

ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="Project folder.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def emit(data: dict[str, Any], as_json: bool, title: str = "") -> None:
    """Print ``data`` as JSON on stdout, or as a readable table."""
    if as_json:
        sys.stdout.write(json.dumps(data, default=str) + "\n")
        return
    table = Table(title=title, show_header=False)
    for key, value in data.items():
        shown = value if isinstance(value, str | int | float) else json.dumps(value, default=str)
        table.add_row(str(key), str(shown)[:2000])
    Console().print(table)


def fail(message: str, as_json: bool, code: int = 2) -> None:
    """Report an error (as JSON with ``--json``) and exit."""
    if as_json:
        sys.stdout.write(json.dumps({"error": message}) + "\n")
    else:
        console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def open_project(path: Path, as_json: bool) -> Project:
    """Load the project or exit with the file, key and reason."""
    try:
        return load_project(path)
    except ConfigError as exc:
        fail(str(exc), as_json)
        raise  # unreachable: fail exits


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create.")],
    as_json: JsonOpt = False,
) -> None:
    """Create a project folder with commented settings and fresh keys."""
    from tailorkit.project.init import write_project

    try:
        root = write_project(directory)
    except FileExistsError as exc:
        fail(str(exc), as_json)
    project = load_project(root)
    emit(
        {
            "project": str(root),
            "store": project.settings.store_url,
            "ingest_key": project.settings.ingest_keys[0],
            "admin_key": project.settings.admin_keys[0],
        },
        as_json,
        "project created",
    )


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="NDJSON, CSV or Parquet files.")],
    project: ProjectOpt = Path("."),
    on_error: Annotated[
        str, typer.Option(help="skip: load the good lines; abort: load nothing if any is bad.")
    ] = "skip",
    as_json: JsonOpt = False,
) -> None:
    """Validate and store events from files, with a progress bar and a summary."""
    from tailorkit.collect.bulk import ingest_files
    from tailorkit.collect.pipeline import Collector
    from tailorkit.store.warehouse import Warehouse

    if on_error not in ("skip", "abort"):
        fail("--on-error must be 'skip' or 'abort'", as_json)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        fail(f"no such file: {', '.join(missing)}", as_json)
    proj = open_project(project, as_json)
    collector = Collector(Warehouse(proj.settings.store_url), proj.settings)
    total = sum(f.stat().st_size for f in files)
    columns = (
        *Progress.get_default_columns()[:1],
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=as_json) as bar:
        task = bar.add_task("ingesting", total=total)
        try:
            summary = ingest_files(
                collector,
                files,
                on_error,  # type: ignore[arg-type]
                progress=lambda n: bar.advance(task, n),
            )
        except ValueError as exc:
            fail(str(exc), as_json)
    emit(summary.to_dict(), as_json, "ingest")
    if summary.aborted:
        raise typer.Exit(1)


@app.command()
def serve(
    project: ProjectOpt = Path("."),
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
) -> None:
    """Run the HTTP server (ingestion, decisions, admin, metrics, docs at /docs)."""
    import uvicorn

    from tailorkit.server.app import create_app

    proj = open_project(project, False)
    uvicorn.run(
        create_app(proj),
        host=host or proj.settings.host,
        port=port or proj.settings.port,
        log_level="warning",
        access_log=False,
    )


@app.command()
def worker(
    project: ProjectOpt = Path("."),
    name: Annotated[str, typer.Option(help="Consumer name in the group (default: host-pid).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Store events from the event bus (Redis Stream) and update profiles, until SIGTERM."""
    import logging

    from rich.logging import RichHandler

    from tailorkit.cli.worker import run_worker

    handler: logging.Handler = logging.StreamHandler() if as_json else RichHandler(console=console)
    logging.basicConfig(level=logging.INFO, handlers=[handler], format="%(message)s")
    proj = open_project(project, as_json)
    try:
        summary = run_worker(proj, name)
    except ConfigError as exc:
        fail(str(exc), as_json)
    emit(summary, as_json, "worker")


@app.command()
def erase(
    user_id: Annotated[str, typer.Argument(help="User id to erase.")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Erase every event and identity row of a user (and merged anonymous ids)."""
    from tailorkit.store.warehouse import Warehouse

    proj = open_project(project, as_json)
    try:
        deleted = Warehouse(proj.settings.store_url).erase_user(user_id)
    except ValueError as exc:  # an id no stored row can have (NUL)
        fail(str(exc), as_json)
    emit({"user_id": user_id, "events_deleted": deleted}, as_json, "erase")


@app.command()
def purge(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Delete events older than the retention window in tailorkit.yaml."""
    from tailorkit.store.warehouse import Warehouse

    proj = open_project(project, as_json)
    cutoff = datetime.now(UTC) - timedelta(days=proj.settings.retention_days)
    deleted = Warehouse(proj.settings.store_url).purge_before(cutoff)
    emit({"cutoff": cutoff.isoformat(), "events_deleted": deleted}, as_json, "purge")


@app.command()
def quality(
    project: ProjectOpt = Path("."),
    days: Annotated[int, typer.Option(help="Days to report.")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Data-quality report: violations, duplicates, skew, late events, bots, outliers."""
    from tailorkit.collect.quality import quality_report
    from tailorkit.store.warehouse import Warehouse

    proj = open_project(project, as_json)
    report = quality_report(Warehouse(proj.settings.store_url), proj.settings.quality, days)
    emit(report, as_json, "data quality")


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Demo project folder.")] = Path(
        "demo-project"
    ),
    users: Annotated[int, typer.Option(min=100, help="Visitors to simulate.")] = 20_000,
    days: Annotated[int, typer.Option(min=3, help="Days of history.")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    port: Annotated[int, typer.Option(help="Server port.")] = 8000,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Start the server.")
    ] = True,
    models: Annotated[
        str,
        typer.Option(
            help="fast: personas, journeys, recommendations; all: also propensity and churn; none."
        ),
    ] = "fast",
    as_json: JsonOpt = False,
) -> None:
    """Generate a seeded demo shop into a fresh project and start the server."""
    from tailorkit.cli.demo import DemoOptions, build_demo

    if models not in ("fast", "all", "none"):
        fail("--models must be fast, all or none", as_json)
    # with the server, models train beside it (pages show "training…" until they land)
    options = DemoOptions(directory, users, days, seed, models, background_models=serve_after)
    summary = build_demo(options, console, quiet=as_json)
    summary["url"] = f"http://127.0.0.1:{port}/"
    emit(summary, as_json, "tailorkit demo")
    if serve_after:
        console.print(f"serving on {summary['url']}  (admin key: {summary['admin_key']})")
        console.print(
            "the server answers within seconds; the online profiles are rebuilt from the "
            "stored events in the background (/healthz says when), then the models train"
        )
        from tailorkit.cli.demo import start_models, start_traffic

        start_models(directory, models, after=summary["url"])
        traffic = start_traffic(summary["url"], summary["ingest_key"])
        try:
            serve(project=directory, host="127.0.0.1", port=port)
        finally:
            traffic.terminate()


@app.command()
def segments(
    project: ProjectOpt = Path("."),
    at: Annotated[str | None, typer.Option(help="As of an ISO-8601 instant (default now).")] = None,
    days: Annotated[int, typer.Option(min=0, help="Days of size history.")] = 14,
    as_json: JsonOpt = False,
) -> None:
    """Segment sizes, overlap, size over time and segments below min_users (batch)."""
    from tailorkit.cli.segments import build_report, render

    proj = open_project(project, as_json)
    try:
        report = build_report(proj, at, days)
    except (ConfigError, ValueError) as exc:
        fail(str(exc), as_json)
    if as_json:
        emit(report, as_json)
    else:
        render(report, Console())


@app.command("build")
def build_models(
    project: ProjectOpt = Path("."),
    only: Annotated[
        list[str] | None,
        typer.Option(
            help="Step(s) to run: clusters, journeys, propensity, churn, recommendations."
        ),
    ] = None,
    at: Annotated[
        str | None, typer.Option(help="As of an ISO-8601 instant (default: data end).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train and refresh every model (versioned in models/); failed steps keep the old one."""
    from tailorkit.cli.build import render, run_build

    proj = open_project(project, as_json)
    try:
        summary = run_build(proj, only, at, console, quiet=as_json)
    except ValueError as exc:
        fail(str(exc), as_json)
    if as_json:
        emit(summary, as_json)
    else:
        render(summary, Console())
    if summary["failed"]:
        raise typer.Exit(1)


@app.command()
def analyze(
    experiment: Annotated[str, typer.Argument(help="Experiment key (features.yaml experiments).")],
    project: ProjectOpt = Path("."),
    at: Annotated[str | None, typer.Option(help="As of an ISO-8601 instant (default now).")] = None,
    html: Annotated[Path | None, typer.Option(help="Also write the HTML report here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Experiment results: lifts, segments, cumulative, health checks, recommendation."""
    from tailorkit.cli.experiments import render_analysis, run_analysis
    from tailorkit.cli.segments import parse_instant

    proj = open_project(project, as_json)
    try:
        report = run_analysis(proj, experiment, parse_instant(at) if at else None, html)
    except (ConfigError, ValueError) as exc:
        fail(str(exc), as_json)
    if as_json:
        emit(report, as_json)
    else:
        render_analysis(report, Console())


@app.command()
def power(
    baseline: Annotated[float, typer.Option(help="Control conversion rate (or mean with --std).")],
    mde: Annotated[float, typer.Option(help="Minimum detectable effect (absolute).")],
    relative: Annotated[bool, typer.Option(help="--mde is relative to the baseline.")] = False,
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
    power: Annotated[float, typer.Option(help="Target power.")] = 0.8,
    variations: Annotated[int, typer.Option(min=2, help="Variations incl. control.")] = 2,
    one_sided: Annotated[bool, typer.Option(help="One-sided test.")] = False,
    std: Annotated[float | None, typer.Option(help="Standard deviation (mean metrics).")] = None,
    users: Annotated[
        int | None, typer.Option(help="Also: power and MDE at N per variation.")
    ] = None,
    daily_users: Annotated[float | None, typer.Option(help="New users per day.")] = None,
    segment: Annotated[
        str | None, typer.Option(help="Observed daily new users of a segment ('all': everyone).")
    ] = None,
    traffic_share: Annotated[float, typer.Option(help="Share of traffic in the test.")] = 1.0,
    traffic_days: Annotated[int, typer.Option(min=1, help="Days of observed traffic.")] = 28,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Sample size, power and expected duration for an experiment (planning)."""
    from tailorkit.cli.experiments import observed_daily_users, power_report, render_power
    from tailorkit.store.warehouse import Warehouse

    source = "given" if daily_users is not None else None
    if daily_users is None and segment is not None:
        proj = open_project(project, as_json)
        wh = Warehouse(proj.settings.store_url)
        now = datetime.now(UTC)
        daily_users = observed_daily_users(wh, proj.settings.quality, segment, traffic_days, now)
        wh.close()
        source = f"observed: new users of segment {segment!r} over {traffic_days} days"
    try:
        data = power_report(baseline, mde, relative, alpha, power, variations, one_sided, std,
                            users, daily_users or None, traffic_share)  # fmt: skip
    except ValueError as exc:
        fail(str(exc), as_json)
    if "duration" in data:
        data["duration"]["source"] = source
    elif daily_users == 0:
        data["duration"] = {"daily_users": 0, "source": source, "days": None}
    if as_json:
        emit(data, as_json)
    else:
        render_power(data, Console())


app.command("ope")(ope_command)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Benchmark: benchmarks/NAME.py.")],
    folder: Annotated[
        Path | None, typer.Option("--dir", help="Benchmarks folder (default: ./benchmarks).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a benchmark script (arguments after NAME go to it) and print its result line."""
    from tailorkit.cli.bench import BenchError, default_folder, run_bench

    try:
        result = run_bench(
            name, ctx.args, folder or default_folder(), lambda line: print(line, file=sys.stderr)
        )
    except BenchError as exc:
        fail(str(exc), as_json, code=1)
    emit(result, as_json, f"bench {name}")


if __name__ == "__main__":
    app()
