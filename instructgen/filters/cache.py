"""A cache of vectors (MinHash signatures, embeddings) keyed by text hash, so changing a threshold and running
again does not recompute them.

One folder per kind and parameter set (`minhash-<hash of num_perm, seed, ngram>`), holding `params.json` and
chunk files `chunk-<pid>-<tag>-<n>.npz` (keys + vectors), each written atomically (temp file + rename): a crash
loses at most the chunk being written, and a long embedding run resumes from the chunks already saved. A chunk
that cannot be read whole is reported, removed and recomputed.

Several processes (curation workers, Ray tasks on one machine) may add to one folder at once: each writer's chunk
names are its own (pid, a random tag, a counter), and readers list and load under a shared flock on
`.compact.lock`. Many chunks are merged into one on load, under the exclusive lock, taken without waiting (skipped
while anyone else is loading), and only from the chunks that were complete when listed and were read; a chunk
that vanishes between listing and loading (merged away meanwhile) is not an error: the folder is listed again.
flock holds between processes of one machine; across machines use a node-local cache folder.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import stat
import sys
import zipfile
from pathlib import Path

import numpy as np

from ..records import text_hash

MAX_CHUNKS = 64  # merged into one beyond this, so loading stays one read of a few files
_COUNTER = itertools.count()  # chunk numbers of this process, across all its caches
_TAG = os.urandom(4).hex()  # a pid reused later by another process never reuses a name


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

    def _lock(self):
        """The folder's compaction lock file, open (None when it cannot be opened: no folder, read-only)."""
        try:
            return open(self.dir / ".compact.lock", "r" if self.read_only else "a")
        except OSError:
            return None

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.dir is None or not self.dir.is_dir():
            return
        lock = self._lock()
        try:
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_SH)  # no compaction removes a chunk while this process reads
            files = self._read_all()
            if len(files) > MAX_CHUNKS and not self.read_only and lock is not None:
                try:  # converts the shared lock: refused at once while another process holds one
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # someone else is reading: merge another time
                self._compact(files)
        finally:
            if lock is not None:
                lock.close()  # releases the lock

    def _read_all(self) -> list[Path]:
        """Read every chunk listed (again, when one vanished meanwhile); returns the chunks read."""
        done: set[Path] = set()
        files: list[Path] = []
        for _ in range(5):
            vanished = False
            for f in self._files():
                if f in done:
                    continue
                done.add(f)
                try:
                    if not stat.S_ISREG(f.lstat().st_mode):
                        print(f"warning: cache entry {f} is not a plain file; left alone and not used",
                              file=sys.stderr)
                        continue
                    with np.load(f) as z:
                        keys, vecs = z["keys"], z["vectors"]
                    if vecs.ndim != 2 or len(keys) != len(vecs):
                        raise ValueError("keys and vectors differ in length")
                except FileNotFoundError:
                    vanished = True  # merged away by a process that did not take the lock: list again
                    continue
                except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
                    # a damaged chunk (a disk full, a copy cut short): its vectors are recomputed, never trusted
                    print(f"warning: cache chunk {f} is damaged ({type(e).__name__}); its vectors will be "
                          "recomputed", file=sys.stderr)
                    if not self.read_only:
                        f.unlink(missing_ok=True)
                    continue
                files.append(f)
                c = len(self._chunks)
                self._chunks.append(vecs)
                for r, k in enumerate(keys.tolist()):
                    self._keys.setdefault(k, (c, r))
            if not vanished:
                break
        return files

    def _compact(self, files: list[Path]) -> None:
        """Merge the chunks read into one (under the exclusive lock: nobody is reading them)."""
        keys = list(self._keys)
        vecs = np.stack([self._chunks[c][r] for c, r in self._keys.values()])
        self._write(keys, vecs, name=self._new_name())  # whole on disk before any chunk it holds goes
        for f in files:
            f.unlink(missing_ok=True)
        self._chunks, self._keys = [vecs], {k: (0, r) for r, k in enumerate(keys)}

    def _new_name(self) -> str:
        """A chunk name no other writer uses: this process's pid, its random tag and its next number."""
        while True:
            name = f"chunk-{os.getpid()}-{_TAG}-{next(_COUNTER):06d}.npz"
            if not (self.dir / name).exists():
                return name

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
        """Save new vectors as one more chunk on disk (no-op when disabled or read-only); this object's lookups
        see only what it loaded."""
        if self.dir is None or self.read_only or not len(keys):
            return
        self._load()
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "params.json").exists():
            (self.dir / "params.json").write_text(json.dumps(self.params, indent=2) + "\n")
        self._write(keys, vectors, name=self._new_name())
        # not kept in memory: a worker adds every signature of its shards, and holding them all would grow it by
        # the whole cache (880K MinHash signatures: 450 MB); a later run (or another object) reads them from disk

    def _write(self, keys: list[bytes], vectors: np.ndarray, name: str) -> None:
        tmp = self.dir / (name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, keys=np.array(keys, dtype="S16"), vectors=vectors)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / name)
