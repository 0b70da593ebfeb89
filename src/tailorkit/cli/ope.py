"""``tailorkit ope``: off-policy evaluation on the project's decision log or a log file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

POLICY_HELP = (
    "Evaluation policy: uniform, arm:NAME (always that arm), file:PATH (per-row "
    "probabilities, one column per arm) or bandit:KEY (a bandit of placements.yaml as learned)."
)


def run_ope(
    project_dir: Path,
    *,
    log: Path | None,
    bandit: str | None,
    policy: str,
    since: str | None,
    until: str | None,
    estimators: list[str] | None,
    alpha: float,
    bootstrap: int,
    columns: dict[str, Any],
) -> dict[str, Any]:
    """Run one evaluation; raises ``ValueError`` (or ``ConfigError``) with a clear message."""
    from tailorkit.cli.segments import parse_instant
    from tailorkit.measure.ope_logs import evaluate_file, evaluate_project
    from tailorkit.project import load_project

    if (log is None) == (bandit is None):
        raise ValueError("give either --log FILE (an external log) or --bandit KEY (own log)")
    if bootstrap < 0:
        raise ValueError("--bootstrap must be >= 0")
    options: dict[str, Any] = {"alpha": alpha, "n_bootstrap": bootstrap}
    if estimators:
        options["estimators"] = estimators
    if log is not None:
        if since or until:
            raise ValueError("--since/--until apply to --bandit (the decision log) only")
        needs_project = policy.startswith("bandit:")
        project = load_project(project_dir) if needs_project else None
        return evaluate_file(log, policy, project=project, columns=columns, **options)
    assert bandit is not None
    return evaluate_project(
        load_project(project_dir),
        bandit,
        policy,
        since=parse_instant(since) if since else None,
        until=parse_instant(until) if until else None,
        **options,
    )


def _f(value: float) -> str:
    return f"{value:.5g}"


def render_ope(report: dict[str, Any], console: Console) -> None:
    """A table of estimates with intervals, and the diagnostics.

    >>> import io
    >>> out = Console(file=io.StringIO(), width=100)
    >>> render_ope({"source": "log.csv", "policy": "uniform", "n": 4, "alpha": 0.05,
    ...             "arms": ["a", "b"], "skipped": [],
    ...             "logged": {"value": 0.5, "ci_low": 0.1, "ci_high": 0.9},
    ...             "estimates": {"ips": {"value": 0.5, "std_error": 0.2, "ci_low": 0.1,
    ...                                   "ci_high": 0.9, "ci_method": "normal"}},
    ...             "diagnostics": {"mean_weight": 1.0, "max_weight": 1.0,
    ...                             "effective_sample_size": 4.0}}, out)
    >>> "ips" in out.file.getvalue()
    True
    """
    level = f"{1 - report['alpha']:.0%}"
    table = Table(title=f"{report['policy']} on {report['source']} ({report['n']} decisions)")
    for column in ("estimator", "value", "std. error", f"{level} interval"):
        table.add_column(column)
    logged = report["logged"]
    table.add_row(
        "logged policy (observed)", _f(logged["value"]), "",
        f"[{_f(logged['ci_low'])}, {_f(logged['ci_high'])}]",
    )  # fmt: skip
    for name, est in report["estimates"].items():
        table.add_row(
            name, _f(est["value"]), _f(est["std_error"]),
            f"[{_f(est['ci_low'])}, {_f(est['ci_high'])}] {est['ci_method']}",
        )  # fmt: skip
    console.print(table)
    d = report["diagnostics"]
    console.print(
        f"mean importance weight {_f(d['mean_weight'])} (about 1 when propensities are right), "
        f"max {_f(d['max_weight'])}, effective sample size {_f(d['effective_sample_size'])}"
    )
    if report["skipped"]:
        console.print(f"skipped {', '.join(report['skipped'])}: too few rows for a reward model")


def command(
    log: Annotated[
        Path | None, typer.Option("--log", help="External log: CSV, Parquet or NDJSON.")
    ] = None,
    bandit: Annotated[
        str | None, typer.Option(help="Use this bandit's decision log in the project's store.")
    ] = None,
    policy: Annotated[str, typer.Option(help=POLICY_HELP)] = "uniform",
    since: Annotated[str | None, typer.Option(help="Decisions from (ISO-8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Decisions before (ISO-8601).")] = None,
    estimator: Annotated[
        list[str] | None, typer.Option(help="Estimator(s): ips, snips, dm, dr (default all).")
    ] = None,
    alpha: Annotated[float, typer.Option(help="1 - confidence level of the intervals.")] = 0.05,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples for the intervals (0: normal).")
    ] = 0,
    action: Annotated[str, typer.Option(help="--log: action column.")] = "action",
    reward: Annotated[str, typer.Option(help="--log: reward column.")] = "reward",
    propensity: Annotated[str, typer.Option(help="--log: propensity column.")] = "propensity",
    features: Annotated[
        str | None,
        typer.Option(help="--log: comma-separated context columns (default: all others)."),
    ] = None,
    segment: Annotated[str, typer.Option(help="--log: segment column, if present.")] = "segment",
    project: Annotated[Path, typer.Option("--project", "-p", help="Project folder.")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Off-policy evaluation: what another policy would have earned on logged decisions."""
    from tailorkit.cli.main import emit, fail
    from tailorkit.project import ConfigError

    columns: dict[str, Any] = {
        "action": action,
        "reward": reward,
        "propensity": propensity,
        "segment": segment,
        "features": [f.strip() for f in features.split(",") if f.strip()] if features else None,
    }
    try:
        report = run_ope(
            project, log=log, bandit=bandit, policy=policy, since=since, until=until,
            estimators=estimator, alpha=alpha, bootstrap=bootstrap,
            columns=columns,
        )  # fmt: skip
    except (ConfigError, ValueError) as exc:
        fail(str(exc), as_json)
    if as_json:
        emit(report, as_json)
    else:
        render_ope(report, Console())
