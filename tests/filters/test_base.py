"""The filter contract (filters/base.py): decisions, every score and rank on every record, keep_top by count or
share, and the per-record score cache that lets a crashed step resume without redoing a finished record."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from instructgen.config import ConfigError
from instructgen.filters.base import RecordFilter, SelectParams, budget, doc, run_filter
from instructgen.filters.chain import build_filter, parse_config
from instructgen.filters.rouge import RougeNoveltyFilter
from instructgen.records import Task


@dataclass
class VowelParams(SelectParams):
    threshold: float = doc("drop when the vowel share is below this", default=0.0)
    fields: list[str] = doc("fields read", default_factory=lambda: ["instruction"])


class VowelFilter(RecordFilter):
    """A cheap scorer standing in for an expensive one: the share of vowels; counts the records it scores
    and can crash after a number of batches (orchestration only: resume, batching, selection)."""

    name = "vowels"
    Params = VowelParams
    score_key = "vowel_share"
    cache_kind = "vowels"
    score_names = ("vowel_share",)
    batch_size = 2
    cache_flush = 2
    crash_after: int | None = None

    def setup(self) -> None:
        self.scored: list[str] = []

    def score_batch(self, tasks):
        if self.crash_after is not None and len(self.scored) >= self.crash_after:
            raise KeyboardInterrupt("killed mid-step")
        for t in tasks:
            text = t.instruction.lower()
            t.scores["vowel_share"] = sum(c in "aeiou" for c in text) / max(1, len(text))
            self.scored.append(t.id)
        return [self.decide_scores(t) for t in tasks]

    def decide_scores(self, task):
        return f"vowels<{self.p.threshold:g}" if task.scores["vowel_share"] < self.p.threshold else None


TEXTS = ["aaaa", "bbbb", "abab", "aaab", "bbba", "eeee", "xyzw"]


def records():
    return [Task(id=f"r{i}", instruction=t) for i, t in enumerate(TEXTS)]


def test_every_record_keeps_its_score_and_rank_and_keep_top_picks_the_best():
    tasks = records()
    tasks[6].drop("too_short", filter="length")  # dropped upstream: not scored, not ranked
    f = VowelFilter.of(threshold=0.2, keep_top=3)
    tasks, st = run_filter(f, tasks)
    share = {t.id: t.scores.get("vowel_share") for t in tasks}
    assert share == {"r0": 1.0, "r1": 0.0, "r2": 0.5, "r3": 0.75, "r4": 0.25, "r5": 1.0, "r6": None}
    # ranks over all six scored records, kept or dropped; ties in input order
    assert {t.id: t.meta.get("rank", {}).get("vowels") for t in tasks} == \
        {"r0": 1, "r5": 2, "r3": 3, "r2": 4, "r4": 5, "r1": 6, "r6": None}
    assert [t.id for t in tasks if t.kept] == ["r0", "r3", "r5"]
    assert dict(st.dropped) == {"vowels<0.2": 1, "below_top_3:vowel_share": 2}
    assert tasks[6].verdict.reason == "too_short"


def test_keep_top_share_counts_the_records_reaching_the_filter_and_lower_is_better():
    assert budget(0.5, 7) == 4 and budget(0.01, 7) == 1 and budget(3, 2) == 2 and budget(None, 5) is None
    for bad in (0, -1, 1.0, 1.5, True, "10"):
        with pytest.raises(ValueError, match="keep_top"):
            budget(bad, 5)
    tasks = [Task(id="a", instruction="Write a poem about the sea at night."),
             Task(id="b", instruction="Write a poem about the sea at dawn."),
             Task(id="c", instruction="List three rivers in Africa."),
             Task(id="d", instruction="Write a poem about the sea.")]
    f = RougeNoveltyFilter.of(threshold=0.9, keep_top=0.5)  # rouge_l_max: lower (more novel) is better
    f.apply(tasks)
    assert all("rouge_l_max" in t.scores for t in tasks)
    assert [t.id for t in tasks if t.kept] == ["a", "c"]  # a and c meet nothing similar before them
    assert tasks[1].verdict.reason == "below_top_2:rouge_l_max"


def test_a_bad_keep_top_names_the_config_entry():
    cfg = parse_config({"filters": [{"filter": "rouge_l", "keep_top": 1.5}]}, "my.yaml")
    with pytest.raises(ConfigError, match=r"my.yaml: rouge_l: keep_top"):
        build_filter(cfg.filters[0])
    with pytest.raises(ConfigError, match=r"keep_top"):
        parse_config({"filters": [{"filter": "rouge_l", "keep_top": "ten"}]}, "my.yaml")


def test_cached_scores_survive_a_crash_and_a_new_threshold_costs_no_scoring(tmp_path):
    ctx = {"cache_dir": tmp_path, "read_only_cache": False}
    f = VowelFilter.of(threshold=0.3)
    f.crash_after = 4  # killed in the third batch: two batches (4 records) were flushed to the cache
    f.prepare(ctx)
    with pytest.raises(KeyboardInterrupt):
        f.apply(records())
    again = VowelFilter.of(threshold=0.3)
    again.prepare(ctx)
    tasks = again.apply(records())
    assert again.scored == ["r4", "r5", "r6"] and again.details["scores_cached"] == 4  # no finished record redone
    fresh = VowelFilter.of(threshold=0.3).apply(records())  # no cache: the same decisions and scores
    assert [(t.kept, t.scores) for t in tasks] == [(t.kept, t.scores) for t in fresh]
    stricter = VowelFilter.of(threshold=0.6, keep_top=2)  # re-selecting: every score comes from the cache
    stricter.prepare(ctx)
    out = stricter.apply(records())
    assert stricter.scored == [] and [t.id for t in out if t.kept] == ["r0", "r5"]


def test_read_only_cache_is_read_not_written(tmp_path):
    f = VowelFilter.of()
    f.prepare({"cache_dir": tmp_path, "read_only_cache": True})
    f.apply(records())
    assert not any(tmp_path.iterdir())


def test_decide_runs_one_record_through_either_kind():
    from instructgen.filters.rules import LengthFilter
    rouge = RougeNoveltyFilter.of(threshold=0.7)
    a = Task(id="a", instruction="Name three rivers in Europe.")
    b = Task(id="b", instruction="Name three rivers in Europe!")
    assert LengthFilter().decide(a) and rouge.decide(a) and not rouge.decide(b)
    assert b.verdict.duplicate_of == "a" and b.scores["rouge_l_max"] == 1.0 and a.scores["words_instruction"] == 5.0
