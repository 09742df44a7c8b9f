"""The report's plots, drawn with matplotlib into static SVG (no script), so the page stays one offline file.

Every plot is a standalone `<svg>` string (the XML prolog and DOCTYPE cut, so it works inline in the HTML page
and, with a prolog, as a `figures/*.svg` file on the Hub). Output is deterministic: `svg.hashsalt` is set per
figure (which also keeps clip-path ids unique between the figures of one page) and the SVG metadata (date,
creator) is left out. Text stays text (`svg.fonttype: none`): Chromium renders it with the named fonts, and
labels stay searchable. Data marks (bars, sectors, lines) are wrapped in `<g class="mark">` with a `<title>`
tooltip holding the exact number; the drop threshold is `<g class="threshold">`. Tests read both.

matplotlib is imported inside `_new` only: `gen --help` and `gen curate --help` import none of it. Only the
SVG backend is used (no Agg).
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from html import escape
from typing import Sequence

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D",
           "#FF9DA6", "#BAB0AC")
KEPT, DROPPED, GREY, INK = "#4C78A8", "#E45756", "#BAB0AC", "#333333"
FONTS = ["DejaVu Sans", "Helvetica", "Arial"]
RC = {"svg.fonttype": "none", "font.family": "sans-serif", "font.sans-serif": FONTS, "font.size": 9,
      "axes.titlesize": 10, "axes.edgecolor": "#888888", "axes.grid": True, "grid.color": "#E4E4E4",
      "axes.axisbelow": True, "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
      "axes.prop_cycle": None,
      "text.parse_math": False}  # labels come from the run (filter names, verbs): `$x^$` is text, not mathtext
MAX_BINS = 30  # a histogram has at most this many bars, whatever the number of records
WIDEN = 3.0  # a threshold farther than this many data spans from the data is marked at the edge, not drawn to


def fmt_num(v: float) -> str:
    """Compact number: 1200 -> 1.2k, 0.25 -> 0.25, 3.0 -> 3."""
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


class Plot:
    """A matplotlib figure being drawn: `mark` an artist with its tooltip, then `svg()`."""

    def __init__(self, fid: str, fig, axes):
        self.fid, self.fig, self.axes = fid, fig, axes
        self.marks: dict[str, tuple[str, str]] = {}  # gid -> (class, tooltip)

    def mark(self, artist, tip: str, cls: str = "mark") -> None:
        gid = f"{self.fid}-{cls}{len(self.marks)}"
        artist.set_gid(gid)
        self.marks[gid] = (cls, tip)

    def svg(self) -> str:
        import matplotlib
        from matplotlib.backends.backend_svg import FigureCanvasSVG

        FigureCanvasSVG(self.fig)
        buf = io.StringIO()
        with matplotlib.rc_context({**_rc(), "svg.hashsalt": f"instructgen-{self.fid}"}):
            self.fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None,
                                                           "Type": None})
        s = buf.getvalue()
        s = s[s.index("<svg"):]  # the XML prolog and DOCTYPE: not allowed inline, and the DOCTYPE is a URL

        def tag(m: re.Match) -> str:
            cls, tip = self.marks[m.group(1)]
            return f'<g id="{m.group(1)}" class="{cls}"><title>{escape(tip)}</title>'

        if self.marks:
            s = re.sub(r'<g id="(' + "|".join(map(re.escape, self.marks)) + r')">', tag, s)
        # every id (matplotlib's "figure_1", "axes_1", ...) and every reference to one carry the figure's id, so
        # the figures of one page never share an id
        # smaller, same picture: no indentation between elements, coordinates to 1/100 pt
        s = re.sub(r">\s+<", "><", s)
        s = re.sub(r'\s(d|x|y|x1|x2|y1|y2|transform|points)="([^"]*)"',
                   lambda m: f' {m.group(1)}="' + re.sub(r"(\.\d\d)\d+", r"\1", re.sub(r"\s+", " ", m.group(2))) + '"',
                   s)
        own = re.escape(self.fid) + "-"
        s = re.sub(r'(\sid="|url\(#|href="#)(?!' + own + ")", lambda m: m.group(1) + self.fid + "-", s)
        return s.strip()


def _rc() -> dict:
    return {k: v for k, v in RC.items() if v is not None}


def _styled(draw):
    """Run a drawing function under RC: a Text reads some settings (`text.parse_math`) when it is made, so the
    labels must be made inside the context, not only saved in it."""
    import functools

    @functools.wraps(draw)
    def inner(*args, **kwargs):
        import matplotlib
        with matplotlib.rc_context(_rc()):
            return draw(*args, **kwargs)
    return inner


def _new(fid: str, width: float, height: float, nrows: int = 1, sharex: bool = False, left: float = 0.62,
         right: float = 0.15, top: float = 0.45, bottom: float = 0.5, hspace: float = 0.55) -> Plot:
    """A figure of `nrows` panels with fixed margins in inches (a layout engine would measure every label
    twice per figure, the slowest part of drawing)."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_rc()):
        fig = Figure(figsize=(width, height))
        fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                            bottom=bottom / height, hspace=hspace)
        axes = fig.subplots(nrows, 1, sharex=sharex, squeeze=False)[:, 0]
    return Plot(fid, fig, list(axes))


# ---------------------------------------------------------------------------------------------- histogram

@dataclass
class Hist:
    """A drawn histogram: the SVG, the shared bin edges, each series' counts, and where the threshold is:
    "in" (inside the data), "widened" (outside it; the axis was widened to show it), "off" (too far: marked at
    the edge of the axis) or None (no threshold)."""

    svg: str
    edges: list[float]
    counts: dict[str, list[int]]
    threshold: str | None = None
    xlim: tuple[float, float] = (0.0, 1.0)
    log: bool = False
    notes: list[str] = field(default_factory=list)


def quantile(values: Sequence[float], q: float) -> float:
    import numpy as np
    if len(values) == 0:
        raise ValueError("quantile of no values")
    return float(np.quantile(np.asarray(values, dtype=float), q, method="lower"))


def bin_edges(values, clip_q: float | None = 0.99, lo: float | None = None, hi: float | None = None,
              integer: bool = False, bins: int = MAX_BINS) -> list[float]:
    """Bin edges for `values`: from the smallest value (or `lo`) to the `clip_q` quantile (or `hi`); values
    beyond fall in the end bins. Whole-number data get whole-number bins. A single value gets one narrow bin
    around it (not a bar spanning 0 to 1)."""
    import numpy as np
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("no values to bin")
    vmin, vmax = float(v.min()), float(v.max())
    a = vmin if lo is None else max(lo, vmin)
    b = (quantile(v, clip_q) if clip_q and v.size > 50 else vmax) if hi is None else min(hi, vmax)
    if b <= a:  # one value (or everything clipped into one): a narrow bin centred on it
        w = 1.0 if integer else (abs(a) * 0.02 or 0.01)
        return [a - w / 2, a + w / 2]
    if integer:
        step = max(1, math.ceil((b - a + 1) / bins))
        n = math.ceil((b - a + 1) / step)
        return [a - 0.5 + i * step for i in range(n + 1)]
    return [float(x) for x in np.linspace(a, b, bins + 1)]


@_styled
def histogram(fid: str, series: Sequence[tuple[str, Sequence[float]]], title: str, xlabel: str,
              unit: str = "records", colors: Sequence[str] = PALETTE, threshold: tuple[float, str] | None = None,
              clip_q: float | None = 0.99, lo: float | None = None, hi: float | None = None,
              width: float = 5.4, height: float = 3.0) -> Hist:
    """One panel per series (kept above dropped), sharing bins and the x axis, each with its own count axis,
    so 34 kept records beside 7,639 dropped ones are as visible as the dropped. The threshold is drawn as a
    dashed line in every panel; when it lies outside the data the axis is widened to show it, unless it is
    more than WIDEN data spans away, when an arrow at the axis edge marks it (`Hist.threshold` says which)."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator
    series = [(name, np.asarray(vals, dtype=float)) for name, vals in series if len(vals)]
    if not series:
        raise ValueError(f"{title}: no values")
    allv = np.concatenate([v for _, v in series])
    integer = bool(np.all(allv == np.round(allv))) and float(allv.max() - allv.min()) >= 1
    edges = bin_edges(allv, clip_q, lo, hi, integer)
    first, last = edges[0], edges[-1]
    p = _new(fid, width, height if len(series) == 1 else height + 1.5 * (len(series) - 1), len(series),
             sharex=True, top=0.6)
    counts: dict[str, list[int]] = {}
    span = last - first
    if len(edges) == 2:  # one value: a narrow bar on an axis wide enough to read it as one value
        span = max(abs(first + last) / 2, 8.0 if integer else 1.0)
    mid = (first + last) / 2
    x0, x1 = min(first - 0.02 * span, mid - span / 2), max(last + 0.02 * span, mid + span / 2)
    where = None
    if threshold is not None:
        t = threshold[0]
        if first <= t <= last:
            where = "in"
        elif min(abs(t - first), abs(t - last)) <= WIDEN * span and math.isfinite(t):
            where = "widened"
            x0, x1 = min(x0, t - 0.04 * span), max(x1, t + 0.04 * span)
        else:
            where = "off"
    for i, (ax, (name, vals)) in enumerate(zip(p.axes, series)):
        c, _ = np.histogram(np.clip(vals, first, last), bins=edges)
        counts[name] = [int(x) for x in c]
        color = colors[i % len(colors)]
        for j, n in enumerate(counts[name]):
            if not n:
                continue
            a, b = edges[j], edges[j + 1]
            lo_txt = f"{fmt_num(a + 0.5)}" if integer else f"{a:.3g}"
            hi_txt = f"{fmt_num(b - 0.5)}" if integer else f"{b:.3g}"
            rng = (f"= {fmt_num((a + b) / 2)}" if len(edges) == 2 else
                   f"{lo_txt}" + ("" if integer and b - a == 1 else f"-{hi_txt}"))
            if j == len(counts[name]) - 1 and float(vals.max()) > b:
                rng += f" and above, up to {fmt_num(float(vals.max()))}"
            if j == 0 and float(vals.min()) < a:
                rng += f" and below, down to {fmt_num(float(vals.min()))}"
            (bar,) = ax.bar([(a + b) / 2], [n], width=(b - a) * 0.96, color=color)
            p.mark(bar, f"{name} {rng}: {n}")
        ax.set_title(f"{name}: {len(vals):,} {unit}", loc="left", fontsize=9, color=color)
        ax.set_ylabel(unit)
        ax.set_xlim(x0, x1)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts
        if integer:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if threshold is not None:
            t, label = threshold
            if where == "off":  # written at the edge on the threshold's side, with an arrow pointing there
                right = t > last
                txt = ax.text(0.99 if right else 0.01, 0.93, f"{label} \u2192" if right else f"\u2190 {label}",
                              transform=ax.transAxes, ha="right" if right else "left", va="top", fontsize=8,
                              color=INK, bbox={"facecolor": "white", "edgecolor": "#888888", "pad": 2})
                p.mark(txt, f"{label}: off the axis at {t:g}", cls="threshold")
            else:
                line = ax.axvline(t, color=INK, linestyle="--", linewidth=1.2)
                p.mark(line, label, cls="threshold")
                if i == 0:  # the label on the side of the line with more room
                    right_half = t > (x0 + x1) / 2
                    ax.annotate(label, xy=(t, 1.0), xycoords=("data", "axes fraction"),
                                xytext=(-3 if right_half else 3, -10), textcoords="offset points", fontsize=8,
                                color=INK, ha="right" if right_half else "left")
    p.axes[0].figure.suptitle(title, fontsize=10)
    p.axes[-1].set_xlabel(xlabel)
    return Hist(p.svg(), edges, counts, where, (x0, x1))


# ------------------------------------------------------------------------------------------------- bars

@_styled
def funnel(fid: str, rows: Sequence[tuple[str, int, int]], title: str, unit: str = "records") -> tuple[str, bool]:
    """Kept and dropped counts per filter step, as two bars each, with the number written beside each bar.
    A log count axis when the counts differ by more than 50 times (34 kept beside 7,639 dropped stays
    visible); returns (svg, log scale used)."""
    nonzero = [v for _, k, d in rows for v in (k, d) if v > 0]
    if not nonzero:
        raise ValueError(f"{title}: no counts")
    log = max(nonzero) / min(nonzero) > 50
    label_in = 0.2 + 0.075 * max(len(r[0]) for r in rows)  # ~0.075 in per character at 9 pt
    p = _new(fid, 5.6 + label_in, 0.95 + 0.42 * len(rows), left=label_in, right=0.2, top=0.35, bottom=0.5)
    ax = p.axes[0]
    base = 0.7 if log else 0.0
    for i, (label, kept, dropped) in enumerate(rows):
        y = len(rows) - 1 - i
        for off, n, color, what in ((0.2, kept, KEPT, "kept"), (-0.2, dropped, DROPPED, "dropped")):
            if n > 0:
                (bar,) = ax.barh([y + off], [n - base], left=base, height=0.38, color=color)
                p.mark(bar, f"{label}: {what} {n:,}")
            ax.annotate(f"{n:,} {what}" if n or what == "kept" else "none dropped", xy=(max(n, base), y + off),
                        xytext=(3, 0), textcoords="offset points", va="center", fontsize=8, color=INK,
                        annotation_clip=False)
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)])
    ax.set_ylim(-0.55, len(rows) - 0.45)
    ax.grid(axis="y", visible=False)
    if log:
        from matplotlib.ticker import FuncFormatter, NullFormatter
        ax.set_xscale("log")
        ax.set_xlim(base, max(nonzero) * 8)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_num(v)))  # 1, 10, 100, 1k: not 10^0
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_xlim(0, max(nonzero) * 1.25)
    ax.set_xlabel(unit + (" (log scale)" if log else ""))
    ax.set_title(title, loc="left")
    return p.svg(), log


@_styled
def grouped_bars(fid: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], title: str,
                 ylabel: str, colors: Sequence[str] = PALETTE, width: float = 5.0, height: float = 3.2) -> str:
    """Bars grouped by label, one per series, each with its value written above it."""
    p = _new(fid, width, height, right=1.0, top=0.35)
    ax = p.axes[0]
    n = len(series)
    w = 0.8 / max(1, n)
    for s, (name, vals) in enumerate(series):
        for i, v in enumerate(vals):
            (bar,) = ax.bar([i - 0.4 + w * (s + 0.5)], [v], width=w * 0.92, color=colors[s % len(colors)],
                            label=name if i == 0 else None)
            p.mark(bar, f"{labels[i]}, {name}: {v:.4g}")
            ax.annotate(f"{v:.3g}", xy=(i - 0.4 + w * (s + 0.5), v), xytext=(0, 2), textcoords="offset points",
                        ha="center", fontsize=7, color=INK)
    ax.set_xticks(range(len(labels)), labels)
    ax.grid(axis="x", visible=False)
    ax.set_ylabel(ylabel)
    p.fig.suptitle(title, x=0.03, ha="left", fontsize=10)  # over the whole width: the legend takes the right
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return p.svg()


@_styled
def lines(fid: str, series: Sequence[tuple[str, Sequence[float], Sequence[float]]], title: str, xlabel: str,
          ylabel: str, colors: Sequence[str] = PALETTE, widths: Sequence[float] = ()) -> str:
    p = _new(fid, 5.4, 3.0, top=0.35)
    ax = p.axes[0]
    for i, (name, xs, ys) in enumerate(series):
        (ln,) = ax.plot(xs, ys, color=colors[i % len(colors)], linewidth=widths[i] if i < len(widths) else 1.5,
                        label=name)
        p.mark(ln, f"{name}: {len(ys)} points, {ys[0]:.4g} -> {ys[-1]:.4g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left")
    ax.legend(fontsize=8)
    return p.svg()


@_styled
def sunburst(fid: str, tree: Sequence[tuple[str, int, Sequence[tuple[str, int]]]], title: str) -> str:
    """Two rings: the verbs (inner) and each verb's most common objects (outer; the rest of a verb's
    instructions left blank)."""
    if not tree:
        raise ValueError(f"{title}: nothing to draw")
    p = _new(fid, 5.0, 5.0, left=0.1, right=0.1, top=0.4, bottom=0.1)
    ax = p.axes[0]
    ax.grid(False)
    ax.set_aspect("equal")
    total = sum(c for _, c, _ in tree)
    inner, _ = ax.pie([c for _, c, _ in tree], radius=0.62, startangle=90, counterclock=False,
                      colors=[PALETTE[i % len(PALETTE)] for i in range(len(tree))],
                      wedgeprops={"width": 0.34, "edgecolor": "white", "linewidth": 0.8})
    outer_vals, outer_colors, outer_tips, outer_labels = [], [], [], []
    for i, (verb, c, objs) in enumerate(tree):
        for obj, m in objs:
            outer_vals.append(m)
            outer_colors.append(PALETTE[i % len(PALETTE)])
            outer_tips.append(f"{verb} {obj}: {m}")
            outer_labels.append(obj if m / total > 0.018 else "")
        rest = c - sum(m for _, m in objs)
        if rest > 0:
            outer_vals.append(rest)
            outer_colors.append("#FFFFFF")
            outer_tips.append(None)
            outer_labels.append("")
    outer, _ = ax.pie(outer_vals, radius=1.0, startangle=90, counterclock=False, colors=outer_colors,
                      wedgeprops={"width": 0.36, "edgecolor": "white", "linewidth": 0.6, "alpha": 0.75})
    for (verb, c, _), w in zip(tree, inner):
        p.mark(w, f"{verb}: {c}")
        if c / total > 0.03:
            ang = math.radians((w.theta1 + w.theta2) / 2)
            ax.text(0.45 * math.cos(ang), 0.45 * math.sin(ang), verb, ha="center", va="center", fontsize=8,
                    color="white", fontweight="bold")
    for w, tip, label in zip(outer, outer_tips, outer_labels):
        if tip is not None:
            p.mark(w, tip)
        if label:
            ang = math.radians((w.theta1 + w.theta2) / 2)
            ax.text(0.82 * math.cos(ang), 0.82 * math.sin(ang), label, ha="center", va="center", fontsize=7,
                    color=INK)
    ax.set_xlim(-1.04, 1.04)  # pie() leaves a quarter of the radius empty on every side
    ax.set_ylim(-1.04, 1.04)
    ax.set_title(title, loc="left")
    return p.svg()
