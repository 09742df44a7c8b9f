"""Small, dependency-free SVG plots for the report and the dataset card.

Every plot is a standalone `<svg>` (xmlns set, styles as attributes, fonts named) so the same string works
inline in the HTML page and as a `figures/*.svg` file on the Hub. Data marks (bars, sectors, lines) carry
`class="mark"` and a `<title>` tooltip, which is also what the browser test counts.
"""

from __future__ import annotations

import math
from html import escape
from typing import Sequence

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D",
           "#FF9DA6", "#BAB0AC")
KEPT, DROPPED, GRID, INK = "#4C78A8", "#E45756", "#E4E4E4", "#333333"
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"


def fmt_num(v: float) -> str:
    """Compact tick label: 1200 -> 1.2k, 0.25 -> 0.25, 3.0 -> 3."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.3g}"


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """About n round tick values covering [lo, hi] (whole numbers only when `integer`, e.g. counts)."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(1, n)
    if integer:
        raw = max(raw, 1.0)
    mag = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * mag for m in steps if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + step * 1e-9:
        if v >= lo - step * 1e-9:
            ticks.append(round(v, 10))
        v += step
    return ticks


class Canvas:
    """An SVG being drawn: append shapes, then `svg()`."""

    def __init__(self, width: int, height: int, title: str):
        self.w, self.h, self.title, self.parts = width, height, title, []

    def rect(self, x, y, w, h, fill, tip: str | None = None, mark: bool = True, **attrs) -> None:
        extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
        cls = ' class="mark"' if mark else ""
        body = f"<title>{escape(tip)}</title>" if tip else ""
        self.parts.append(f'<rect{cls} x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
                          f'fill="{fill}"{extra}>{body}</rect>')

    def line(self, x1, y1, x2, y2, stroke=INK, width=1.0, dash: str | None = None) -> None:
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" '
                          f'stroke-width="{width}"{d}/>')

    def text(self, x, y, s: str, size: float = 11, anchor: str = "start", fill: str = INK,
             weight: str | None = None, rotate: float | None = None, baseline: str | None = None) -> None:
        w = f' font-weight="{weight}"' if weight else ""
        r = f' transform="rotate({rotate:.1f} {x:.1f} {y:.1f})"' if rotate else ""
        b = f' dominant-baseline="{baseline}"' if baseline else ""
        self.parts.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
                          f'fill="{fill}"{w}{r}{b}>{escape(s)}</text>')

    def path(self, d: str, fill="none", stroke="none", width=1.0, tip: str | None = None, mark=True) -> None:
        cls = ' class="mark"' if mark else ""
        body = f"<title>{escape(tip)}</title>" if tip else ""
        self.parts.append(f'<path{cls} d="{d}" fill="{fill}" stroke="{stroke}" stroke-width="{width}">{body}</path>')

    def polyline(self, pts: Sequence[tuple[float, float]], stroke, width=1.5, tip: str | None = None) -> None:
        p = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        body = f"<title>{escape(tip)}</title>" if tip else ""
        self.parts.append(f'<polyline class="mark" points="{p}" fill="none" stroke="{stroke}" '
                          f'stroke-width="{width}" stroke-linejoin="round">{body}</polyline>')

    def svg(self) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 {self.w} {self.h}" '
                f'width="{self.w}" height="{self.h}" role="img" font-family="{FONT}">'
                f'<title>{escape(self.title)}</title><rect x="0" y="0" width="{self.w}" height="{self.h}" '
                f'fill="#ffffff"/>' + "".join(self.parts) + "</svg>")


class Axes:
    """A plot area inside a canvas with linear x and y scales and labelled, gridded axes."""

    def __init__(self, c: Canvas, xlim, ylim, left=56, right=16, top=34, bottom=46):
        self.c, self.x0, self.x1 = c, left, c.w - right
        self.y0, self.y1 = c.h - bottom, top  # pixel y of data ylim[0] and ylim[1]
        self.xlim, self.ylim = xlim, ylim

    def x(self, v: float) -> float:
        a, b = self.xlim
        return self.x0 + (v - a) / ((b - a) or 1) * (self.x1 - self.x0)

    def y(self, v: float) -> float:
        a, b = self.ylim
        return self.y0 - (v - a) / ((b - a) or 1) * (self.y0 - self.y1)

    def draw(self, xticks, yticks, xlabel: str, ylabel: str, xfmt=fmt_num) -> None:
        c = self.c
        for t in yticks:
            c.line(self.x0, self.y(t), self.x1, self.y(t), stroke=GRID)
            c.text(self.x0 - 6, self.y(t) + 4, fmt_num(t), size=10, anchor="end")
        for t in xticks:
            c.line(self.x(t), self.y0, self.x(t), self.y0 + 4)
            c.text(self.x(t), self.y0 + 16, xfmt(t), size=10, anchor="middle")
        c.line(self.x0, self.y0, self.x1, self.y0)
        c.text((self.x0 + self.x1) / 2, c.h - 8, xlabel, size=11, anchor="middle")
        c.text(14, (self.y0 + self.y1) / 2, ylabel, size=11, anchor="middle", rotate=-90)


def _title(c: Canvas, title: str) -> None:
    c.text(12, 20, title, size=13, weight="bold")


def _legend(c: Canvas, items: Sequence[tuple[str, str]], y: float = 20) -> None:
    x = c.w - 16
    for label, color in reversed(items):
        w = 7 * len(label) + 18
        x -= w
        c.rect(x, y - 9, 10, 10, color, mark=False)
        c.text(x + 14, y, label, size=10)


def quantile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    if not s:
        raise ValueError("quantile of no values")
    i = min(len(s) - 1, max(0, int(math.ceil(q * len(s))) - 1))
    return s[i]


def histogram(series: Sequence[tuple[str, Sequence[float]]], title: str, xlabel: str, ylabel: str = "records",
              bins: int = 24, lo: float | None = None, hi: float | None = None, clip_q: float | None = 0.99,
              threshold: tuple[float, str] | None = None, colors: Sequence[str] = PALETTE,
              width: int = 560, height: int = 300) -> str:
    """Stacked histogram of one or more series sharing bins. Values above the `clip_q` quantile (or `hi`) fall
    into the last bin, whose tooltip says so, so one long outlier does not flatten the picture."""
    allv = [float(v) for _, vs in series for v in vs]
    if not allv:
        raise ValueError("histogram of no values")
    lo = min(allv) if lo is None else lo
    top = max(allv)
    hi = (quantile(allv, clip_q) if clip_q else top) if hi is None else hi
    integer = all(float(v).is_integer() for v in allv)
    if integer:
        step = max(1.0, math.ceil((hi - lo + 1) / bins))
        nb = max(1, int(math.ceil((hi - lo + 1) / step)))
    else:
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        nb, step = bins, (hi - lo) / bins
    counts = [[0] * nb for _ in series]
    for k, (_, vs) in enumerate(series):
        for v in vs:
            i = int((float(v) - lo) // step)
            counts[k][min(max(i, 0), nb - 1)] += 1
    totals = [sum(cs[i] for cs in counts) for i in range(nb)]
    c = Canvas(width, height, title)
    _title(c, title)
    if len(series) > 1:
        _legend(c, [(name, colors[k % len(colors)]) for k, (name, _) in enumerate(series)])
    edges_hi = lo + nb * step
    ax = Axes(c, (lo, edges_hi), (0, max(totals) * 1.08 or 1))
    ax.draw(nice_ticks(lo, edges_hi, 6, integer=integer), nice_ticks(0, max(totals) or 1, 4, integer=True),
            xlabel, ylabel)
    for i in range(nb):
        a, b = lo + i * step, lo + (i + 1) * step
        base = 0
        rng = (f"{fmt_num(a)}-{fmt_num(b - 1)}" if integer and step > 1 else fmt_num(a)) if integer else \
            f"{a:.3g} to {b:.3g}"
        if i == nb - 1 and top > b:
            rng += f" (and above, up to {fmt_num(top)})"
        for k, (name, _) in enumerate(series):
            n = counts[k][i]
            if n:
                x0, x1 = ax.x(a), ax.x(b)
                c.rect(x0 + 0.5, ax.y(base + n), x1 - x0 - 1, ax.y(base) - ax.y(base + n),
                       colors[k % len(colors)], tip=f"{name}: {rng}: {n}")
            base += n
    if threshold is not None and lo <= threshold[0] <= edges_hi:
        tx = ax.x(threshold[0])
        c.line(tx, ax.y1 - 4, tx, ax.y0, stroke=INK, width=1.5, dash="5,3")
        c.text(tx + 4, ax.y1 + 8, threshold[1], size=10)
    return c.svg()


def hbars(rows: Sequence[tuple[str, Sequence[float]]], title: str, xlabel: str,
          segment_names: Sequence[str] = ("count",), colors: Sequence[str] = PALETTE,
          notes: Sequence[str] | None = None, width: int = 640, bar_h: int = 22) -> str:
    """Horizontal stacked bars, one row per label (top to bottom); `notes` are printed right of each bar."""
    label_w = min(260, 8 + 6.6 * max((len(r[0]) for r in rows), default=4))
    height = 60 + bar_h * len(rows) + 36
    c = Canvas(width, height, title)
    _title(c, title)
    if len(segment_names) > 1:
        _legend(c, [(n, colors[k % len(colors)]) for k, n in enumerate(segment_names)])
    note_w = 120 if notes else 16
    vmax = max((sum(v) for _, v in rows), default=1) or 1
    ax = Axes(c, (0, vmax * 1.02), (0, 1), left=label_w, right=note_w, top=34, bottom=36 + 0)
    ax.y0 = 34 + bar_h * len(rows) + 8
    for t in nice_ticks(0, vmax, 5, integer=all(float(v).is_integer() for _, vs in rows for v in vs)):
        c.line(ax.x(t), 34, ax.x(t), ax.y0, stroke=GRID)
        c.text(ax.x(t), ax.y0 + 14, fmt_num(t), size=10, anchor="middle")
    c.text((ax.x0 + ax.x1) / 2, ax.y0 + 30, xlabel, size=11, anchor="middle")
    for r, (label, values) in enumerate(rows):
        y = 38 + r * bar_h
        c.text(label_w - 6, y + bar_h * 0.62, label if len(label) <= 40 else label[:39] + "…", size=10.5,
               anchor="end")
        acc = 0.0
        for k, v in enumerate(values):
            if v > 0:
                c.rect(ax.x(acc), y + 2, ax.x(acc + v) - ax.x(acc), bar_h - 6, colors[k % len(colors)],
                       tip=f"{label}: {segment_names[k % len(segment_names)]} {fmt_num(v)}")
            acc += v
        if notes:
            c.text(ax.x(acc) + 4, y + bar_h * 0.62, notes[r], size=10, fill="#555")
    return c.svg()


def lines(series: Sequence[tuple[str, Sequence[float], Sequence[float]]], title: str, xlabel: str, ylabel: str,
          colors: Sequence[str] = PALETTE, widths: Sequence[float] | None = None, width: int = 560,
          height: int = 300) -> str:
    """One polyline per (name, xs, ys) series, on shared axes."""
    xs = [x for _, sx, _ in series for x in sx]
    ys = [y for _, _, sy in series for y in sy]
    if not xs:
        raise ValueError("line plot of no points")
    ylo, yhi = min(ys), max(ys)
    pad = (yhi - ylo) * 0.08 or abs(yhi) * 0.1 or 1
    c = Canvas(width, height, title)
    _title(c, title)
    if len(series) > 1:
        _legend(c, [(n, colors[k % len(colors)]) for k, (n, _, _) in enumerate(series)])
    ax = Axes(c, (min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1), (ylo - pad, yhi + pad))
    ax.draw(nice_ticks(*ax.xlim, 6), nice_ticks(*ax.ylim, 4), xlabel, ylabel)
    for k, (name, sx, sy) in enumerate(series):
        pts = [(ax.x(x), ax.y(y)) for x, y in zip(sx, sy)]
        w = widths[k] if widths else 1.8
        if len(pts) == 1:
            c.rect(pts[0][0] - 3, pts[0][1] - 3, 6, 6, colors[k % len(colors)], tip=f"{name}: {sy[0]:.4g}")
        else:
            c.polyline(pts, colors[k % len(colors)], width=w, tip=f"{name}: {len(pts)} points, last {sy[-1]:.4g}")
    return c.svg()


def grouped_bars(categories: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], title: str,
                 ylabel: str, colors: Sequence[str] = PALETTE, width: int = 420, height: int = 300) -> str:
    """Vertical bars: one group per category, one bar per series, value printed above each bar."""
    vmax = max((v for _, vs in series for v in vs), default=1) or 1
    c = Canvas(width, height, title)
    _title(c, title)
    _legend(c, [(n, colors[k % len(colors)]) for k, (n, _) in enumerate(series)], y=40)
    ax = Axes(c, (0, len(categories)), (0, vmax * 1.15), top=54)
    ax.draw([], nice_ticks(0, vmax * 1.1, 4), "", ylabel)
    gw = (ax.x1 - ax.x0) / len(categories)
    bw = gw * 0.7 / len(series)
    for i, cat in enumerate(categories):
        c.text(ax.x0 + gw * (i + 0.5), ax.y0 + 16, cat, size=11, anchor="middle")
        for k, (name, vs) in enumerate(series):
            v = vs[i]
            x = ax.x0 + gw * i + gw * 0.15 + k * bw
            c.rect(x, ax.y(v), bw - 2, ax.y0 - ax.y(v), colors[k % len(colors)], tip=f"{cat}, {name}: {v:.4g}")
            c.text(x + bw / 2 - 1, ax.y(v) - 4, f"{v:.3g}", size=10, anchor="middle")
    return c.svg()


def _lighter(color: str, k: float = 0.35) -> str:
    """The colour mixed with white (outer ring of the sunburst)."""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{int(v + (255 - v) * k):02x}" for v in (r, g, b))


def _polar(cx, cy, r, a):
    return cx + r * math.sin(a), cy - r * math.cos(a)


def _sector(cx, cy, r0, r1, a0, a1) -> str:
    a1 = min(a1, a0 + 2 * math.pi - 1e-4)
    large = 1 if a1 - a0 > math.pi else 0
    p = [_polar(cx, cy, r1, a0), _polar(cx, cy, r1, a1), _polar(cx, cy, r0, a1), _polar(cx, cy, r0, a0)]
    return (f"M{p[0][0]:.2f},{p[0][1]:.2f} A{r1},{r1} 0 {large} 1 {p[1][0]:.2f},{p[1][1]:.2f} "
            f"L{p[2][0]:.2f},{p[2][1]:.2f} A{r0},{r0} 0 {large} 0 {p[3][0]:.2f},{p[3][1]:.2f} Z")


def _radial_label(c: Canvas, cx, cy, r, a, text, size) -> None:
    x, y = _polar(cx, cy, r, a)
    deg = math.degrees(a) - 90
    if math.pi < a % (2 * math.pi) < 2 * math.pi:
        deg += 180  # keep text upright on the left half
    c.text(x, y, text, size=size, anchor="middle", rotate=deg, baseline="central")


def sunburst(tree: Sequence[tuple[str, int, Sequence[tuple[str, int]]]], title: str, size: int = 560) -> str:
    """Inner ring: verbs sized by count; outer ring: each verb's objects (the rest as a blank remainder).
    The Self-Instruct paper's Figure 2 draws the same picture."""
    total = sum(n for _, n, _ in tree)
    if not total:
        raise ValueError("sunburst of no counts")
    c = Canvas(size, size + 20, title)
    _title(c, title)
    cx, cy = size / 2, size / 2 + 24
    r0, r1, r2 = size * 0.09, size * 0.25, size * 0.44
    a = 0.0
    for k, (verb, n, objs) in enumerate(tree):
        span = 2 * math.pi * n / total
        color = PALETTE[k % len(PALETTE)]
        c.path(_sector(cx, cy, r0, r1, a, a + span), fill=color, stroke="#fff", tip=f"{verb}: {n}")
        if span > 0.07:
            _radial_label(c, cx, cy, (r0 + r1) / 2, a + span / 2, verb, 11 if span > 0.15 else 9)
        b = a
        for obj, m in objs:
            s = span * m / n
            c.path(_sector(cx, cy, r1, r2, b, b + s), fill=_lighter(color), stroke="#fff", tip=f"{verb} {obj}: {m}")
            if s > 0.035:
                _radial_label(c, cx, cy, (r1 + r2) / 2, b + s / 2, obj, 9.5 if s > 0.06 else 8)
            b += s
        a += span
    return c.svg()
