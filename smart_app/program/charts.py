"""Server-side SVG charts (no JavaScript, no CDN): accessible, with <title>, <desc> and text labels."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from markupsafe import Markup, escape

Number = int | float | Decimal
PALETTE = ("#1d4ed8", "#15803d", "#b45309", "#7c3aed")


def _fmt(value: Number) -> str:
    if isinstance(value, Decimal):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def bar_chart(
    chart_id: str,
    title: str,
    desc: str,
    items: Sequence[tuple[str, Number]],
    width: int = 420,
    bar_height: int = 26,
) -> Markup:
    """Horizontal bars, each labelled with its name and value."""
    label_w, pad = 110, 8
    height = pad * 2 + len(items) * (bar_height + pad)
    top = max((float(v) for _l, v in items), default=0.0) or 1.0
    span = width - label_w - 70
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-t">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-d">{escape(desc)}</desc>',
    ]
    for i, (label, value) in enumerate(items):
        y = pad + i * (bar_height + pad)
        w = max(1.0, span * float(value) / top) if float(value) > 0 else 0.0
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar_height * 0.68:.1f}" text-anchor="end" '
            f'class="chart-label">{escape(label)}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_height}" '
            f'fill="{PALETTE[0]}"><title>{escape(label)}: {escape(_fmt(value))}</title></rect>'
        )
        parts.append(
            f'<text x="{label_w + w + 6:.1f}" y="{y + bar_height * 0.68:.1f}" '
            f'class="chart-value">{escape(_fmt(value))}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(
    chart_id: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[Number]]],
    width: int = 520,
    height: int = 240,
) -> Markup:
    """One line per series over `labels` (months), with point values and a legend in text."""
    left, right, top_pad, bottom = 48, 40, 16, 56
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    top = max((float(v) for _n, vals in series for v in vals), default=0.0) or 1.0
    n = max(len(labels), 1)
    top_label: Number = int(top) if top.is_integer() else top

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: Number) -> float:
        return top_pad + plot_h - plot_h * float(v) / top

    cid = escape(chart_id)
    parts = [
        f'<svg id="{cid}" class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" aria-labelledby="{cid}-t {cid}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{cid}-t">{escape(title)}</title>',
        f'<desc id="{cid}-d">{escape(desc)}</desc>',
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" '
        'stroke="#6b7280"/>',
        f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end" class="chart-value">'
        f"{escape(_fmt(top_label))}</text>",
        f'<text x="{left - 6}" y="{top_pad + plot_h}" text-anchor="end" class="chart-value">0</text>',
    ]
    for i, label in enumerate(labels):
        parts.append(
            f'<text x="{x(i):.1f}" y="{top_pad + plot_h + 16}" text-anchor="middle" '
            f'class="chart-label">{escape(label)}</text>'
        )
    for s, (name, values) in enumerate(series):
        color = PALETTE[s % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        for i, v in enumerate(values):
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{color}">'
                f"<title>{escape(name)} {escape(labels[i])}: {escape(_fmt(v))}</title></circle>"
            )
        lx = left + s * 130
        parts.append(f'<rect x="{lx}" y="{height - 18}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14}" y="{height - 9}" class="chart-label">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
