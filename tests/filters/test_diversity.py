"""Diversity (DEITA's greedy rule): the blocked search equals the plain loop; crafted embeddings give the
selection worked out by hand; the filter walks by score, fills the budget, says why; the real MiniLM run."""

from __future__ import annotations

import numpy as np
import pytest

from instructgen.filters.diversity import DiversityFilter, greedy_select
from instructgen.records import Instance, Task


def plain_loop(emb, threshold, limit):
    """DEITA's IterativeFilter with batch size 1, written out."""
    chosen, cos = [], []
    for i in range(len(emb)):
        if len(chosen) >= limit:
            break
        c = max((float(emb[j] @ emb[i]) for j in chosen), default=-1.0)
        cos.append(c)
        if not chosen or c <= threshold:
            chosen.append(i)
    return chosen, cos


@pytest.mark.parametrize("block", [1, 3, 16, 1000])
@pytest.mark.parametrize("limit", [None, 5, 40])
def test_blocked_equals_the_plain_loop(block, limit):
    rng = np.random.default_rng(1)
    base = rng.normal(size=(12, 8))
    emb = np.repeat(base, 5, axis=0) + 0.3 * rng.normal(size=(60, 8))  # clusters: many pairs above 0.9
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    sel, cos, _, reached = greedy_select(emb, 0.9, limit, block)
    chosen, ref_cos = plain_loop(emb, 0.9, limit or len(emb))
    assert np.nonzero(sel)[0].tolist() == chosen
    assert reached == len(ref_cos)
    np.testing.assert_allclose(cos[:reached], ref_cos, atol=1e-5)
    assert np.isnan(cos[reached:]).all()


def unit(deg: float) -> list[float]:
    return [np.cos(np.radians(deg)), np.sin(np.radians(deg))]


# cos(10 deg) = 0.985, cos(20) = 0.940, cos(30) = 0.866, cos(90) = 0
ANGLES = {"a": 0, "b": 10, "c": 30, "d": 90, "e": 95, "f": 60}
SCORES = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6, "e": 0.5, "f": None}  # f has no score: walked last


def crafted() -> tuple[list[Task], dict[str, list[float]]]:
    tasks = []
    for k in "fedcba":  # input order differs from the walk order
        t = Task(k, f"task {k}", [Instance("", "x")])
        if SCORES[k] is not None:
            t.scores["ifd"] = SCORES[k]
        tasks.append(t)
    return tasks, {f"task {k}": unit(a) for k, a in ANGLES.items()}


def run(tasks, vectors, **kw):
    f = DiversityFilter.of(**kw)
    f.embedder.embed = lambda texts: np.array([vectors[x] for x in texts], dtype=np.float32)  # crafted vectors
    return f, {t.id: t for t in f.apply(tasks)}


def test_crafted_embeddings_select_by_hand():
    # walk a, b, c, d, e, f: b is 10 deg from a (cos 0.985 > 0.9): out; c is 30 deg from a (0.866): in;
    # d: in (cos 0.5 to c); e is 5 deg from d: out; f (60 deg) is 30 deg from c and d: in
    f, got = run(*crafted(), threshold=0.9)
    assert sorted(k for k, t in got.items() if t.kept) == ["a", "c", "d", "f"]
    assert got["b"].verdict.reason == "diversity_cos>0.90" and got["b"].verdict.duplicate_of == "a"
    assert got["e"].verdict.duplicate_of == "d"
    assert got["a"].scores["diversity_cos_max"] == -1.0
    assert got["b"].scores["diversity_cos_max"] == pytest.approx(np.cos(np.radians(10)), abs=1e-6)
    assert [got[k].meta["rank"]["diversity"] for k in "abcdef"] == [1, 2, 3, 4, 5, 6]
    assert f.details["unscored"] == 1 and f.details["selected"] == 4


def test_budget_stops_the_walk():
    f, got = run(*crafted(), threshold=0.9, keep_top=2)
    assert sorted(k for k, t in got.items() if t.kept) == ["a", "c"]
    assert {got[k].verdict.reason for k in "def"} == {"over_budget_2:diversity"}
    assert "diversity_cos_max" not in got["d"].scores  # never reached: nothing computed
    assert f.details["walked"] == 3


def test_lowest_first_and_a_product_of_scores():
    tasks, vec = crafted()
    for t in tasks:
        t.scores["q"] = 1.0
    # lowest first: e; d (5 deg from e: out); c; b (20 deg from c: out); a (30 deg from c: in); f unscored,
    # last (30 deg from c: in)
    _, got = run(tasks, vec, threshold=0.9, score="ifd*q", higher_is_better=False)
    assert sorted(k for k, t in got.items() if t.kept) == ["a", "c", "e", "f"]
    assert got["b"].verdict.duplicate_of == "c" and got["d"].verdict.duplicate_of == "e"


def test_bad_options_fail_at_build_time():
    with pytest.raises(ValueError, match="threshold"):
        DiversityFilter.of(threshold=2)
    with pytest.raises(ValueError, match="score"):
        DiversityFilter.of(score="ifd*")


def test_reads_the_embedding_filters_cache_and_loads_no_model(tmp_path):
    from instructgen.filters.cache import VectorCache
    from instructgen.filters.embedding import EmbeddingDedupFilter
    tasks, vectors = crafted()
    dedup = EmbeddingDedupFilter.of()  # what an earlier embedding step leaves in the cache folder
    dedup.prepare({"cache_dir": tmp_path})
    texts = list(vectors)
    dedup.cache.add([VectorCache.key(x) for x in texts], np.array([vectors[x] for x in texts], dtype=np.float32))
    f = DiversityFilter.of(threshold=0.9, fields=["instruction"])
    f.prepare({"cache_dir": tmp_path})
    got = {t.id: t for t in f.apply(tasks)}
    assert sorted(k for k, t in got.items() if t.kept) == ["a", "c", "d", "f"]
    assert f.details["embeddings_cached"] == 6 and f.embedder._st is None
