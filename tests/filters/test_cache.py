import numpy as np

from instructgen.filters import cache as cache_mod
from instructgen.filters.cache import VectorCache


def test_vectors_round_trip_by_text_hash_in_chunks(tmp_path):
    c = VectorCache(tmp_path, "kind", {"p": 1})
    keys = [VectorCache.key(t) for t in ["a", "b", "c"]]
    c.add(keys[:2], np.array([[1, 2], [3, 4]], dtype=np.float32))
    c.add(keys[2:], np.array([[5, 6]], dtype=np.float32))
    fresh = VectorCache(tmp_path, "kind", {"p": 1})
    vec, found = fresh.lookup([keys[2], VectorCache.key("zz"), keys[0]], 2, np.float32)
    assert found.tolist() == [True, False, True] and vec[0].tolist() == [5, 6] and vec[2].tolist() == [1, 2]
    assert len(VectorCache(tmp_path, "kind", {"p": 2})) == 0  # other params: another folder
    ro = VectorCache(tmp_path / "none", "kind", {}, read_only=True)
    ro.add(keys, np.zeros((3, 2)))
    assert not (tmp_path / "none").exists()


def test_many_chunks_are_merged(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "MAX_CHUNKS", 3)
    c = VectorCache(tmp_path, "k", {})
    for i in range(5):
        c.add([VectorCache.key(str(i))], np.full((1, 3), i, dtype=np.uint32))
    merged = VectorCache(tmp_path, "k", {})
    assert len(merged) == 5 and len(list(merged.dir.glob("chunk-*.npz"))) == 1
    vec, found = VectorCache(tmp_path, "k", {}).lookup([VectorCache.key("4")], 3, np.uint32)
    assert found.all() and vec[0].tolist() == [4, 4, 4]
