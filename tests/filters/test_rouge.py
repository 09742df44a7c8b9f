"""The fast ROUGE-L novelty check makes the exhaustive scan's decisions, with the exact same floats."""

from __future__ import annotations

import gzip
import json
import random

import pytest
from rouge_score import rouge_scorer
from rouge_score.rouge_scorer import _score_lcs

from instructgen.filters.rouge import (PrefixRougeIndex, RougeIndex, RougeNoveltyFilter, lcs_length,
                                       pool_max_scores, rouge_l, rouge_tokens)
from instructgen.records import Task, read_seed_tasks


def test_bit_parallel_lcs_equals_the_dp_table_on_random_sequences():
    rng = random.Random(7)
    for _ in range(1500):
        a = [rng.choice("abcdefg") for _ in range(rng.randint(0, 70))]
        b = [rng.choice("abcdefgh") for _ in range(rng.randint(0, 70))]
        ref = _score_lcs(a, b)
        assert rouge_l(a, b) == ref.fmeasure
        if a and b:
            assert lcs_length(a, b) == round(ref.precision * len(b))


def test_rouge_l_is_rouge_scores_float_on_real_instructions(shared_data):
    seeds = read_seed_tasks(shared_data / "self_instruct_seed_tasks.jsonl")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(0)
    for _ in range(300):
        a, b = rng.sample(seeds, 2)
        want = scorer.score(a.instruction, b.instruction)["rougeL"].fmeasure
        assert rouge_l(rouge_tokens(a.instruction), rouge_tokens(b.instruction)) == want


def exhaustive(texts: list[tuple[str, str]], threshold: float, reference=()) -> list[tuple[bool, str | None, float]]:
    """The original algorithm: every candidate against every pool text; drop when the max is above threshold."""
    pool = [(i, rouge_tokens(t)) for i, t in reference]
    out = []
    for id, text in texts:
        toks = rouge_tokens(text)
        best, best_id = 0.0, None
        for pid, ptoks in pool:
            s = rouge_l(toks, ptoks)
            if s > best:
                best, best_id = s, pid
        if best > threshold:
            out.append((False, best_id, best))
        else:
            out.append((True, None, best))
            pool.append((id, toks))
    return out


def decisions(tasks):
    # every record carries its exact max, kept or dropped (issue 11: kept ones carried none when top_k was 0)
    return [(t.kept, t.verdict.duplicate_of, t.scores.get("rouge_l_max")) for t in tasks]


def t0_slice(shared_data, start: int, n: int) -> list[Task]:
    with gzip.open(shared_data / "t0_templates.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(start + n), f)][start:]
    return [Task(id=r["id"], instruction=r["prompt"]) for r in rows]


@pytest.mark.parametrize("batch", [False, True])
def test_same_decisions_as_the_exhaustive_scan_on_real_data(shared_data, batch):
    seeds = read_seed_tasks(shared_data / "self_instruct_seed_tasks.jsonl")
    # seeds against themselves, then long T0 prompts full of near-duplicates (two slices, other templates)
    for tasks, ref in [([Task(id=s.id, instruction=s.instruction) for s in seeds], ()),
                       (t0_slice(shared_data, 0, 120) + t0_slice(shared_data, 20000, 120), ()),
                       (t0_slice(shared_data, 45000, 150), [(s.id, s.instruction) for s in seeds[:40]])]:
        want = exhaustive([(t.id, t.instruction) for t in tasks], 0.7, ref)
        f = RougeNoveltyFilter.of(threshold=0.7, top_k=0)
        f.add_reference(ref)
        if batch:
            f.apply(tasks)
        else:
            for t in tasks:
                f.decide(t)
        assert decisions(tasks) == want
        assert any(not k for k, _, _ in want) and any(k for k, _, _ in want)


def test_prefix_index_finds_every_entry_above_the_threshold():
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(40)]
    docs = [[rng.choice(vocab) for _ in range(rng.randint(3, 30))] for _ in range(120)]
    docs += [d[:-1] + ["x"] for d in docs[:30]]  # near copies
    idx = PrefixRougeIndex(0.6, [RougeIndex._features(d) for d in docs])
    for i, d in enumerate(docs[:100]):
        idx.add(str(i), d)
    for q in docs[100:]:
        score, pos = idx.query(q)
        exact = max(rouge_l(q, d) for d in docs[:100])
        if exact > 0.6:
            assert score == exact  # the exact max, found although only prefixes are indexed
        else:
            assert score <= 0.6


@pytest.mark.parametrize("top", [1, 3, 16])
def test_pool_max_scores_are_the_exhaustive_maxima(top):
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(30)]
    docs = [[rng.choice(vocab) for _ in range(rng.randint(0, 25))] for _ in range(90)]
    docs += [d[:-1] + ["x"] for d in docs[:20]]
    got = pool_max_scores(docs, 10, block=7, top=top)  # small blocks and top: every branch runs
    want = [max([rouge_l(docs[i], docs[j]) for j in range(i)] + [0.0]) for i in range(10, len(docs))]
    assert got == want


def test_filter_keeps_the_first_copy_and_explains_the_drop():
    tasks = [Task(id="a", instruction="Write a short poem about the sea at night."),
             Task(id="b", instruction="Translate the sentence into French."),
             Task(id="c", instruction="Write a short poem about the sea at night!")]
    f = RougeNoveltyFilter.of(threshold=0.7, top_k=2, fields=["instruction"])
    f.apply(tasks)
    assert [t.kept for t in tasks] == [True, True, False]
    assert tasks[2].verdict.duplicate_of == "a" and tasks[2].verdict.reason == "rouge_l>0.70"
    assert tasks[2].scores["rouge_l_max"] == 1.0
    assert "most_similar" in tasks[1].meta  # top_k > 0: kept records carry their neighbours


def test_fields_input_is_compared_when_asked():
    from instructgen.records import Instance
    tasks = [Task(id="a", instruction="Summarize.", instances=[Instance("the cat sat on the mat today", "")]),
             Task(id="b", instruction="Shorten.", instances=[Instance("the cat sat on the mat today", "")])]
    RougeNoveltyFilter.of(threshold=0.7, top_k=0, fields=["input"]).apply(tasks)
    assert [t.kept for t in tasks] == [True, False]


def test_batch_kept_records_join_the_full_index_when_it_is_next_used():
    tasks = [Task(id="a", instruction="Write a short poem about the sea at night."),
             Task(id="b", instruction="Translate the sentence into French."),
             Task(id="c", instruction="Write a short poem about the sea at night!")]
    f = RougeNoveltyFilter.of(threshold=0.7, top_k=0)
    f.add_reference([("seed", "Tell me a joke.")])
    f.apply(tasks)
    assert [t.kept for t in tasks] == [True, True, False]
    assert len(f._index) == 1 and len(f._pending) == 2  # the batch built no full index for its kept records
    late = Task(id="d", instruction="Translate this sentence into French.")
    assert not f.decide(late) and late.verdict.duplicate_of == "b"  # online, against references + kept
    assert f._index.ids == ["seed", "a", "b"] and not f._pending
