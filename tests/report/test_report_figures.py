"""Figures built from run folders: the cases where the old report misled, each read from a small hand-made
folder (every test here failed against the hand-written SVG layer and its figure code)."""

from __future__ import annotations

import re
import sys
from html import unescape
from pathlib import Path

from instructgen.report import build_figures, load_run, write_report

sys.path.insert(0, str(Path(__file__).parent))
from fake_run import make_curated, make_run, tasks  # noqa: E402


def figs(folder) -> dict:
    return {f.id: f for f in build_figures(load_run(folder, records=False))[0]}


def tips(s: str, cls: str = "mark") -> list[str]:
    return [unescape(t) for t in re.findall(r'class="' + cls + r'"><title>([^<]*)</title>', s)]


def dropped(n, reason, flt, prefix="d", **scores):
    out = tasks(n, prefix, **scores)
    for t in out:
        t.drop(reason, filter=flt)
    return out


def test_a_score_stored_only_on_dropped_records_says_so(tmp_path):
    # curate's rouge_l stores rouge_l_max on the records it drops only: the chart must not pass for all records
    folder = make_curated(tmp_path / "cur", tasks(30), dropped(5, "rouge_l>0.70", "rouge_l",
                                                                 rouge_l_max=lambda i: 0.8 + i / 100),
                          [{"name": "rouge_l", "filter": "rouge_l", "params": {"threshold": 0.7},
                            "dropped": {"rouge_l>0.70": 5}}])
    f = figs(folder)["sim-rouge-l-max"]
    assert "Covers 0 of 30 kept and 5 of 5 dropped records of the curated stage" in f.caption
    assert "the chart shows dropped records only" in f.caption
    assert "kept:" not in f.svg and "dropped: 5 records" in f.svg


def test_thresholds_are_read_from_the_filter_params_not_the_score_name(tmp_path):
    # a minhash step named "near_dupes": the old report matched the score's first word to the step's name
    kept = tasks(20, minhash_jaccard=lambda i: i / 40, embedding_cos_max=lambda i: 0.3 + i / 100)
    folder = make_curated(tmp_path / "cur", kept, dropped(3, "minhash>0.75", "near_dupes",
                                                          minhash_jaccard=0.9),
                          [{"name": "near_dupes", "filter": "minhash", "params": {"threshold": 0.75}},
                           {"name": "embedding_like", "filter": "readability", "params": {"threshold": 0.5}}])
    f = figs(folder)
    assert "Dashed line: the threshold 0.75 (curated step near_dupes: threshold)." in f["sim-minhash-jaccard"].caption
    assert tips(f["sim-minhash-jaccard"].svg, "threshold") == ["threshold 0.75"] * 2  # both panels
    # no embedding filter ran: no line, although a readability step has a "threshold" param
    assert "No threshold" in f["sim-embedding-cos-max"].caption
    assert not tips(f["sim-embedding-cos-max"].svg, "threshold")


def test_a_threshold_outside_the_data_is_drawn(tmp_path):
    # the demo's readability minimum is -40 while every score lies in 20..95: the old page promised a line and
    # drew none
    kept = tasks(25, reading_ease_instruction=lambda i: 20 + 3 * i)
    folder = make_curated(tmp_path / "cur", kept, [], [{"name": "readability", "filter": "readability",
                                                        "params": {"min_reading_ease": -40.0}}])
    f = figs(folder)["readability"]
    assert tips(f.svg, "threshold") == ["threshold -40"]
    assert "outside the data; the axis is widened to show it" in f.caption


def test_an_all_zero_score_is_not_drawn_as_a_bar_from_zero_to_one(tmp_path):
    folder = make_curated(tmp_path / "cur", tasks(12, embedding_cos_max=0.0), [], [])
    assert tips(figs(folder)["sim-embedding-cos-max"].svg) == ["kept = 0: 12"]


def test_boilerplate_is_not_read_as_the_leading_verb(tmp_path):
    verbs = ["Find the weather in", "Write a poem about", "Give me a list of", "Summarize the news about"]
    text = lambda i: f"Toolformer can call external APIs.\n{verbs[i % 4]} city {i}."  # noqa: E731
    f = figs(make_curated(tmp_path / "cur", tasks(40, text=text), [], []))["verbs"]
    assert [v for v, _, _ in f.data] == ["find", "write", "give", "summarize"]
    assert "'Toolformer can call external APIs.'" in f.caption


def test_instance_level_drops_are_shown(tmp_path):
    html = write_report(make_run(tmp_path / "run", stages=("instructions", "instances"), n=30)).read_text()
    row = re.search(r'<td class="t">instances</td><td class="t">instance rules \(each instance\)</td>(.*?)</tr>',
                    html)
    # fake_run: of the 27 kept tasks, 6 lost an empty-output instance and 4 lost two over the maximum
    assert row and "over_max_instances: 8, empty_output: 6" in row.group(1)
    assert "instances: instance rules (each instance): dropped 14" in tips(html)


def test_a_large_run_gives_a_bounded_page(tmp_path):
    """Binned figures and sampled rows: 20x the records, about the same page."""
    def page(n: int) -> str:
        folder = make_curated(tmp_path / f"cur{n}", tasks(n, f"k{n}-", minhash_jaccard=lambda i: (i % 97) / 100),
                              dropped(n // 4, "minhash>0.80", "minhash", f"d{n}-", minhash_jaccard=0.9),
                              [{"name": "minhash", "filter": "minhash", "params": {"threshold": 0.8},
                                "dropped": {"minhash>0.80": n // 4}}])
        return write_report(folder, tmp_path / f"r{n}.html").read_text()

    small, big = page(300), page(6000)
    assert len(big) < 1.1 * len(small) and len(big) < 400_000
    kept_rows = re.search(r'<table class="kept">(.*?)</table>', big, re.S).group(1).count("<tr>")
    assert kept_rows == 1 + 8 and "A seeded sample of 8 of the 6,000 kept records" in big
    sim = re.search(r'id="fig-sim-minhash-jaccard".*?</figure>', big, re.S).group(0)
    assert sum(int(t.rsplit(": ", 1)[1]) for t in tips(sim) if t.startswith("kept ")) == 6000


def test_quality_scores_of_every_record_with_threshold_and_budget(tmp_path):
    # the scorers of issue 11 store their score on every record, kept or dropped, and may keep a budget
    kept = tasks(20, ifd=lambda i: 0.5 + i / 50, judge_rating=lambda i: 4.5 + (i % 5) / 10)
    drop = dropped(5, "ifd>=1.00", "ifd", ifd=lambda i: 1.0 + i / 10, judge_rating=3.0)
    folder = make_curated(tmp_path / "cur", kept, drop, [
        {"name": "ifd", "filter": "ifd", "params": {"threshold": 1.0, "keep_top": 0.5}},
        {"name": "judge", "filter": "llm_judge", "params": {"min_score": 4.5, "keep_top": None}}])
    f = figs(folder)
    ifd, judge = f["score-ifd"].caption, f["score-judge-rating"].caption
    assert "Covers 20 of 20 kept and 5 of 5 dropped records of the curated stage." in ifd
    assert "the threshold 1 (curated step ifd: threshold)" in ifd
    assert "keeps only the best 50% of its input (keep_top)" in ifd
    assert "the threshold 4.5 (curated step judge: min_score)" in judge and "keep_top" not in judge
