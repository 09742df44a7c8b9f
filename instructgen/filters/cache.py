"""A cache of vectors (MinHash signatures, embeddings) keyed by text hash, so changing a threshold and running
again does not recompute them.

One folder per kind and parameter set (`minhash-<hash of num_perm, seed, ngram>`), holding `params.json` and
chunk files `chunk-NNNNNN.npz` (keys + vectors), each written atomically (temp file + rename): a crash loses at
most the chunk being written, and a long embedding run resumes from the chunks already saved. Many chunks are
merged into one on load. A chunk that cannot be read whole is reported, removed and recomputed.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from ..records import text_hash

MAX_CHUNKS = 64  # merged into one beyond this, so loading stays one read of a few files


class VectorCache:
    """Vectors of one kind and parameter set. `root=None` disables the cache; `read_only` never writes."""

    def __init__(self, root: str | os.PathLike | None, kind: str, params: dict, read_only: bool = False):
        self.params = params
        self.read_only = read_only
        self.dir = Path(root) / f"{kind}-{text_hash(json.dumps(params, sort_keys=True))}" if root else None
        self._keys: dict[bytes, tuple[int, int]] = {}  # key -> (chunk number, row)
        self._chunks: list[np.ndarray] = []
        self._loaded = False

    def _files(self) -> list[Path]:
        if self.dir is None or not self.dir.is_dir():
            return []
        return sorted(self.dir.glob("chunk-*.npz"))

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        files = []
        for f in self._files():
            if not f.is_file() or f.is_symlink():
                print(f"warning: cache entry {f} is not a plain file; left alone and not used", file=sys.stderr)
                continue
            try:
                with np.load(f) as z:
                    keys, vecs = z["keys"], z["vectors"]
                if vecs.ndim != 2 or len(keys) != len(vecs):
                    raise ValueError("keys and vectors differ in length")
            except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
                # a damaged chunk (a disk full, a copy cut short): its vectors are recomputed, never trusted
                print(f"warning: cache chunk {f} is damaged ({type(e).__name__}); its vectors will be recomputed",
                      file=sys.stderr)
                if not self.read_only:
                    f.unlink(missing_ok=True)  # another process may have compacted it away meanwhile
                continue
            files.append(f)
            c = len(self._chunks)
            self._chunks.append(vecs)
            for r, k in enumerate(keys.tolist()):
                self._keys.setdefault(k, (c, r))
        if len(files) > MAX_CHUNKS and not self.read_only:
            self._compact(files)

    def _compact(self, files: list[Path]) -> None:
        keys = list(self._keys)
        vecs = np.stack([self._chunks[c][r] for c, r in self._keys.values()])
        self._write(keys, vecs, name="chunk-000000.npz.merged")
        for f in files:
            f.unlink()
        os.replace(self.dir / "chunk-000000.npz.merged", self.dir / "chunk-000000.npz")
        self._chunks, self._keys = [vecs], {k: (0, r) for r, k in enumerate(keys)}

    @staticmethod
    def key(text: str) -> bytes:
        return text_hash(text).encode("ascii")

    def __len__(self) -> int:
        self._load()
        return len(self._keys)

    def dim(self) -> int:
        """The vector length of the cached entries (0 when empty)."""
        self._load()
        return int(self._chunks[0].shape[1]) if self._chunks else 0

    def lookup(self, keys: list[bytes], dim: int, dtype) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, found): rows for the keys held (zeros elsewhere) and a mask of the keys found."""
        self._load()
        out = np.zeros((len(keys), dim), dtype=dtype)
        found = np.zeros(len(keys), dtype=bool)
        for i, k in enumerate(keys):
            hit = self._keys.get(k)
            if hit is not None and self._chunks[hit[0]].shape[1:] == (dim,):
                out[i] = self._chunks[hit[0]][hit[1]]
                found[i] = True
        return out, found

    def add(self, keys: list[bytes], vectors: np.ndarray) -> None:
        """Save new vectors as one more chunk (no-op when disabled or read-only)."""
        if self.dir is None or self.read_only or not len(keys):
            return
        self._load()
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "params.json").exists():
            (self.dir / "params.json").write_text(json.dumps(self.params, indent=2) + "\n")
        n = len(self._files())
        while (self.dir / f"chunk-{n:06d}.npz").exists():
            n += 1
        self._write(keys, vectors, name=f"chunk-{n:06d}.npz")
        c = len(self._chunks)
        self._chunks.append(vectors)
        for r, k in enumerate(keys):
            self._keys.setdefault(k, (c, r))

    def _write(self, keys: list[bytes], vectors: np.ndarray, name: str) -> None:
        tmp = self.dir / (name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, keys=np.array(keys, dtype="S16"), vectors=vectors)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / name)
