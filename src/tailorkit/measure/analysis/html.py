"""The HTML experiment report: one self-contained file, charts as inline SVG.

No JavaScript, no CDN, no fonts to fetch: the report works offline and can be
attached to a ticket. Chart geometry is computed here; the Jinja2 template
(autoescaped) only places the numbers.

>>> from tailorkit.measure.analysis.html import Scale
>>> Scale(-0.1, 0.1, 0, 200).px(0.0)
100.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader

PALETTE = ("#2563eb", "#d97706", "#7c3aed", "#059669", "#db2777", "#0891b2")
FOREST_WIDTH, FOREST_LEFT, FOREST_ROW = 720, 230, 28
CUM_WIDTH, CUM_HEIGHT, CUM_LEFT, CUM_TOP = 720, 240, 56, 12


@dataclass(frozen=True)
class Scale:
    """Linear map of ``[lo, hi]`` onto pixels ``[p0, p1]`` (values outside are clamped)."""

    lo: float
    hi: float
    p0: float
    p1: float

    def px(self, value: float) -> float:
        """Pixel position of ``value``."""
        v = min(max(value, self.lo), self.hi)
        return round(self.p0 + (v - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0), 1)

    def ticks(self, count: int = 5) -> list[tuple[float, str]]:
        """About ``count`` round tick positions with percentage labels."""
        step = _nice((self.hi - self.lo) / count)
        first = math.ceil(self.lo / step) * step
        out = []
        v = first
        while v <= self.hi + 1e-12:
            out.append((self.px(v), f"{v:+.0%}" if step >= 0.01 else f"{v:+.1%}"))
            v += step
        return out


def _nice(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw``."""
    if raw <= 0 or not math.isfinite(raw):
        return 0.01
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _span(values: Sequence[float | None], floor: float = 0.02) -> tuple[float, float]:
    """A symmetric-enough range covering ``values`` and 0, padded by 10%."""
    finite = [v for v in values if v is not None and math.isfinite(v)] + [0.0]
    lo, hi = min(finite), max(finite)
    pad = max((hi - lo) * 0.1, floor / 2)
    return lo - pad, hi + pad


def _status(row: dict[str, Any]) -> str:
    if not row.get("significant"):
        return "neutral"
    return "good" if row.get("better") else "bad"


def forest(report: dict[str, Any]) -> dict[str, Any]:
    """Relative lift with its interval, one row per metric × treatment.

    >>> from tailorkit.measure.analysis.examples import AS_OF, example_spec, example_table
    >>> from tailorkit.measure.analysis.pipeline import build_report
    >>> from tailorkit.project.loader import QualitySettings
    >>> r = build_report(example_spec(), example_table(), AS_OF, QualitySettings())
    >>> [(row["label"], row["status"]) for row in forest(r)["rows"]]
    [('purchase · new checkout', 'good'), ('revenue · new checkout', 'neutral')]
    """
    rows = [
        (m, v) for m in report["metrics"] if "variations" in m for v in m["variations"]
    ]  # fmt: skip
    bounds = [b for _, v in rows for b in (*v["relative_ci"], v["relative"])]
    scale = Scale(*_span(bounds), FOREST_LEFT, FOREST_WIDTH - 20)
    shapes = []
    for k, (m, v) in enumerate(rows):
        lo, hi = v["relative_ci"]
        shapes.append(
            {
                "label": f"{m['key']} · {v['variation']}",
                "role": m["role"],
                "y": 30 + k * FOREST_ROW,
                "x": scale.px(v["relative"] or 0.0),
                "x_lo": scale.px(lo) if lo is not None else FOREST_LEFT,
                "x_hi": scale.px(hi) if hi is not None else FOREST_WIDTH - 20,
                "status": _status(v),
                "text": _lift_text(v),
            }
        )
    return {
        "rows": shapes,
        "ticks": scale.ticks(),
        "zero": scale.px(0.0),
        "width": FOREST_WIDTH,
        "height": 40 + max(len(rows), 1) * FOREST_ROW,
        "left": FOREST_LEFT,
    }


def _lift_text(v: dict[str, Any]) -> str:
    lo, hi = v["relative_ci"]
    fmt = lambda x: "…" if x is None else f"{x:+.1%}"  # noqa: E731
    return f"{fmt(v['relative'])} [{fmt(lo)}, {fmt(hi)}]"


def _points(
    xs: Sequence[float], ys: Sequence[float | None], scale: Scale
) -> list[tuple[float, float]]:
    return [(x, scale.px(y)) for x, y in zip(xs, ys, strict=True) if y is not None]


def cumulative_chart(report: dict[str, Any], metric: str) -> dict[str, Any] | None:
    """Relative lift of each treatment over the days, with its interval as a band.

    >>> from tailorkit.measure.analysis.examples import AS_OF, example_spec, example_table
    >>> from tailorkit.measure.analysis.pipeline import build_report
    >>> from tailorkit.project.loader import QualitySettings
    >>> r = build_report(example_spec(), example_table(), AS_OF, QualitySettings())
    >>> chart = cumulative_chart(r, "purchase")
    >>> [line["name"] for line in chart["lines"]], chart["x_labels"][-1][1]
    (['new checkout'], '2026-03-02')
    """
    cum = report["cumulative"]
    series = cum["metrics"].get(metric) or {}
    days = cum["days"]
    if len(days) < 2 or not series:
        return None
    final = [abs(b) for s in series.values() for k in ("relative_lower", "relative_upper")
             for b in s[k][-1:] if b is not None]  # fmt: skip
    limit = 3 * max(final, default=0.1)
    values = [min(max(v, -limit), limit) for s in series.values()
              for k in ("relative", "relative_lower", "relative_upper") for v in s[k]
              if v is not None]  # fmt: skip
    y = Scale(*_span(values), CUM_TOP + CUM_HEIGHT, CUM_TOP)
    step = (CUM_WIDTH - CUM_LEFT - 10) / (len(days) - 1)
    xs = [CUM_LEFT + i * step for i in range(len(days))]
    lines = []
    for n, (name, s) in enumerate(series.items()):
        upper, lower = _points(xs, s["relative_upper"], y), _points(xs, s["relative_lower"], y)
        lines.append(
            {
                "name": name,
                "color": PALETTE[n % len(PALETTE)],
                "line": _svg_points(_points(xs, s["relative"], y)),
                "band": _svg_points(upper + lower[::-1]),
            }
        )
    return {
        "metric": metric,
        "lines": lines,
        "ticks": [(py, label) for py, label in y.ticks(4)],
        "zero": y.px(0.0),
        "x_labels": [(xs[0], days[0]), (xs[-1], days[-1])],
        "width": CUM_WIDTH,
        "height": CUM_HEIGHT + CUM_TOP + 30,
        "left": CUM_LEFT,
        "right": CUM_WIDTH - 10,
    }


def _svg_points(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def render_html(report: dict[str, Any]) -> str:
    """The whole report as one HTML document.

    >>> from tailorkit.measure.analysis.examples import AS_OF, example_spec, example_table
    >>> from tailorkit.measure.analysis.pipeline import build_report
    >>> from tailorkit.project.loader import QualitySettings
    >>> page = render_html(build_report(example_spec(), example_table(), AS_OF, QualitySettings()))
    >>> page.startswith("<!doctype html>"), "<svg" in page, "<script" in page
    (True, True, False)
    """
    env = Environment(
        loader=PackageLoader("tailorkit.measure.analysis", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda x, digits=1: "–" if x is None else f"{x:+.{digits}%}"
    env.filters["num"] = lambda x, digits=4: "–" if x is None else f"{x:.{digits}g}"
    env.filters["pvalue"] = lambda p: "–" if p is None else ("<0.0001" if p < 1e-4 else f"{p:.4f}")
    template = env.get_template("report.html.j2")
    charts = [c for m in report["metrics"] if (c := cumulative_chart(report, m["key"]))]
    return template.render(r=report, forest=forest(report), cumulative=charts)
