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


WRITER = """
import sys
import numpy as np
from instructgen.filters import cache as cache_mod
from instructgen.filters.cache import VectorCache
cache_mod.MAX_CHUNKS = 4  # a merge every few chunks: merges race with the other process's reads and writes
root, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    c = VectorCache(root, "k", {})
    held = len(c)  # loads every chunk listed (and merges beyond MAX_CHUNKS)
    key = VectorCache.key(f"{who}-{i}")
    c.add([key], np.array([[i, ord(who), held]], dtype=np.int64))
    vec, found = VectorCache(root, "k", {}).lookup([VectorCache.key(f"{who}-{j}") for j in range(i + 1)], 3,
                                                   np.int64)
    assert found.all(), (who, i, np.nonzero(~found)[0].tolist())  # none of this writer's chunks was lost
print("ok")
"""


def test_two_processes_add_and_merge_chunks_in_one_folder_at_once(tmp_path):
    import subprocess
    import sys
    n = 120
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), who, str(n)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for who in "ab"]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.strip() == "ok", err
        assert "warning" not in err  # no chunk was ever seen damaged or half-written
    c = VectorCache(tmp_path, "k", {})
    keys = [VectorCache.key(f"{who}-{i}") for who in "ab" for i in range(n)]
    vec, found = c.lookup(keys, 3, np.int64)
    assert found.all() and vec[:, 0].tolist() == list(range(n)) * 2
    assert vec[:, 1].tolist() == [ord("a")] * n + [ord("b")] * n
    assert vec[:n, 2].max() > n // 2 and vec[n:, 2].max() > n // 2  # each saw many of the other's entries too
    assert len(list(c.dir.glob("chunk-*.npz"))) < n // 2  # merged along the way, not 2n chunks
    assert not list(c.dir.glob("*.tmp"))


def test_a_chunk_merged_away_between_listing_and_loading_is_found_in_the_merged_one(tmp_path, monkeypatch, capsys):
    c = VectorCache(tmp_path, "k", {})
    for i in range(3):
        c.add([VectorCache.key(str(i))], np.full((1, 2), i, dtype=np.int64))
    stale = VectorCache(tmp_path, "k", {})._files()
    monkeypatch.setattr(cache_mod, "MAX_CHUNKS", 1)
    assert len(VectorCache(tmp_path, "k", {})) == 3  # another process merges the three into one meanwhile
    assert not any(f.exists() for f in stale)
    reader = VectorCache(tmp_path, "k", {}, read_only=True)
    listings = iter([stale])  # the reader listed before the merge, then lists again
    monkeypatch.setattr(reader, "_files", lambda: next(listings, None) or VectorCache._files(reader))
    vec, found = reader.lookup([VectorCache.key(str(i)) for i in range(3)], 2, np.int64)
    assert found.all() and vec[:, 0].tolist() == [0, 1, 2]
    assert "warning" not in capsys.readouterr().err
