"""MinHash LSH near-duplicates (Broder 1997, "On the resemblance and containment of documents"; banding as in
Leskovec, Rajaraman & Ullman, "Mining of Massive Datasets", ch. 3), with datasketch's permutations.

- Shingles are word n-grams of the lower-cased text (a text shorter than n words is one shingle). Each word is
  hashed once (blake2b, stable across runs, so signatures can be cached); an n-gram's hash combines its words'.
- Signatures are exactly `datasketch.MinHash(num_perm, seed, hashfunc=identity).update_batch(shingle_hashes)`
  (its default affine32 scheme: murmur3 fmix32, then a*h + b mod 2^32, min), computed for many records at once
  with numpy instead of one Python call per record; `tests/filters/test_minhash.py` checks equality.
- Bands and rows are chosen from the S-curve 1 - (1 - s^r)^b: the fewest false candidates below the threshold
  among the (b, r) whose candidate probability at the threshold is at least `recall_at_threshold` (0.99).
  datasketch's default `_optimal_param` weighs false positives and negatives equally and keeps only 50-70% of the
  pairs right at the threshold.
- Every candidate pair is confirmed by its estimated Jaccard (all num_perm values) before a drop.
- Records are taken in input order: one is dropped when an earlier *kept* record's estimated Jaccard reaches the
  threshold; the first copy is kept, and `duplicate_of` names the most similar kept one (ties: the earliest).

(Over 400 lines on purpose: the vectorised signatures and the bucket walk are checked against datasketch and
against the dict-of-lists walk in tests/filters/test_minhash.py; they read best next to the filter using them.)
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..records import Task
from .base import Decision, GlobalStep, Rows, SelectParams, doc, joined_text
from .cache import VectorCache

_WORD = re.compile(r"\w+")
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
# datasketch.minhash._FMIX_CONSTANTS[32]: the murmur3 32-bit finalizer
_FMIX32 = (16, 0x85EBCA6B, 13, 0xC2B2AE35, 16)
_EMPTY = np.uint32(0xFFFFFFFF)  # datasketch's initial hash value: a record with no shingle keeps it everywhere
CHUNK_SHINGLES = 1 << 14  # shingles per numpy block: 16k x 128 permutations x 4 bytes = 8 MiB


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def fmix32(h: np.ndarray) -> np.ndarray:
    """murmur3's finalizer on uint32 values (what datasketch applies before its permutations)."""
    s1, m1, s2, m2, s3 = _FMIX32
    h = h ^ (h >> np.uint32(s1))
    h = h * np.uint32(m1)
    h = h ^ (h >> np.uint32(s2))
    h = h * np.uint32(m2)
    return h ^ (h >> np.uint32(s3))


def candidate_probability(s, bands: int, rows: int):
    """The LSH S-curve: probability that a pair of Jaccard s shares at least one band."""
    return 1.0 - (1.0 - np.asarray(s, dtype=float) ** rows) ** bands


def choose_bands(threshold: float, num_perm: int, recall_at_threshold: float = 0.99) -> tuple[int, int]:
    """(bands, rows) with b*r <= num_perm whose S-curve reaches `recall_at_threshold` at the threshold with the
    smallest area below it (the fewest false candidates to confirm). Falls back to the highest-recall pair."""
    grid = np.linspace(0.0, threshold, 201)
    best, best_fp = None, math.inf
    for r in range(1, num_perm + 1):
        p = threshold ** r
        if p >= 1.0:
            b = 1
        elif p <= 0.0:
            continue
        else:
            q = math.log1p(-p)
            if q == 0.0:
                continue
            x = math.log1p(-recall_at_threshold) / q
            if not math.isfinite(x) or x > num_perm:  # p so small that no band count within num_perm reaches it
                continue
            b = math.ceil(x)
        if b * r > num_perm:
            continue
        fp = float(np.trapezoid(candidate_probability(grid, b, r), grid))
        if fp < best_fp:
            best, best_fp = (b, r), fp
    if best is None:  # the target is out of reach with this many permutations: maximise recall at threshold
        best = max(((num_perm // r, r) for r in range(1, num_perm + 1)),
                   key=lambda br: float(candidate_probability(threshold, *br)))
    return best


class _TokenHashes(dict):
    """word -> stable 64-bit hash (blake2b), computed once per distinct word."""

    def __missing__(self, tok: str) -> int:
        h = self[tok] = int.from_bytes(hashlib.blake2b(tok.encode("utf-8"), digest_size=8).digest(), "little")
        return h


class MinHasher:
    """Word n-gram shingling and MinHash signatures, vectorised across records."""

    def __init__(self, num_perm: int = 128, seed: int = 1, ngram: int = 5):
        from datasketch import MinHash
        m = MinHash(num_perm=num_perm, seed=seed)
        if m.scheme != "affine32":  # the arithmetic below is datasketch's affine32 scheme
            raise RuntimeError(f"datasketch MinHash uses scheme {m.scheme!r}; this code expects 'affine32'")
        self.a, self.b = (np.asarray(x, dtype=np.uint32) for x in m.permutations)
        self.num_perm, self.seed, self.ngram = num_perm, seed, ngram
        rng = np.random.default_rng(0x5EED)
        self._mix = rng.integers(1, 1 << 63, size=max(ngram, 1), dtype=np.uint64) | np.uint64(1)
        self._tok = _TokenHashes()

    def _combine(self, cols: list[np.ndarray]) -> np.ndarray:
        """Hash of n word hashes (order-sensitive: a different odd multiplier per position, then a 64-bit
        finalizer), folded to 32 bits."""
        with np.errstate(over="ignore"):
            h = cols[0] * self._mix[0]
            tmp = np.empty_like(h)
            for j in range(1, len(cols)):
                np.multiply(cols[j], self._mix[j], out=tmp)
                h += tmp
            np.right_shift(h, np.uint64(33), out=tmp)
            h ^= tmp
            h *= np.uint64(0xFF51AFD7ED558CCD)
            np.right_shift(h, np.uint64(33), out=tmp)
            h ^= tmp
            h >>= np.uint64(32)
        return h.astype(np.uint32)

    def shingle_hashes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(hashes, counts): every text's shingle hashes (uint32) concatenated, and how many each text has."""
        n = self.ngram
        th = self._tok.__getitem__
        lengths, flat = [], []
        for text in texts:
            toks = words(text)
            lengths.append(len(toks))
            flat.extend(map(th, toks))
        lengths = np.array(lengths, dtype=np.int64)
        tok = np.array(flat, dtype=np.uint64)
        ends = np.cumsum(lengths)
        counts = np.where(lengths >= n, lengths - n + 1, np.minimum(lengths, 1))
        if len(tok) >= n:  # every full n-gram, then the ones crossing a record boundary are dropped
            m = len(tok) - n + 1
            grams = self._combine([tok[j:j + m] for j in range(n)])
            starts = ends - lengths
            # an n-gram starting at one of a text's last n-1 positions runs into the next text
            crossing = ends[:, None] - np.arange(1, n)[None, :]
            crossing = crossing[(crossing >= starts[:, None]) & (crossing < m)]
            valid = np.ones(m, dtype=bool)
            valid[crossing] = False
            full = grams[valid]
        else:
            full = np.empty(0, dtype=np.uint32)
        short = np.nonzero((lengths > 0) & (lengths < n))[0]
        if not len(short):
            return full, counts
        # texts shorter than n words: one shingle each, the combined hash of their words; merged in text order
        starts = ends - lengths
        short_h = np.array([self._combine([tok[starts[i] + j:starts[i] + j + 1] for j in range(lengths[i])])[0]
                            for i in short.tolist()], dtype=np.uint32)
        is_short = np.zeros(len(texts), dtype=bool)
        is_short[short] = True
        from_short = np.repeat(is_short, counts)
        out = np.empty(int(counts.sum()), dtype=np.uint32)
        out[from_short] = short_h
        out[~from_short] = full
        return out, counts

    def signatures_from_hashes(self, hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """MinHash signatures (n_texts, num_perm) of the given shingle hashes, datasketch's arithmetic."""
        n_texts = len(counts)
        sig = np.full((n_texts, self.num_perm), _EMPTY, dtype=np.uint32)
        nz = np.nonzero(counts)[0]
        if not len(nz):
            return sig
        hv = fmix32(hashes.astype(np.uint32))
        a, b = self.a[:, None], self.b[:, None]
        bounds = np.concatenate([[0], np.cumsum(counts[nz])])
        # permutations x shingles, so the min runs along contiguous memory; blocks stay in the CPU cache
        buf = np.empty((self.num_perm, CHUNK_SHINGLES + int(counts.max())), dtype=np.uint32)
        out = np.empty((self.num_perm, len(nz)), dtype=np.uint32)
        i = 0
        while i < len(nz):  # blocks of whole records, about CHUNK_SHINGLES shingles each
            j = max(int(np.searchsorted(bounds, bounds[i] + CHUNK_SHINGLES, side="right")) - 1, i + 1)
            lo, hi = bounds[i], bounds[j]
            blk = buf[:, : hi - lo]
            np.multiply(a, hv[None, lo:hi], out=blk)  # uint32 arithmetic wraps: mod 2^32, as in datasketch
            np.add(blk, b, out=blk)
            out[:, i:j] = np.minimum.reduceat(blk, bounds[i:j] - lo, axis=1)
            i = j
        sig[nz] = out.T
        return sig

    def signatures(self, texts: Sequence[str], workers: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(signatures, shingle hashes, counts) of the texts. With workers > 1 and many texts, the texts are
        split across forked processes (the tokenizer is Python-bound: the only way to use another core)."""
        if workers <= 1 or len(texts) < PARALLEL_MIN_TEXTS or not fork_is_safe():
            return _signatures_job(texts, self.num_perm, self.seed, self.ngram)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        global _FORK_TEXTS
        bounds = np.linspace(0, len(texts), workers + 1).astype(int).tolist()
        _FORK_TEXTS = texts  # the children see it through fork: nothing is pickled on the way in
        try:
            with ProcessPoolExecutor(workers - 1, mp_context=multiprocessing.get_context("fork")) as pool:
                futures = [pool.submit(_fork_job, a, b, self.num_perm, self.seed, self.ngram)
                           for a, b in zip(bounds[1:-1], bounds[2:])]
                results = [_signatures_job(texts[:bounds[1]], self.num_perm, self.seed, self.ngram)]
                results += [f.result() for f in futures]
        finally:
            _FORK_TEXTS = None
        return tuple(np.concatenate(x) for x in zip(*results))


PARALLEL_MIN_TEXTS = 20_000  # below this, starting processes costs more than it saves
_FORK_TEXTS: Sequence[str] | None = None


def fork_is_safe() -> bool:
    """fork() copies only the calling thread: fine for numpy and hashlib, not once torch has started its
    thread pools (or where there is no fork). Then everything runs in this process."""
    import multiprocessing
    return "fork" in multiprocessing.get_all_start_methods() and "torch" not in sys.modules


TEXTS_PER_BLOCK = 4096  # texts hashed together: their arrays stay in the CPU cache, not main memory


def _signatures_job(texts, num_perm: int, seed: int, ngram: int):
    h = MinHasher(num_perm, seed, ngram)
    parts = []
    for a in range(0, len(texts), TEXTS_PER_BLOCK):
        hashes, counts = h.shingle_hashes(texts[a:a + TEXTS_PER_BLOCK])
        parts.append((h.signatures_from_hashes(hashes, counts), hashes, counts))
    if not parts:
        hashes, counts = h.shingle_hashes([])
        return h.signatures_from_hashes(hashes, counts), hashes, counts
    return tuple(np.concatenate(x) for x in zip(*parts))


def _fork_job(a: int, b: int, num_perm: int, seed: int, ngram: int):
    return _signatures_job(_FORK_TEXTS[a:b], num_perm, seed, ngram)


def has_shingles(sig: np.ndarray) -> np.ndarray:
    """False where a signature is all _EMPTY (a text with no word), True elsewhere; in blocks of rows."""
    return np.concatenate([~(sig[a:a + KEY_BLOCK] == _EMPTY).all(axis=1) for a in range(0, len(sig), KEY_BLOCK)]
                          or [np.zeros(0, dtype=bool)])


KEY_BLOCK = 1 << 16  # records hashed into band keys at once: the uint64 temporaries stay ~bands*rows*0.5 MiB


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (record, band): a hash of the band's `rows` signature values."""
    n = sig.shape[0]
    mult = (np.arange(1, rows + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    out = np.empty((n, bands), dtype=np.uint64)
    for a in range(0, n, KEY_BLOCK):  # in blocks: a (n, bands, rows) uint64 copy is 4.5 GiB at 880K records
        block = sig[a:a + KEY_BLOCK, : bands * rows].reshape(-1, bands, rows).astype(np.uint64)
        with np.errstate(over="ignore"):
            h = (block * mult).sum(axis=2, dtype=np.uint64)
            h ^= h >> np.uint64(31)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(27)
        out[a:a + KEY_BLOCK] = h
    return out


def dedup(sig: np.ndarray, valid: np.ndarray, threshold: float, bands: int, rows: int, exact=None,
          margin: float = 0.0):
    """Greedy near-duplicate removal in row order. Returns (kept mask, duplicate_of row or -1, best Jaccard
    against an earlier kept LSH candidate, 0 where none). Rows not `valid` (no shingle) are kept.

    Each candidate is confirmed by its estimated Jaccard; with `exact(i, rows) -> jaccards`, an estimate within
    `margin` of the threshold is replaced by the exact value, so estimation noise decides no borderline pair.

    The buckets (records sharing a band key) hold only kept records, as linked lists in int32 arrays (a bucket's
    last kept entry, each entry's previous one), not a dict of Python lists: ~12 bytes per shared (record, band)
    instead of ~100, the difference between fitting 880K records in 2 GiB or not."""
    n, p = sig.shape
    kept = np.ones(n, dtype=bool)
    dup = np.full(n, -1, dtype=np.int64)
    best = np.zeros(n)
    if n == 0:
        return kept, dup, best
    keys = band_keys(sig, bands, rows)
    with np.errstate(over="ignore"):  # one key space for all bands: salt each band's keys
        keys ^= (np.arange(1, bands + 1, dtype=np.uint64) * np.uint64(0xD6E8FEB86659FD93))[None, :]
    shared = np.zeros((n, bands), dtype=bool)
    for k in range(bands):  # a bucket holding a single record can never yield a candidate: skip those
        col = keys[valid, k]
        _, inv, cnt = np.unique(col, return_inverse=True, return_counts=True)
        shared[valid, k] = cnt[inv] > 1
    rows_i, bands_k = np.nonzero(shared)  # row-major: each active row's shared bands, in order
    flat = keys[rows_i, bands_k]
    del shared, keys, bands_k
    # one bucket per distinct salted key, over all bands (what a dict keyed by the key would hold)
    _, bucket = np.unique(flat, return_inverse=True)
    del flat
    n_buckets = int(bucket.max()) + 1 if len(bucket) else 0
    active, per_row = np.unique(rows_i, return_counts=True)
    from array import array
    bucket = array("i", bucket.astype(np.int32).tobytes())  # int32 arrays: Python ints on indexing, 4 bytes each
    pair_row = array("i", rows_i.astype(np.int32).tobytes())
    del rows_i
    head = array("i", [-1]) * n_buckets  # bucket -> its last kept entry (a pair index), -1 when none
    prev = array("i", [-1]) * len(pair_row)  # pair -> the entry kept before it in its bucket
    pos = 0
    for i, cnt in zip(active.tolist(), per_row.tolist()):
        pairs = range(pos, pos + cnt)
        pos += cnt
        cands: set[int] = set()
        for q in pairs:
            e = head[bucket[q]]
            while e >= 0:
                cands.add(pair_row[e])
                e = prev[e]
        if cands:
            c = np.fromiter(sorted(cands), dtype=np.int64, count=len(cands))
            est = np.count_nonzero(sig[c] == sig[i], axis=1) / p
            if exact is not None:
                near = np.abs(est - threshold) <= margin
                if near.any():
                    est[near] = exact(i, c[near])
            j = int(np.argmax(est))  # the first maximum: ties go to the earliest kept record
            best[i] = est[j]
            if est[j] >= threshold:
                kept[i], dup[i] = False, c[j]
                continue
        for q in pairs:  # kept: it joins each of its buckets
            b = bucket[q]
            prev[q], head[b] = head[b], q
    return kept, dup, best


class _ExactJaccard:
    """Exact Jaccard of shingle sets for borderline pairs, each text hashed again once when first needed (the
    signatures may come from the cache or another process, so their shingles are not at hand)."""

    def __init__(self, texts: Sequence[str], hasher: MinHasher):
        self.texts, self.hasher, self.sets, self.pairs = texts, hasher, {}, 0

    def _set(self, i: int) -> np.ndarray:
        s = self.sets.get(i)
        if s is None:
            s = self.sets[i] = np.unique(self.hasher.shingle_hashes([self.texts[i]])[0])
        return s

    def __call__(self, i: int, rows: np.ndarray) -> np.ndarray:
        a = self._set(i)
        out = np.empty(len(rows))
        for k, j in enumerate(rows.tolist()):
            b = self._set(j)
            inter = np.intersect1d(a, b, assume_unique=True).size
            out[k] = inter / (len(a) + len(b) - inter)
        self.pairs += len(rows)
        return out


@dataclass
class MinHashParams(SelectParams):
    threshold: float = doc("drop when the estimated Jaccard similarity of the word n-gram sets with an earlier "
                           "kept record is at least this", default=0.7)
    ngram: int = doc("words per shingle (5 for documents; shorter texts are one shingle)", default=5)
    num_perm: int = doc("MinHash permutations (estimate's std. error ~ sqrt(J(1-J)/num_perm))", default=128)
    seed: int = doc("datasketch permutation seed", default=1)
    recall_at_threshold: float = doc("bands/rows are chosen so a pair exactly at the threshold becomes a "
                                     "candidate with at least this probability", default=0.99)
    bands: int = doc("LSH bands; 0 = chosen from the S-curve (then rows must be 0 too)", default=0)
    rows: int = doc("signature values per band; 0 = chosen with bands (bands * rows <= num_perm)", default=0)
    exact_near_threshold: bool = doc("a candidate whose estimate is within 3 standard errors of the threshold is "
                                     "decided by its exact Jaccard (its two shingle sets), not by estimation noise",
                                     default=True)
    workers: int = doc("processes hashing at once on large inputs (>= 20k texts), forked, so only while torch is "
                       "not loaded in this process; 0 = one per CPU, up to 4. Results do not depend on it. 1 by "
                       "default: on a shared 2-core machine a second process was slower, not faster", default=1)
    fields: list[str] = doc("fields joined into the compared text", default_factory=lambda: ["instruction", "input"])


class MinHashFilter(GlobalStep):
    """Near-duplicate removal with MinHash LSH (datasketch permutations, vectorised): a record is dropped when
    an earlier kept one's estimated Jaccard similarity reaches `threshold`. Stores `minhash_jaccard` (the best
    estimate against an earlier kept LSH candidate, 0 when none); signatures are cached by text hash.
    `keep_top` keeps the most novel (lowest minhash_jaccard). Its features: the signatures (num_perm uint32, 512
    bytes a record at 128) and, with exact_near_threshold, the compared text (rehashed for borderline pairs)."""

    name = "minhash"
    Params = MinHashParams
    per_field = False
    score_key = "minhash_jaccard"
    higher_is_better = False

    def setup(self) -> None:
        p = self.p
        if not 0 < p.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {p.threshold}")
        if p.ngram < 1 or p.num_perm < 1:
            raise ValueError("ngram and num_perm must be at least 1")
        if not 0 < p.recall_at_threshold < 1:
            raise ValueError(f"recall_at_threshold must be in (0, 1), got {p.recall_at_threshold}")
        if (p.bands > 0) != (p.rows > 0) or p.bands < 0 or p.rows < 0 or p.bands * p.rows > p.num_perm:
            raise ValueError(f"bands and rows must both be 0 (automatic) or both > 0 with bands*rows <= num_perm "
                             f"({p.num_perm}); got {p.bands} x {p.rows}")
        if p.workers < 0:
            raise ValueError(f"workers must be >= 0, got {p.workers}")
        self.threshold, self.ngram, self.num_perm, self.seed = p.threshold, p.ngram, p.num_perm, p.seed
        self.bands, self.rows = (p.bands, p.rows) if p.bands else choose_bands(p.threshold, p.num_perm,
                                                                               p.recall_at_threshold)
        self.workers = p.workers or min(4, os.cpu_count() or 1)
        self.details.update(bands=self.bands, rows=self.rows, candidate_probability_at_threshold=round(float(
            candidate_probability(p.threshold, self.bands, self.rows)), 4))
        self.cache: VectorCache | None = None

    def prepare(self, ctx: dict) -> None:
        self.cache = VectorCache(ctx.get("cache_dir"), "minhash",
                                 {"num_perm": self.num_perm, "seed": self.seed, "ngram": self.ngram,
                                  "tokenizer": "lower \\w+ words, blake2b-64 per word", "scheme": "affine32"},
                                 read_only=ctx.get("read_only_cache", False))

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """Signatures of the texts, from the cache where held; new ones are computed and cached."""
        hasher = MinHasher(self.num_perm, self.seed, self.ngram)
        cache = self.cache if self.cache is not None else VectorCache(None, "minhash", {})
        keys = [VectorCache.key(t) for t in texts]
        sig, found = cache.lookup(keys, self.num_perm, np.uint32)
        missing = np.nonzero(~found)[0]
        if len(missing):
            new, _, _ = hasher.signatures([texts[i] for i in missing], workers=self.workers)
            sig[missing] = new
            cache.add([keys[i] for i in missing], new)
        self.details.update(signatures_cached=int(found.sum()), signatures_computed=int(len(missing)))
        return sig

    def features(self, tasks: list[Task]) -> dict:
        texts = [joined_text(t, self.fields) for t in tasks]
        out = {"signature": self.signatures(texts)}
        if self.p.exact_near_threshold:
            out["text"] = texts
        return out

    def decide_rows(self, rows: Rows) -> list[Decision]:
        sig = rows.feats["signature"]
        valid = has_shingles(sig)
        exact, margin = None, 0.0
        if self.p.exact_near_threshold:
            # shingles hashed again for the borderline rows only (features may come from other processes)
            exact = _ExactJaccard(rows.feats["text"], MinHasher(self.num_perm, self.seed, self.ngram))
            # 3 standard errors of the estimate at the threshold: outside, a wrong side has odds < 0.3%
            margin = 3.0 * math.sqrt(self.threshold * (1.0 - self.threshold) / self.num_perm)
        kept, dup, best = dedup(sig, valid, self.threshold, self.bands, self.rows, exact, margin)
        if exact is not None:
            self.details["exact_checks"] = exact.pairs
        rows.set_scores["minhash_jaccard"] = np.where(valid, best, np.nan)
        reason = f"minhash_jaccard>={self.threshold:.2f}"
        self.details["candidates_checked_records"] = int(np.count_nonzero(best))
        return [None if kept[i] or not valid[i] else (reason, rows.ids[dup[i]]) for i in range(len(rows))]
