"""The matplotlib SVG layer: deterministic static SVG, tooltips with exact numbers, and the edge cases that
the hand-written layer drew misleadingly (each test here failed against it)."""

import re
from html import unescape

import pytest

from instructgen.report import svg


def tips(s: str, cls: str = "mark") -> list[str]:
    return [unescape(t) for t in re.findall(r'class="' + cls + r'"><title>([^<]*)</title>', s)]


def mark_boxes(s: str) -> list[tuple[str, float, float, float, float]]:
    """(tooltip, x0, y0, x1, y1) of each mark whose first child is a path (a bar), from its path's points."""
    out = []
    found = re.findall(r'class="mark"><title>([^<]*)</title>\s*<path d="([^"]*)"', s)
    for tip, d in ((unescape(t), d) for t, d in found):
        nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]
        xs, ys = nums[0::2], nums[1::2]
        out.append((tip, min(xs), min(ys), max(xs), max(ys)))
    return out


def test_svg_is_static_deterministic_and_inline_ready():
    a = svg.histogram("h", [("words", list(range(1, 101)))], "t", "x").svg
    b = svg.histogram("h", [("words", list(range(1, 101)))], "t", "x").svg
    assert a == b  # no date, a fixed hash salt
    assert a.startswith("<svg") and "<script" not in a and "<?xml" not in a and "DOCTYPE" not in a
    assert not re.search(r"https?://(?!www\.w3\.org/)", a)  # no creator URL, nothing to fetch
    assert "<text" in a  # text stays text (svg.fonttype none)
    other = svg.histogram("h2", [("words", list(range(1, 101)))], "t", "x").svg
    ids = set(re.findall(r'clipPath id="([^"]+)"', a))
    assert ids and not ids & set(re.findall(r'clipPath id="([^"]+)"', other))  # two figures on a page


def test_histogram_counts_every_value_once_and_folds_outliers():
    values = list(range(1, 101)) * 2 + [5000]  # one long outlier
    h = svg.histogram("h", [("words", values)], "t", "x")
    counts = [int(t.rsplit(": ", 1)[1]) for t in tips(h.svg)]
    assert sum(counts) == len(values) == sum(h.counts["words"])
    assert len(h.edges) - 1 <= svg.MAX_BINS
    assert any("and above, up to 5000" in t for t in tips(h.svg))  # the outlier sits in the last bin


def test_all_zero_score_is_one_narrow_bar_at_zero_not_zero_to_one():
    h = svg.histogram("z", [("kept", [0.0] * 40)], "score", "x", clip_q=None)
    assert h.edges[-1] - h.edges[0] < 0.05 and h.edges[0] < 0 < h.edges[-1]
    assert tips(h.svg) == ["kept = 0: 40"]
    assert (h.edges[-1] - h.edges[0]) < 0.02 * (h.xlim[1] - h.xlim[0])  # a sliver of a wide axis
    ((_, x0, _, x1, _),) = mark_boxes(h.svg)
    assert x1 - x0 < 10  # points, of a plot over 300 wide: the old layer drew one bar across it


@pytest.mark.parametrize("thr, where", [(0.7, "widened"), (-0.05, "widened"), (25.0, "off"), (0.2, "in")])
def test_threshold_outside_the_data_is_still_shown(thr, where):
    h = svg.histogram("t", [("kept", [0.1, 0.2, 0.3] * 5)], "sim", "score", clip_q=None,
                      threshold=(thr, f"threshold {thr:g}"))
    assert h.threshold == where
    shown = tips(h.svg, "threshold")
    assert shown and all(f"threshold {thr:g}" in t for t in shown)
    if where != "off":
        assert h.xlim[0] <= thr <= h.xlim[1]
    else:
        assert "\u2192" in h.svg and h.xlim[1] < thr  # an arrow at the right edge; the data keep the axis


def test_few_kept_beside_many_dropped_get_their_own_panel():
    kept, dropped = [0.2, 0.3] * 17, [0.8, 0.9] * 3820  # 34 kept, 7,640 dropped
    h = svg.histogram("p", [("kept", kept), ("dropped", dropped)], "sim", "score", clip_q=None)
    boxes = mark_boxes(h.svg)
    tallest = {name: max(y1 - y0 for t, _, y0, _, y1 in boxes if t.startswith(name)) for name in h.counts}
    assert tallest["kept"] > 0.6 * tallest["dropped"]  # on one shared axis it would be 17/3820 of it
    assert "kept: 34 records" in h.svg and "dropped: 7,640 records" in h.svg


def test_funnel_uses_a_log_axis_when_counts_differ_widely():
    out, log = svg.funnel("f", [("curated: rouge_l", 34, 7639)], "funnel")
    assert log and "records (log scale)" in out
    widths = {t.split(": ")[-1].split()[0]: x1 - x0 for t, x0, _, x1, _ in mark_boxes(out)}
    assert widths["kept"] > 0.3 * widths["dropped"]  # linear: 34/7639 of it, under a pixel
    assert "34 kept" in out and "7,639 dropped" in out  # the numbers are written beside the bars
    out, log = svg.funnel("f", [("a", 50, 5), ("b", 45, 0)], "funnel")
    assert not log and "none dropped" in out and len(tips(out)) == 3  # a zero bar is not drawn


def test_sunburst_lines_bars():
    tree = [("write", 10, [("poem", 4), ("story", 3)]), ("give", 5, [("list", 5)])]
    sb = svg.sunburst("v", tree, "verbs")
    assert tips(sb) == ["write: 10", "give: 5", "write poem: 4", "write story: 3", "give list: 5"]
    assert ">write<" in sb and ">poem<" in sb
    ln = svg.lines("l", [("loss", [1, 2, 3], [3.0, 2.0, 1.5])], "loss", "step", "loss")
    assert tips(ln) == ["loss: 3 points, 3 -> 1.5"]
    gb = svg.grouped_bars("g", ["loss"], [("before", [2.9]), ("after", [1.7])], "eval", "loss")
    assert tips(gb) == ["loss, before: 2.9", "loss, after: 1.7"] and ">2.9<" in gb
    with pytest.raises(ValueError):
        svg.sunburst("v", [], "none")
    with pytest.raises(ValueError):
        svg.histogram("h", [("none", [])], "t", "x")


def test_labels_from_the_run_are_text_not_mathtext():
    """A filter named `len$x^$` (curate.yaml `name:`) or a verb list holding `$\\frac{$`: matplotlib parsed them
    as mathtext and raised, so the funnel figure was dropped with a parser traceback in the page's notes."""
    out, _ = svg.funnel("f", [("curated: len$x^$", 6, 1), ("curated: read$\\frac{$", 6, 0)], "Funnel $a$")
    texts = [unescape(re.sub("<[^>]+>", "", t)) for t in re.findall(r"<text[^>]*>.*?</text>", out, re.S)]
    assert "curated: len$x^$" in texts and "curated: read$\\frac{$" in texts and "Funnel $a$" in texts
    h = svg.histogram("h", [("cost $5", [1.0, 2.0, 3.0])], "price in $ and $$", "$x^$").svg
    assert "price in $ and $$" in unescape(h) and "$x^$" in unescape(h)
