"""Embedding near-duplicates (SemDeDup-style, Abbas et al. 2023): sentence-transformers embeddings, normalised,
and an exact blocked search for the most similar earlier kept record.

Records are taken in input order; one is dropped when its cosine similarity to an earlier *kept* record is at
least `threshold`; `duplicate_of` names the most similar kept one (ties: the earliest). The search is exact and
blocked: a block of queries is compared against the kept set in chunks, so memory is the embeddings (linear in
the dataset) plus one block x chunk score matrix, never N x N. Embeddings are cached by text hash in chunks as
they are encoded, so a long encode resumes after a crash and a new threshold costs no encoding at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..records import Task
from .base import Decision, GlobalStep, Rows, SelectParams, doc, joined_text
from .cache import VectorCache

ENCODE_CHUNK = 1024  # texts per encode call and per cache chunk


def resolve_model(spec: str) -> str:
    """A loadable local model folder for an embedded name, a folder, or a hub id already in the HF cache."""
    from ..models import EMBEDDING_MODELS, ModelSpecError, embedding_model_path
    if spec in EMBEDDING_MODELS:
        return embedding_model_path(spec)
    if Path(spec).expanduser().is_dir():
        return str(Path(spec).expanduser())
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download
            return snapshot_download(spec, local_files_only=True)
        except Exception:
            pass
    raise ModelSpecError(f"embedding model '{spec}' is neither an embedded name ({', '.join(EMBEDDING_MODELS)}), "
                         "a local folder, nor a hub id in the local HF cache (nothing is downloaded at run time)")


def nearest_kept(emb: np.ndarray, threshold: float, block: int = 1024, chunk: int = 8192):
    """Greedy dedup over normalised embeddings in row order. Returns (kept mask, duplicate_of row or -1, best
    cosine against an earlier kept row, -1 for the first row). Exact: every earlier kept row is compared."""
    n = len(emb)
    kept = np.ones(n, dtype=bool)
    dup = np.full(n, -1, dtype=np.int64)
    best = np.full(n, -1.0, dtype=np.float32)
    kept_rows: list[int] = []
    for s in range(0, n, block):
        q = emb[s:s + block]
        b = len(q)
        prev_best = np.full(b, -np.inf, dtype=np.float32)
        prev_arg = np.full(b, -1, dtype=np.int64)
        kr = np.array(kept_rows, dtype=np.int64)
        for c in range(0, len(kr), chunk):  # earlier blocks, resolved: their kept rows are final
            rows = kr[c:c + chunk]
            sims = emb[rows] @ q.T  # (chunk, block)
            arg = np.argmax(sims, axis=0)  # first maximum: the earliest row among ties
            val = sims[arg, np.arange(b)]
            better = val > prev_best  # strict: an earlier chunk wins ties
            prev_best[better], prev_arg[better] = val[better], rows[arg[better]]
        inner = q @ q.T  # the block against itself, resolved row by row
        in_kept: list[int] = []
        for i in range(b):
            bi, ai = prev_best[i], prev_arg[i]
            if in_kept:
                cand = np.array(in_kept)
                vals = inner[i, cand]
                j = int(np.argmax(vals))
                if vals[j] > bi:
                    bi, ai = vals[j], s + cand[j]
            best[s + i] = bi if ai >= 0 else -1.0
            if ai >= 0 and bi >= threshold:
                kept[s + i], dup[s + i] = False, ai
            else:
                in_kept.append(i)
        kept_rows.extend(s + i for i in in_kept)
    return kept, dup, best


@dataclass
class EmbeddingParams(SelectParams):
    threshold: float = doc("drop when the cosine similarity to an earlier kept record is at least this",
                           default=0.95)
    model: str = doc("sentence-transformers model: an embedded name (all-minilm-l6-v2), a local folder, or a "
                     "hub id already in the HF cache", default="all-minilm-l6-v2")
    batch_size: int = doc("texts per forward pass", default=32)
    max_seq_length: int = doc("tokens kept per text; 0 = the model's own limit (256 for all-MiniLM-L6-v2)",
                              default=0)
    device: str = doc("torch device", default="cpu")
    block_size: int = doc("queries compared at once in the exact search (memory ~ block x 8192 floats)",
                          default=1024)
    fields: list[str] = doc("fields joined into the embedded text", default_factory=lambda: ["instruction", "input"])


class EmbeddingDedupFilter(GlobalStep):
    """Near-duplicate removal with sentence embeddings: drop a record whose cosine similarity to an earlier
    kept record is at least `threshold` (normalised embeddings, exact blocked search). Stores `embedding_cos_max`
    (against the earlier kept records; -1 for the first). Embeddings are cached by text hash. `keep_top` keeps
    the most novel (lowest embedding_cos_max). Its features: the normalised embeddings (float32, 1,536 bytes a
    record for all-MiniLM-L6-v2's 384 dimensions); only the process computing them loads the model."""

    name = "embedding"
    Params = EmbeddingParams
    per_field = False
    score_key = "embedding_cos_max"
    higher_is_better = False
    expensive_features = True  # a sentence-transformers encode

    def setup(self) -> None:
        p = self.p
        if not -1 <= p.threshold <= 1:
            raise ValueError(f"threshold must be in [-1, 1], got {p.threshold}")
        if p.batch_size < 1 or p.block_size < 1 or p.max_seq_length < 0:
            raise ValueError("batch_size and block_size must be >= 1, max_seq_length >= 0")
        self.threshold, self.model = p.threshold, p.model
        self.model_path: str | None = None
        self.cache: VectorCache | None = None
        self._st = None

    def prepare(self, ctx: dict) -> None:
        from ..models import ModelSpecError
        try:
            self.model_path = resolve_model(self.model)  # a missing model fails here, before any work
        except ModelSpecError as e:
            raise ModelSpecError(f"model: {e}") from None
        self.cache = VectorCache(ctx.get("cache_dir"), "embedding",
                                 {"model": self.model, "max_seq_length": self.p.max_seq_length,
                                  "normalized": True}, read_only=ctx.get("read_only_cache", False))

    def load(self):
        """The SentenceTransformer (loaded once, only when something is not cached)."""
        if self._st is None:
            from sentence_transformers import SentenceTransformer
            self._st = SentenceTransformer(self.model_path or resolve_model(self.model), device=self.p.device)
            if self.p.max_seq_length:
                self._st.max_seq_length = self.p.max_seq_length
        return self._st

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised embeddings (float32), from the cache where held; new ones are encoded longest first in
        chunks, each saved to the cache as soon as it is done."""
        cache = self.cache if self.cache is not None else VectorCache(None, "embedding", {})
        keys = [VectorCache.key(t) for t in texts]
        out, missing_all = None, list(range(len(texts)))
        if len(cache):  # every vector in one cache folder comes from one model: one dimension
            out, found = cache.lookup(keys, cache.dim(), np.float32)
            missing_all = np.nonzero(~found)[0].tolist()
        t0 = time.perf_counter()
        self.tick(len(texts) - len(missing_all))
        if missing_all:
            t_load = time.perf_counter()
            model = self.load()
            self.details["model_load_seconds"] = round(time.perf_counter() - t_load, 3)
            t0 = time.perf_counter()
            dim = model.get_embedding_dimension()
            if out is None:
                out = np.zeros((len(texts), dim), dtype=np.float32)
            # longest first, as sentence-transformers sorts within a call: chunks pad as little as one call
            order = sorted(missing_all, key=lambda i: -len(texts[i]))
            for c in range(0, len(order), ENCODE_CHUNK):
                idx = order[c:c + ENCODE_CHUNK]
                vec = model.encode([texts[i] for i in idx], batch_size=self.p.batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
                out[idx] = vec
                cache.add([keys[i] for i in idx], vec)
                self.tick(len(idx))
        self.details.update(embeddings_cached=len(texts) - len(missing_all), embeddings_encoded=len(missing_all),
                            encode_seconds=round(time.perf_counter() - t0, 3))
        if out is None:
            out = np.zeros((0, 1), dtype=np.float32)
        return out

    def features(self, tasks: list[Task]) -> dict:
        return {"vector": self.embed([joined_text(t, self.fields) for t in tasks])}

    def decide_rows(self, rows: Rows) -> list[Decision]:
        emb = rows.feats["vector"]
        t0 = time.perf_counter()
        kept, dup, best = nearest_kept(emb, self.threshold, self.p.block_size)
        self.details["search_seconds"] = round(time.perf_counter() - t0, 3)
        rows.set_scores["embedding_cos_max"] = best.astype(np.float64)
        reason = f"embedding_cos>={self.threshold:.2f}"
        return [None if kept[i] else (reason, rows.ids[dup[i]]) for i in range(len(rows))]
