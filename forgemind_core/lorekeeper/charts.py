"""Line charts as inline SVG for the HTML readouts (``forge report``, ``forge compare --html``).

No script and no network: a chart is a ``<figure>`` holding an ``<svg>`` that any browser draws
from a file on disk. Every point is a ``<circle class="point">`` carrying its series, its x label
and its value as ``data-series``, ``data-x`` and ``data-value`` (the recorded number, unrounded),
with a ``<title>`` a reader sees on hover; a chart with few points also writes each value as a
``<text class="value">`` label next to it (``93.8% (16)``: the number of cases in brackets
when the chart is given them). Every string from a run (tier, category, run id) is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["PALETTE", "Series", "line_chart", "loss_format", "percent"]

#: Series colours, in order (colour-blind-safe, after Okabe and Ito).
PALETTE: tuple[str, ...] = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")

#: One series: ``{"name": str, "values": [float | None, ...], "counts": [int | None, ...]}``
#: (``counts``, optional: the number of cases behind each value; ``None`` values are gaps).
Series = dict[str, Any]

_W, _H = 640, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 150, 30, 40
#: Up to this many points per series get a value label beside them.
_LABELLED = 12


def percent(value: float) -> str:
    """``0.9375`` -> ``93.8%``, ``0.75`` -> ``75%``."""
    text = f"{100 * value:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + "%"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _thin(n: int, most: int = 8) -> list[int]:
    """Indexes of the x labels to draw: all when few, else about ``most`` evenly, first and last."""
    if n <= most:
        return list(range(n))
    step = -(-n // most)
    return sorted({*range(0, n, step), n - 1})


def line_chart(
    *,
    title: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    y_format: Callable[[float], str] = percent,
    y_range: tuple[float, float] | None = None,
    chart_id: str = "",
    x_title: str = "",
) -> str:
    """A ``<figure class="chart">`` with one line per series over ``x_labels``.

    :param y_range: the y axis (default: the values' own range, padded); ``(0, 1)`` for scores.
    :param chart_id: the figure's ``id`` and ``data-chart`` (tests and links find it by this).
    """
    values = [v for s in series for v in s["values"] if v is not None]
    if not values or not x_labels:
        return (f'<figure class="chart empty" id="{_e(chart_id)}" data-chart="{_e(chart_id)}">'
                f"<figcaption>{_e(title)}</figcaption><p>nothing recorded yet</p></figure>")
    lo, hi = y_range if y_range is not None else (min(values), max(values))
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 if y_range is None else lo, hi + 0.5
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    n = len(x_labels)

    def x_at(i: int) -> float:
        return _LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y_at(v: float) -> float:
        return _TOP + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [
        f'<figure class="chart" id="{_e(chart_id)}" data-chart="{_e(chart_id)}">',
        f"<figcaption>{_e(title)}</figcaption>",
        f'<svg viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" '
        f'role="img" aria-label="{_e(title)}" font-family="system-ui,sans-serif" font-size="11">',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for k in range(5):  # y grid and ticks
        v = lo + (hi - lo) * k / 4
        y = y_at(v)
        parts.append(f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>'
                     f'<text class="y-tick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_e(y_format(v))}</text>')
    for i in _thin(n):
        parts.append(f'<text class="x-tick" x="{x_at(i):.1f}" y="{_TOP + plot_h + 16}" '
                     f'text-anchor="middle">{_e(x_labels[i])}</text>')
    if x_title:
        parts.append(f'<text x="{_LEFT + plot_w / 2:.1f}" y="{_H - 6}" text-anchor="middle" fill="#666">{_e(x_title)}</text>')
    taken: dict[int, list[float]] = {}  # label heights used at each x: coinciding points stack their labels
    for k, s in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        name = str(s["name"])
        counts = list(s.get("counts") or [None] * len(s["values"]))
        points = [(i, float(v)) for i, v in enumerate(s["values"]) if v is not None]
        labelled = len(points) <= _LABELLED
        parts.append(f'<g class="series" data-series="{_e(name)}">')
        if len(points) > 1:
            path = " ".join(f"{x_at(i):.1f},{y_at(v):.1f}" for i, v in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for i, v in points:
            count = counts[i] if i < len(counts) else None
            text = y_format(v) + (f" ({count})" if count is not None else "")
            cx, cy = x_at(i), y_at(v)
            parts.append(
                f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="{3.5 if labelled else 2}" fill="{colour}" '
                f'data-series="{_e(name)}" data-x="{_e(x_labels[i])}" data-value="{v!r}"'
                + (f' data-n="{count}"' if count is not None else "")
                + f"><title>{_e(name)} at {_e(x_labels[i])}: {_e(text)}</title></circle>")
            if labelled:  # the last point's label ends at it: the legend is to its right
                anchor = f'x="{cx - 5:.1f}" text-anchor="end"' if i == n - 1 and n > 1 else f'x="{cx + 5:.1f}"'
                ly = cy - 6
                while any(abs(ly - used) < 11 for used in taken.get(i, [])):
                    ly -= 12
                taken.setdefault(i, []).append(ly)
                parts.append(f'<text class="value" {anchor} y="{ly:.1f}" fill="{colour}" '
                             f'data-series="{_e(name)}" data-x="{_e(x_labels[i])}">{_e(text)}</text>')
        ly = _TOP + 14 + 16 * k
        parts.append(f'<rect x="{_W - _RIGHT + 12}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>'
                     f'<text class="legend" x="{_W - _RIGHT + 27}" y="{ly}">{_e(name)}</text></g>')
    parts.append("</svg></figure>")
    return "".join(parts)


def loss_format(value: float) -> str:
    """A loss as a y tick: three significant decimals."""
    return _num(value) if abs(value) >= 100 else f"{value:.3f}"
