import re

import pytest

from instructgen.report import svg


def tips(s: str) -> list[str]:
    return re.findall(r'class="mark"[^>]*><title>([^<]*)</title>', s)


def test_nice_ticks():
    assert svg.nice_ticks(0, 10, 5) == [0, 2, 4, 6, 8, 10]
    assert svg.nice_ticks(0, 3, 4, integer=True) == [0, 1, 2, 3]
    assert svg.nice_ticks(0.0, 1.0, 4) == [0, 0.25, 0.5, 0.75, 1.0]
    assert svg.fmt_num(12500) == "12.5k" and svg.fmt_num(0.25) == "0.25" and svg.fmt_num(3.0) == "3"


def test_histogram_counts_every_value_once_and_folds_outliers():
    values = list(range(1, 101)) + [5000]  # one long outlier
    out = svg.histogram([("words", values)], "t", "x")
    counts = [int(t.rsplit(": ", 1)[1]) for t in tips(out)]
    assert sum(counts) == len(values)
    assert "and above, up to 5000" in out  # the outlier sits in the last bin, said in its tooltip
    assert out.startswith('<svg xmlns="http://www.w3.org/2000/svg"')


def test_stacked_histogram_and_threshold():
    out = svg.histogram([("kept", [0.1, 0.2, 0.3]), ("dropped", [0.9, 0.95])], "sim", "score", clip_q=None,
                        threshold=(0.7, "threshold 0.7"))
    t = tips(out)
    assert sum(int(x.rsplit(": ", 1)[1]) for x in t if x.startswith("kept")) == 3
    assert sum(int(x.rsplit(": ", 1)[1]) for x in t if x.startswith("dropped")) == 2
    assert "stroke-dasharray" in out and "threshold 0.7" in out
    with pytest.raises(ValueError):
        svg.histogram([("none", [])], "t", "x")


def test_hbars_sunburst_lines_bars():
    out = svg.hbars([("a", [5, 2]), ("b", [3, 0])], "f", "records", ("kept", "dropped"), notes=["-2", "-0"])
    assert len(tips(out)) == 3 and "-2" in out  # zero-width segments are not drawn
    tree = [("write", 10, [("poem", 4), ("story", 3)]), ("give", 5, [("list", 5)])]
    sb = svg.sunburst(tree, "verbs")
    assert len(re.findall(r'<path class="mark"', sb)) == 2 + 3
    assert ">write<" in sb and ">poem<" in sb
    ln = svg.lines([("loss", [1, 2, 3], [3.0, 2.0, 1.5])], "loss", "step", "loss")
    assert "<polyline" in ln
    gb = svg.grouped_bars(["loss"], [("before", [2.9]), ("after", [1.7])], "eval", "loss")
    assert len(tips(gb)) == 2 and ">2.9<" in gb
    with pytest.raises(ValueError):
        svg.sunburst([], "none")
