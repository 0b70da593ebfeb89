"""Small server-side SVG charts (no JavaScript, no CDN).

Every chart is an ``<svg class="chart" data-chart=KIND>`` whose series carry
their numbers in ``data-values`` (JSON), so browser tests can read exactly
what is drawn.

>>> "data-values" in line_chart({"a": [1, 2, 3]}, ["d1", "d2", "d3"])
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

W, H, PAD = 640, 220, 40
COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#65a30d")


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _scale(lo: float, hi: float, size: float, flip: bool) -> tuple[float, float]:
    """Slope and offset mapping [lo, hi] onto the plot area."""
    span = (hi - lo) or 1.0
    slope = (size - 2 * PAD) / span
    return (-slope, size - PAD + lo * slope) if flip else (slope, PAD - lo * slope)


def _attr(values: object) -> str:
    return str(escape(json.dumps(values)))


def _frame(kind: str, body: list[str], title: str, height: int = H) -> Markup:
    head = (
        f'<svg class="chart" data-chart="{escape(kind)}" viewBox="0 0 {W} {height}" '
        f'width="100%" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
    )
    return Markup(head + "".join(body) + "</svg>")


def _legend(names: Sequence[str]) -> list[str]:
    return [
        f'<text x="{PAD + 110 * i}" y="14" font-size="11" fill="{COLOURS[i % 8]}">'
        f"{escape(n)}</text>"
        for i, n in enumerate(names)
    ]


def line_chart(
    series: Mapping[str, Sequence[float | None]], labels: Sequence[str], title: str = ""
) -> Markup:
    """One polyline per series over shared x ``labels``."""
    allv = [v for s in series.values() for v in _finite(s)] or [0.0]
    ky, oy = _scale(min(min(allv), 0.0), max(allv), H, flip=True)
    n = max(len(labels), 2)
    kx, ox = _scale(0, n - 1, W, flip=False)
    body = _legend(list(series))
    for i, (name, values) in enumerate(series.items()):
        points = " ".join(
            f"{ox + kx * j:.1f},{oy + ky * float(v):.1f}"
            for j, v in enumerate(values)
            if v is not None and math.isfinite(float(v))
        )
        body.append(
            f'<polyline class="series" data-series="{escape(name)}" data-values="'
            f'{_attr(list(values))}" fill="none" stroke="{COLOURS[i % 8]}" stroke-width="2" '
            f'points="{points}"/>'
        )
    body += _axis_labels(labels, kx, ox, allv, ky, oy)
    return _frame("line", body, title)


def _axis_labels(
    labels: Sequence[str], kx: float, ox: float, allv: list[float], ky: float, oy: float
) -> list[str]:
    out = [f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#999"/>']
    if labels:
        for j in {0, len(labels) - 1}:
            out.append(
                f'<text x="{ox + kx * j:.1f}" y="{H - PAD + 16}" font-size="10" '
                f'text-anchor="middle">{escape(labels[j])}</text>'
            )
    top = max(allv)
    out.append(f'<text x="4" y="{oy + ky * top:.1f}" font-size="10">{top:.4g}</text>')
    return out


def bar_chart(values: Mapping[str, float], title: str = "") -> Markup:
    """Horizontal bars, one per key."""
    items = list(values.items())
    height = max(60, 22 * len(items) + 20)
    top = max([float(v) for _, v in items] or [1.0]) or 1.0
    body = []
    for i, (name, value) in enumerate(items):
        width = (W - 260) * float(value) / top
        y = 10 + 22 * i
        body.append(
            f'<g class="series" data-series="{escape(name)}" data-values="{_attr([value])}">'
            f'<text x="4" y="{y + 13}" font-size="11">{escape(name)}</text>'
            f'<rect x="180" y="{y}" width="{max(width, 0):.1f}" height="16" '
            f'fill="{COLOURS[i % 8]}"/>'
            f'<text x="{184 + max(width, 0):.1f}" y="{y + 13}" font-size="11">{value:.4g}</text>'
            "</g>"
        )
    return _frame("bar", body, title, height)


def interval_chart(
    rows: Sequence[tuple[str, float, float, float]], title: str = "", signed: bool = True
) -> Markup:
    """Point estimates with intervals (name, estimate, lower, upper).

    ``signed``: effects around 0 (coloured by sign); otherwise plain shares.
    """
    ok = [r for r in rows if all(v is not None and math.isfinite(v) for v in r[1:])]
    allv = [v for r in ok for v in r[1:]] + [0.0]
    lo, hi = min(allv), max(allv)
    height = max(60, 30 * len(rows) + 30)
    kx, ox = _scale(lo, hi, W, flip=False)
    zero = ox
    body = [f'<line x1="{zero:.1f}" y1="4" x2="{zero:.1f}" y2="{height - 4}" stroke="#999"/>']
    for i, (name, est, low, up) in enumerate(ok):
        y = 20 + 30 * i
        colour = "#16a34a" if low > 0 else ("#dc2626" if up < 0 else "#2563eb")
        fmt = "+.2%" if signed else ".2%"
        if not signed:
            colour = "#2563eb"
        body.append(
            f'<g class="series" data-series="{escape(name)}" data-values="'
            f'{_attr([est, low, up])}"><text x="4" y="{y - 4}" font-size="11">{escape(name)}'
            f" {est:{fmt}} [{low:{fmt}}, {up:{fmt}}]</text>"
            f'<line x1="{ox + kx * low:.1f}" y1="{y + 6}" x2="{ox + kx * up:.1f}" y2="{y + 6}" '
            f'stroke="{colour}" stroke-width="3"/>'
            f'<circle cx="{ox + kx * est:.1f}" cy="{y + 6}" r="5" fill="{colour}"/></g>'
        )
    return _frame("interval", body, title, height)
