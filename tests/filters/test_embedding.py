"""Embedding dedup: the blocked search is exact; the real all-MiniLM-L6-v2 finds paraphrases; the cache works."""

from __future__ import annotations

import numpy as np
import pytest

from instructgen.filters.embedding import EmbeddingDedupFilter, nearest_kept, resolve_model
from instructgen.models import ModelSpecError
from instructgen.records import Task


def brute_force(emb, threshold):
    kept, dup, best = [], [], []
    for i in range(len(emb)):
        ks = [j for j in range(i) if kept[j]]
        if not ks:
            kept.append(True), dup.append(-1), best.append(-1.0)
            continue
        sims = emb[ks] @ emb[i]
        j = int(np.argmax(sims))
        best.append(float(sims[j]))
        drop = sims[j] >= threshold
        kept.append(not drop), dup.append(ks[j] if drop else -1)
    return np.array(kept), np.array(dup), np.array(best, dtype=np.float32)


@pytest.mark.parametrize("block,chunk", [(1, 1), (7, 5), (64, 8192), (1000, 3)])
def test_blocked_search_equals_brute_force(block, chunk):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 16)).astype(np.float32)
    emb = np.concatenate([base, base[:25] + 0.05 * rng.normal(size=(25, 16)).astype(np.float32), base[:5]])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    want = brute_force(emb, 0.97)
    got = nearest_kept(emb, 0.97, block=block, chunk=chunk)
    assert (got[0] == want[0]).all() and (got[1] == want[1]).all()
    assert np.allclose(got[2], want[2], atol=1e-5)
    assert (~got[0]).sum() >= 5  # the exact copies at least


def test_ties_go_to_the_earliest_kept_record():
    e = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], dtype=np.float32)
    kept, dup, _ = nearest_kept(e, 0.99, block=2, chunk=1)
    assert kept.tolist() == [True, True, False, False] and dup.tolist() == [-1, -1, 0, 0]


def test_unknown_model_is_refused_before_any_work():
    with pytest.raises(ModelSpecError, match="nothing is downloaded"):
        resolve_model("no-such/embedding-model")


def test_real_minilm_drops_a_paraphrase_and_reuses_its_cache(tmp_path):
    texts = ["How do I bake a chocolate cake at home?", "Translate 'good morning' into Spanish.",
             "How can I bake a chocolate cake at home?", "List three prime numbers larger than ten."]
    tasks = [Task(id=f"t{i}", instruction=x) for i, x in enumerate(texts)]
    f = EmbeddingDedupFilter.of(threshold=0.9)
    f.prepare({"cache_dir": tmp_path})
    f.apply(tasks)
    assert [t.kept for t in tasks] == [True, True, False, True]
    assert tasks[2].verdict.duplicate_of == "t0" and tasks[2].scores["embedding_cos_max"] >= 0.9
    assert tasks[0].scores["embedding_cos_max"] == -1.0 and tasks[3].scores["embedding_cos_max"] < 0.9
    assert f.details["embeddings_encoded"] == 4
    cos = tasks[2].scores["embedding_cos_max"]
    again = EmbeddingDedupFilter.of(threshold=cos + 1e-3)  # another threshold: nothing encoded, no model loaded
    again.prepare({"cache_dir": tmp_path})
    tasks = [Task(id=f"t{i}", instruction=x) for i, x in enumerate(texts)]
    again.apply(tasks)
    assert again.details["embeddings_encoded"] == 0 and again._st is None
    assert all(t.kept for t in tasks)
