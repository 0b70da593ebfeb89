"""``tailorkit analyze`` and ``tailorkit power``: experiment results and planning."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import ibis
from rich.console import Console
from rich.table import Table

from tailorkit.collect.quality import SYSTEM_EVENT_TYPES, clean_events
from tailorkit.measure.stats import (
    expected_duration,
    mde_binomial,
    mde_mean,
    power_binomial,
    power_mean,
    sample_size_binomial,
    sample_size_mean,
)
from tailorkit.project import Project
from tailorkit.project.loader import QualitySettings
from tailorkit.segment.definitions import ENTERED
from tailorkit.store.warehouse import Warehouse

Sides = Literal["two-sided", "one-sided"]
ALL_USERS = "all"


def run_analysis(
    project: Project, key: str, at: datetime | None, html: Path | None
) -> dict[str, Any]:
    """Analyse ``key``; write the HTML report too when ``html`` is given.

    >>> from pathlib import Path
    >>> from tailorkit.measure.analysis.examples import FEATURES
    >>> from tailorkit.project.loader import Settings
    >>> defs = {"features": FEATURES, "segments": {"segments": {"mobile": {}}}}
    >>> project = Project(Path("."), Settings("duckdb://:memory:"), defs)
    >>> run_analysis(project, "checkout", None, None)["users"]["analysed"]
    0
    """
    # imported here: `tailorkit power` needs none of the analysis machinery
    from tailorkit.measure.analysis import analyze_experiment
    from tailorkit.measure.analysis.html import render_html

    report = analyze_experiment(project, key, at=at)
    if html is not None:
        html.write_text(render_html(report), encoding="utf-8")
        report = {**report, "html": str(html)}
    return report


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None:
        return "–"
    return f"{x:+.1%}" if pct else f"{x:.4g}"


def render_analysis(report: dict[str, Any], console: Console) -> None:
    """Readable tables: recommendation, metrics, segments with effects, health.

    >>> import io
    >>> from tailorkit.measure.analysis.examples import AS_OF, example_spec, example_table
    >>> from tailorkit.measure.analysis.pipeline import build_report
    >>> out = Console(file=io.StringIO(), width=120)
    >>> render_analysis(build_report(example_spec(), example_table(), AS_OF,
    ...                              QualitySettings()), out)
    >>> "SHIP" in out.file.getvalue()
    True
    """
    rec = report["recommendation"]
    console.print(f"[bold]{report['name']}[/bold] as of {report['as_of']}")
    console.print(f"[bold]{rec['action'].replace('_', ' ').upper()}[/bold]: {rec['reason']}")
    table = Table(title="metrics (relative lift vs control)")
    for column in ("metric", "role", "variation", "users", "mean", "lift", "interval", "adj. p"):
        table.add_column(column)
    for m in report["metrics"]:
        if "error" in m:
            table.add_row(m["key"], m["role"], "–", "–", "–", m["error"], "", "")
            continue
        c = m["control"]
        table.add_row(m["key"], m["role"], c["variation"], str(c["users"]),
                      _fmt(c["mean"], False), "control", "", "")  # fmt: skip
        for v in m["variations"]:
            lo, hi = v["relative_ci"]
            star = " *" if v["significant"] else ""
            table.add_row("", "", v["variation"], str(v["users"]), _fmt(v["mean"], False),
                          _fmt(v["relative"]) + star, f"[{_fmt(lo)}, {_fmt(hi)}]",
                          f"{v['adjusted_p_value']:.4f}")  # fmt: skip
    console.print(table)
    console.print(f"* significant after {report['settings']['correction_description']}")
    for m in (report.get("factorial") or {}).get("metrics", []):
        for e in m.get("effects", []):
            console.print(
                f"factorial {m['metric']}: {e['name']} {e['estimate']:+.4g} "
                f"(adj. p {e['adjusted_p_value']:.4f}){' *' if e['significant'] else ''}"
            )
    segments = report.get("segments") or {}
    notable = [s for s in segments.get("rows", []) if s["significant"]]
    for s in notable:
        console.print(
            f"segment {s['segment']}: {s['metric']} {s['variation']} {_fmt(s['relative'])} "
            f"(adj. p {s['adjusted_p_value']:.4f})"
        )
    for h in report["health"]:
        console.print(("[green]✓[/green] " if h["ok"] else "[red]✗[/red] ") + h["message"])
    if "html" in report:
        console.print(f"HTML report: {report['html']}")


def observed_daily_users(
    warehouse: Warehouse, quality: QualitySettings, segment: str, days: int, at: datetime
) -> float:
    """New persons per day over the last ``days`` days: first seen, or first entering ``segment``.

    Returning users are not new samples for an experiment, so only first
    appearances count (of anyone with ``segment="all"``).

    >>> from datetime import UTC
    >>> observed_daily_users(Warehouse("duckdb://:memory:"), QualitySettings(), "all", 28,
    ...                      datetime(2026, 3, 1, tzinfo=UTC))
    0.0
    """
    events = clean_events(warehouse, quality)
    if segment == ALL_USERS:
        events = events.filter(events.type.notin(list(SYSTEM_EVENT_TYPES)))
    else:
        events = events.filter(events.type == ENTERED)
        seg = events.properties.cast("json")["segment"].str
        events = events.filter(seg == segment)
    first = events.group_by("person_id").aggregate(first=events.timestamp.min())
    since = at - timedelta(days=days)
    recent = first.filter(first.first >= ibis.literal(since), first.first < ibis.literal(at))
    with warehouse.lock:
        count = int(recent.count().execute())
    return count / days


def _plan(
    baseline: float, mde: float, relative: bool, std: float | None, **kw: Any
) -> dict[str, Any]:
    if std is None:
        plan = sample_size_binomial(baseline, mde, relative, **kw)
    else:
        plan = sample_size_mean(baseline, std, mde, relative, **kw)
    return {
        "metric": "binomial" if std is None else "mean",
        "baseline": baseline,
        "std": std,
        "mde_absolute": plan.effect,
        "mde_relative": plan.effect / baseline,
        "alpha": plan.alpha,
        "alpha_per_comparison": plan.alpha_per_comparison,
        "power": plan.power,
        "variations": plan.n_variations,
        "sides": plan.sides,
        "per_variation": plan.per_variation,
        "total": plan.total,
    }


def _at_users(plan: dict[str, Any], users: int, relative: bool, mde: float) -> dict[str, Any]:
    """What ``users`` per variation give: the power for the MDE and the MDE at 80% power."""
    kw = {"alpha": plan["alpha"], "n_variations": plan["variations"], "sides": plan["sides"]}
    base, std = plan["baseline"], plan["std"]
    if std is None:
        power = power_binomial(base, mde, users, relative, **kw)
        smallest = mde_binomial(base, users, power=plan["power"], **kw)
    else:
        power = power_mean(base, std, mde, users, relative, **kw)
        smallest = mde_mean(base, std, users, power=plan["power"], **kw)
    return {
        "per_variation": users,
        "power": power,
        "mde_absolute": smallest.absolute,
        "mde_relative": smallest.relative,
    }


def power_report(
    baseline: float,
    mde: float,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    variations: int = 2,
    one_sided: bool = False,
    std: float | None = None,
    users: int | None = None,
    daily_users: float | None = None,
    traffic_share: float = 1.0,
) -> dict[str, Any]:
    """Sample size per variation (and optionally power at ``users``, expected duration).

    >>> r = power_report(0.20, 0.05, users=150)
    >>> r["per_variation"], round(r["at_users"]["power"], 2)
    (1091, 0.18)
    """
    sides: Sides = "one-sided" if one_sided else "two-sided"
    kw = {"alpha": alpha, "power": power, "n_variations": variations, "sides": sides}
    out = _plan(baseline, mde, relative, std, **kw)
    if users is not None:
        out["at_users"] = _at_users(out, users, relative, mde)
    if daily_users is not None:
        d = expected_duration(out["per_variation"], variations, daily_users, traffic_share)
        out["duration"] = {
            "daily_users": daily_users,
            "traffic_share": traffic_share,
            "days": d.days,
            "recommended_days": d.recommended_days,
        }
    return out


def render_power(data: dict[str, Any], console: Console) -> None:
    """The plan in plain words.

    >>> import io
    >>> out = Console(file=io.StringIO(), width=200)
    >>> render_power(power_report(0.2, 0.05), out)
    >>> "1,091 users per variation" in out.file.getvalue()
    True
    """
    change = f"{data['mde_absolute']:+.4g} ({data['mde_relative']:+.1%})"
    console.print(
        f"To detect {change} on a baseline of {data['baseline']:.4g} with "
        f"{data['power']:.0%} power at α = {data['alpha']} ({data['sides']}, "
        f"{data['variations']} variations): [bold]{data['per_variation']:,}[/bold] users per "
        f"variation, {data['total']:,} in total."
    )
    if "at_users" in data:
        a = data["at_users"]
        console.print(
            f"With {a['per_variation']:,} users per variation: power {a['power']:.0%} for that "
            f"change; {data['power']:.0%} power only for changes of {a['mde_absolute']:+.4g} "
            f"({a['mde_relative']:+.1%}) or more."
        )
    if "duration" in data:
        d = data["duration"]
        console.print(
            f"At {d['daily_users']:,.1f} new users/day ({d['traffic_share']:.0%} in the "
            f"experiment): {d['days']} days; run {d['recommended_days']} (whole weeks)."
        )
