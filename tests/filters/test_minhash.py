"""MinHash LSH: datasketch's exact signatures, bands chosen for recall, confirmed drops, the first copy kept."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from scipy.integrate import quad
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from instructgen.filters.minhash import (MinHasher, MinHashFilter, candidate_probability, choose_bands, dedup,
                                         words)
from instructgen.records import Instance, Task


def t0_prompts(shared_data, n):
    with gzip.open(shared_data / "t0_templates.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["prompt"] for _, line in zip(range(n), f)]


def test_signatures_equal_datasketch_minhash_of_the_same_shingles(shared_data):
    texts = t0_prompts(shared_data, 300) + ["", "two words", "exactly five words in here", "ü ñ 漢字 mixed"]
    h = MinHasher(num_perm=64, seed=3, ngram=5)
    hashes, counts = h.shingle_hashes(texts)
    sig = h.signatures(texts)[0]
    pos = np.cumsum(counts) - counts
    for i in range(len(texts)):
        m = MinHash(num_perm=64, seed=3, hashfunc=lambda x: x)
        m.update_batch([int(x) for x in hashes[pos[i]:pos[i] + counts[i]]])
        assert (m.hashvalues == sig[i]).all(), i
    assert counts[-4] == 0 and counts[-3] == 1 and counts[-2] == 1  # short texts are one shingle


def test_shingles_are_word_ngrams_independent_of_case_and_punctuation():
    h = MinHasher(num_perm=32, ngram=3)
    a, ca = h.shingle_hashes(["The cat, sat on the MAT."])
    b, cb = h.shingle_hashes(["the cat sat on the mat"])
    assert list(ca) == [4] and (a == b).all()
    c, _ = h.shingle_hashes(["the mat sat on the cat"])
    assert len(set(a.tolist()) & set(c.tolist())) == 1  # only "sat on the" is shared: order matters
    assert words("Don't stop") == ["don", "t", "stop"]


def test_bands_reach_the_recall_target_where_datasketch_defaults_do_not():
    for t in (0.5, 0.7, 0.8, 0.9):
        b, r = choose_bands(t, 128, 0.99)
        assert b * r <= 128 and candidate_probability(t, b, r) >= 0.99
        db, dr = _optimal_param(t, 128, 0.5, 0.5)
        assert candidate_probability(t, db, dr) < 0.75  # the library default loses >25% of pairs at t
        # among the choices that reach the target, ours has the least false-candidate mass below t
        area = lambda bb, rr: quad(lambda s: candidate_probability(s, bb, rr), 0, t)[0]
        feasible = [(bb, rr) for rr in range(1, 33) for bb in range(1, 128 // rr + 1)
                    if candidate_probability(t, bb, rr) >= 0.99]
        assert area(b, r) <= min(area(*br) for br in feasible) + 1e-3


def test_dedup_keeps_the_first_copy_and_confirms_every_drop():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**32, size=(4, 100), dtype=np.uint64).astype(np.uint32)
    sig = np.stack([base[0], base[1], base[0], base[0], base[1], base[2]])
    sig[3, :40] = base[3, :40]  # 60% equal to row 0: a candidate (shares bands) but below 0.7
    kept, dup, best = dedup(sig, np.ones(6, bool), 0.7, bands=20, rows=5)
    assert kept.tolist() == [True, True, False, True, False, True]
    assert dup.tolist() == [-1, -1, 0, -1, 1, -1]
    assert best[2] == 1.0 and 0.55 < best[3] < 0.65 and best[5] == 0.0


def test_duplicate_of_is_the_most_similar_kept_record():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**32, size=100, dtype=np.uint64).astype(np.uint32)
    b = a.copy()
    b[:25] = rng.integers(0, 2**32, size=25, dtype=np.uint64).astype(np.uint32)  # 75% like a
    c = a.copy()
    c[:10] = b[:10]  # 100% like... b on 10, a on 90: 0.9 vs a, 0.85 vs b
    sig = np.stack([b, a, c])
    kept, dup, best = dedup(sig, np.ones(3, bool), 0.7, bands=25, rows=4)
    assert kept.tolist() == [True, False, False]
    assert dup[1] == 0 and dup[2] == 0  # a (row 1) was dropped, so c names row 0, the kept one


def records(*texts):
    return [Task(id=f"r{i}", instruction=t) for i, t in enumerate(texts)]


def test_filter_on_records_with_reason_score_and_duplicate_of(tmp_path):
    passage = ("The Amazon rainforest covers much of the Amazon basin of South America and is home to an "
               "enormous number of species of plants and animals that live nowhere else on the planet")
    tasks = records(passage + ". What covers the basin?", "Write a haiku about autumn leaves falling slowly.",
                    passage + ". What covers the basin of it?", "", passage[::-1])
    f = MinHashFilter.of(threshold=0.7, ngram=5)
    f.prepare({"cache_dir": tmp_path})
    f.apply(tasks)
    assert [t.kept for t in tasks] == [True, True, False, True, True]
    assert tasks[2].verdict.duplicate_of == "r0" and tasks[2].verdict.reason == "minhash_jaccard>=0.70"
    assert tasks[2].scores["minhash_jaccard"] >= 0.7 and "minhash_jaccard" not in tasks[3].scores
    assert f.details["signatures_computed"] == 5
    again = MinHashFilter.of(threshold=0.9, ngram=5)  # a new threshold: the cached signatures are reused
    again.prepare({"cache_dir": tmp_path})
    again.apply(records(*[t.instruction for t in tasks]))
    assert again.details["signatures_cached"] == 5 and again.details["signatures_computed"] == 0


def test_filter_reads_the_configured_fields():
    tasks = [Task(id="a", instruction="Summarize the text.", instances=[Instance("one two three four five six", "x")]),
             Task(id="b", instruction="Summarize the text.", instances=[Instance("seven eight nine ten eleven", "x")])]
    MinHashFilter.of(threshold=0.7, fields=["instruction"]).apply(tasks)
    assert [t.kept for t in tasks] == [True, False]
    for t in tasks:
        t.verdict.kept = True
    MinHashFilter.of(threshold=0.7, fields=["instruction", "input"]).apply(tasks)
    assert [t.kept for t in tasks] == [True, True]


def test_borderline_estimates_are_decided_by_exact_jaccard():
    # 10 shared words of 12 each: exact Jaccard of the 3-gram sets is 8/12 = 0.667; the estimate wobbles
    base = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    a, b = " ".join(base + ["lambda", "mu"]), " ".join(base + ["nu", "xi"])
    exact_used = 0
    for seed in range(1, 40):
        sig = MinHasher(num_perm=128, seed=seed, ngram=3).signatures([a, b])[0]
        est = np.count_nonzero(sig[0] == sig[1]) / 128
        for threshold in (0.6, 0.7):
            tasks = records(a, b)
            f = MinHashFilter.of(threshold=threshold, ngram=3, seed=seed)
            f.apply(tasks)
            margin = 3 * (threshold * (1 - threshold) / 128) ** 0.5
            if abs(est - threshold) <= margin:  # borderline: the exact value decides and is stored
                exact_used += 1
                assert tasks[1].scores["minhash_jaccard"] == pytest.approx(8 / 12)
                assert tasks[1].kept == (8 / 12 < threshold) and f.details["exact_checks"] == 1
            else:
                assert tasks[1].scores["minhash_jaccard"] == est and tasks[1].kept == (est < threshold)
    assert exact_used > 20


def test_parallel_hashing_gives_the_same_signatures():
    # in a fresh interpreter: this test process may hold torch, and then hashing never forks
    code = """
import numpy as np
from instructgen.filters import minhash
assert minhash.fork_is_safe()
minhash.PARALLEL_MIN_TEXTS = 10
texts = [f"record {i} says {' '.join(['word'] * (i % 7))} and more text {i % 5}" for i in range(40)] + [""]
h = minhash.MinHasher(num_perm=32)
for x, y in zip(h.signatures(texts, workers=1), h.signatures(texts, workers=3)):
    assert x.shape == y.shape and (x == y).all()
print("ok")
"""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


@pytest.mark.parametrize("kw", [dict(threshold=0), dict(bands=3), dict(bands=100, rows=2), dict(ngram=0),
                                dict(workers=-1)])
def test_bad_parameters_are_refused(kw):
    with pytest.raises(ValueError):
        MinHashFilter.of(**kw)


def dict_buckets_dedup(sig, valid, threshold, bands, rows):
    """dedup() as it was first written: buckets as a dict of Python lists of kept rows (the reference)."""
    from instructgen.filters.minhash import band_keys
    n, p = sig.shape
    kept, dup, best = np.ones(n, dtype=bool), np.full(n, -1, dtype=np.int64), np.zeros(n)
    keys = band_keys(sig, bands, rows) ^ (np.arange(1, bands + 1, dtype=np.uint64)
                                          * np.uint64(0xD6E8FEB86659FD93))[None, :]
    counts = [dict(zip(*np.unique(keys[valid, k], return_counts=True))) for k in range(bands)]
    buckets: dict = {}
    for i in np.nonzero(valid)[0].tolist():
        ks = [int(keys[i, k]) for k in range(bands) if counts[k][keys[i, k]] > 1]
        cands = sorted({j for k in ks for j in buckets.get(k, [])})
        if cands:
            est = np.count_nonzero(sig[cands] == sig[i], axis=1) / p
            j = int(np.argmax(est))
            best[i] = est[j]
            if est[j] >= threshold:
                kept[i], dup[i] = False, cands[j]
                continue
        for k in ks:
            buckets.setdefault(k, []).append(i)
    return kept, dup, best


@pytest.mark.parametrize("key_block", [3, 1 << 16])
def test_linked_list_buckets_equal_the_dict_of_lists(monkeypatch, key_block):
    from instructgen.filters import minhash
    monkeypatch.setattr(minhash, "KEY_BLOCK", key_block)  # band keys in blocks: the same keys
    rng = np.random.default_rng(4)
    base = rng.integers(0, 2**32, size=(30, 64), dtype=np.uint64).astype(np.uint32)
    sig = base[rng.integers(0, 30, size=400)]  # clusters of copies, each copy with 0-40% of its values redrawn
    redraw = rng.random(sig.shape) < rng.random(400)[:, None] * 0.4
    sig[redraw] = rng.integers(0, 2**32, size=int(redraw.sum()), dtype=np.uint64).astype(np.uint32)
    valid = rng.random(400) > 0.05
    for threshold, bands, r in [(0.7, 16, 4), (0.5, 8, 8), (0.9, 32, 2)]:
        got, want = dedup(sig, valid, threshold, bands, r), dict_buckets_dedup(sig, valid, threshold, bands, r)
        assert all(np.array_equal(g, w) for g, w in zip(got, want))
        assert 20 < (~got[0]).sum() < 370  # many drops and many keeps: the comparison means something
