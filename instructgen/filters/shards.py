"""`gen curate` in shards: the chain runs as passes over shards of records, and each global step is decided once,
centrally, from compact per-record features that the passes save per shard (datatrove's pattern: signatures per
shard, then buckets and clusters, then the filter).

A plan cuts the chain into passes. A pass runs, per shard (in a worker process, local or Ray), the decisions of
the previous pass's central steps, then its per-record filters, then the features of the global steps that follow
it (hashes, MinHash signatures, texts, vectors: `GlobalStep.features`). The central steps then read only those
features (and the record ids) for the records still kept: `RecordFilter` selection by score (`keep_top`, ranks)
and `GlobalStep.decide`. Their decisions are written per shard and applied by the next pass; the last pass writes
each shard's kept and rejected records, which are concatenated in shard order. So memory holds one shard of
records per worker plus the features of one step, and the result is the same whatever the shard size, the
executor or the worker count: every record is judged on its own, and every global step sees the same rows in
input order.

Work folder (OUT/.work, ours: --overwrite removes it, a resume keeps it, completion removes it):
  input/NNNNN.jsonl, NNNNN.ids.json   the input's records, `shard_size` per shard, and their ids
  input/done.json                     the split (shard count, records per shard), written last
  pP/NNNNN.jsonl                      a shard's records after pass P (verdicts, scores, meta)
  pP/NNNNN.COLUMN.npy | .jsonl        the shard's features and selection data for the steps after pass P
  pP/NNNNN.done.json                  the shard's stats for pass P, written last: that shard is done
  cK/NNNNN.jsonl, cK/done.json        central step K's decisions for each shard, then its stats (last)
  events.jsonl                        one line per shard finished (pass, shard, pid): what each attempt redid
A kill -9 redoes only the shards without a done marker, and the central step that was running.

(Over 400 lines: the plan, the shard job and the central steps are three readers and writers of one work-folder
format; kept together so that format lives in one place.)
"""

from __future__ import annotations

import bisect
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..records import Task, append_jsonl, iter_jsonl, write_jsonl
from ..rundir import write_json
from .base import GlobalStep, Rows, select

WORK = ".work"


@dataclass
class Pass:
    """One pass over the shards: per-record `filters` (chain indices), then the `features` of the global steps
    after it; then the `central` steps (a scoring filter's selection, global steps), in chain order."""

    index: int
    filters: list[int] = field(default_factory=list)
    features: list[int] = field(default_factory=list)
    central: list[int] = field(default_factory=list)


def plan(pairs: Sequence[tuple[Any, Any]]) -> list[Pass]:
    """Cut the enabled entries into passes; the last pass (no filters) writes the outputs.

    A per-record filter after a central step that drops records (a global step, a `keep_top` selection) opens a
    new pass (ranks alone do not: they are applied later); so does a global step whose features are costly
    (`expensive_features`: an embedding model), so that it encodes only the records that reach it. Cheap features
    of consecutive global steps are computed together in one pass, for every record kept at its end."""
    passes: list[Pass] = []
    cur = Pass(0)
    blocked = False  # a central step that drops records came: the next per-record filter needs its decisions
    for k, (_, f) in enumerate(pairs):
        if f is None:
            continue
        if isinstance(f, GlobalStep):
            if cur.central and getattr(f, "expensive_features", False):
                passes.append(cur)
                cur = Pass(len(passes))
            cur.features.append(k)
            cur.central.append(k)
            blocked = True
            continue
        if blocked:
            passes.append(cur)
            cur, blocked = Pass(len(passes)), False
        cur.filters.append(k)
        if f.score_key is not None:  # ranks need every shard's scores: a central step; only keep_top drops
            cur.central.append(k)
            blocked = f.keep_top is not None
    if cur.filters or cur.central:
        passes.append(cur)
    passes.append(Pass(len(passes)))
    return passes


class Work:
    """Paths in the work folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def input(self, s: int) -> Path:
        return self.root / "input" / f"{s:05d}.jsonl"

    def ids(self, s: int) -> Path:
        return self.root / "input" / f"{s:05d}.ids.json"

    def records(self, p: int, s: int) -> Path:
        return self.input(s) if p < 0 else self.root / f"p{p}" / f"{s:05d}.jsonl"

    def column(self, p: int, s: int, name: str) -> Path:
        return self.root / f"p{p}" / f"{s:05d}.{name}"

    def done(self, p: int, s: int) -> Path:
        return self.root / f"p{p}" / f"{s:05d}.done.json"

    def delta(self, k: int, s: int) -> Path:
        return self.root / f"c{k}" / f"{s:05d}.jsonl"

    def central_done(self, k: int) -> Path:
        return self.root / f"c{k}" / "done.json"

    def split_done(self) -> Path:
        return self.root / "input" / "done.json"


# --- columns: numpy arrays as .npy, anything else as JSON lines -------------------------------------------------

def save_columns(work: Work, p: int, s: int, prefix: str, cols: dict[str, Any], n: int) -> None:
    for name, v in cols.items():
        if isinstance(v, np.ndarray):
            if len(v) != n:
                raise RuntimeError(f"column {prefix}.{name}: {len(v)} rows for {n} records")
            np.save(work.column(p, s, f"{prefix}.{name}.npy"), v, allow_pickle=False)
        else:
            v = list(v)
            if len(v) != n:
                raise RuntimeError(f"column {prefix}.{name}: {len(v)} rows for {n} records")
            with open(work.column(p, s, f"{prefix}.{name}.jsonl"), "w", encoding="utf-8") as f:
                f.writelines(json.dumps(x, ensure_ascii=False) + "\n" for x in v)


def load_column(work: Work, p: int, s: int, prefix: str, name: str):
    npy = work.column(p, s, f"{prefix}.{name}.npy")
    if npy.exists():
        return np.load(npy, allow_pickle=False)
    with open(work.column(p, s, f"{prefix}.{name}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def column_names(work: Work, p: int, s: int, prefix: str) -> list[str]:
    head = f"{s:05d}.{prefix}."
    return sorted({e.name[len(head):].rsplit(".", 1)[0] for e in (work.root / f"p{p}").iterdir()
                   if e.name.startswith(head)})


class LazyColumn:
    """A JSON-lines column of several shards, read from disk when asked (by position, or in order), never held
    whole: a global step that reads a few texts (MinHash's borderline pairs) or streams them (ROUGE-L) keeps 8
    bytes a row in memory, not the texts."""

    def __init__(self):
        self.parts: list[tuple[Path, np.ndarray]] = []
        self.ends: list[int] = []
        self._open: tuple[Path, Any] | None = None

    def add(self, path: Path, sel: np.ndarray) -> None:
        """Rows `sel` (positions in the file, increasing) of one shard's column file."""
        offsets, pos = [], 0
        with open(path, "rb") as f:
            for line in f:
                offsets.append(pos)
                pos += len(line)
        self.parts.append((path, np.asarray(offsets, dtype=np.int64)[sel]))
        self.ends.append((self.ends[-1] if self.ends else 0) + len(sel))

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def _read(self, path: Path, offset: int):
        if self._open is None or self._open[0] != path:
            if self._open is not None:
                self._open[1].close()
            self._open = (path, open(path, "rb"))
        f = self._open[1]
        f.seek(int(offset))
        return json.loads(f.readline())

    def __getitem__(self, i: int):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self.ends, i)
        start = self.ends[k - 1] if k else 0
        path, offsets = self.parts[k]
        return self._read(path, offsets[i - start])

    def __iter__(self):
        for path, offsets in self.parts:
            with open(path, "rb") as f:
                for off in offsets.tolist():
                    f.seek(off)
                    yield json.loads(f.readline())


def _fill(parts: list[tuple[Path, np.ndarray]]) -> np.ndarray:
    """One array of the selected rows of every shard's .npy (memory-mapped while read): the step's features
    are held once, never as per-shard pieces plus their concatenation."""
    first = np.load(parts[0][0], mmap_mode="r")
    out = np.empty((sum(len(sel) for _, sel in parts),) + first.shape[1:], dtype=first.dtype)
    del first
    at = 0
    for path, sel in parts:
        if len(sel):
            m = np.load(path, mmap_mode="r")  # one shard mapped at a time: its pages go when it is dropped
            out[at:at + len(sel)] = m[sel]
            at += len(sel)
            del m
    return out


def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
    """One column of per-shard 1-D pieces, in shard order (an empty one when there is no shard)."""
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


# --- a shard's work (runs in a worker) ---------------------------------------------------------------------------

_BUILT: dict[str, list] = {}  # token -> prepared (spec, filter) pairs, once per process


def register(token: str, pairs: list) -> None:
    """Let jobs run in this process reuse the driver's prepared filters."""
    _BUILT[token] = pairs


def unregister(token: str) -> None:
    """The run is over: drop its filters from this process's memo."""
    _BUILT.pop(token, None)


def _pairs(job: dict) -> list:
    pairs = _BUILT.get(job["token"])
    if pairs is None:
        from .chain import build_filter, parse_config
        cfg = parse_config(job["config"], "config")
        pairs = [(spec, build_filter(spec) if spec.enabled else None) for spec in cfg.filters]
        ctx = dict(job["ctx"], quiet=True)
        for _, f in pairs:
            if f is not None:
                f.prepare(ctx)
        _BUILT[job["token"]] = pairs
    return pairs


def read_deltas(path: Path) -> Iterable[tuple[int, dict]]:
    """A central step's decisions for one shard: (row, {"s": scores, "m": meta, "r": rank, "d": [reason, dup]})."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            row, d = json.loads(line)
            yield row, d


def apply_deltas(tasks: list[Task], path: Path, name: str) -> None:
    """Apply a central step's decisions for one shard: scores, meta, rank, then the drop."""
    for row, d in read_deltas(path):
        t = tasks[row]
        if "s" in d:
            t.scores.update(d["s"])
        if "m" in d:
            t.meta.update(d["m"])
        if "r" in d:
            t.meta["rank"] = {**t.meta.get("rank", {}), name: d["r"]}
        if "d" in d:
            t.drop(d["d"][0], filter=name, duplicate_of=d["d"][1])


def _folder(p: Path) -> None:
    """A pass's or a step's folder in .work, never through a symbolic link planted there."""
    if p.is_symlink():
        raise RuntimeError(f"{p} is a symbolic link; instructgen will not write through one")
    p.mkdir(exist_ok=True)


def _detail_delta(base: dict, now: dict) -> dict:
    return {k: v for k, v in now.items() if k not in base or base[k] != v}


def run_shard(job: dict) -> dict:
    """One shard of one pass: apply the previous central decisions, run the pass's filters, save the features
    for the next central steps, write the records (or, in the last pass, the kept and rejected ones), then the
    done marker."""
    t0 = time.perf_counter()
    work, p, s = Work(job["work"]), job["pass"], job["shard"]
    pairs = _pairs(job)
    tasks = [Task.from_dict(obj) for _, obj in iter_jsonl(work.records(p - 1, s))]
    for k in job["apply"]:
        apply_deltas(tasks, work.delta(k, s), pairs[k][0].name)
    _folder(work.root / f"p{p}")
    filters: dict[str, dict] = {}
    for k in job["filters"]:
        spec, f = pairs[k]
        idx = [i for i, t in enumerate(tasks) if t.kept]
        todo = [tasks[i] for i in idx]
        base = dict(f.details)
        t1 = time.perf_counter()
        out = f.decisions(todo) if todo else []
        if len(out) != len(todo):
            raise RuntimeError(f"filter '{spec.name}' returned {len(out)} decisions for {len(todo)} records")
        dropped: Counter = Counter()
        for t, d in zip(todo, out):
            if d:
                reason, dup = d if isinstance(d, tuple) else (d, None)
                t.drop(reason, filter=spec.name, duplicate_of=dup)
                dropped[reason] += 1
        filters[str(k)] = {"records_in": len(todo), "dropped": dict(dropped), "seconds": time.perf_counter() - t1,
                           "details": _detail_delta(base, f.details)}
        f.details = base
        if f.score_key is not None:
            vals = np.array([_num(t.scores.get(f.score_key)) for t in todo], dtype=np.float64)
            save_columns(work, p, s, f"sel{k}", {"row": np.array(idx, dtype=np.int64), "value": vals,
                                                 "dropped": np.array([bool(d) for d in out], dtype=bool)}, len(idx))
    alive = np.array([t.kept for t in tasks], dtype=bool)
    rows = np.nonzero(alive)[0]
    reached = [tasks[i] for i in rows.tolist()]
    for k in job["features"]:
        spec, f = pairs[k]
        base = dict(f.details)
        t1 = time.perf_counter()
        cols = dict(f.features(reached)) if reached else {}
        cols["_row"] = rows.astype(np.int64)
        for key in f.reads_scores():
            cols[f"_score.{key}"] = np.array([_num(t.scores.get(key)) for t in reached], dtype=np.float64)
        save_columns(work, p, s, f"g{k}", cols, len(rows)) if reached else \
            save_columns(work, p, s, f"g{k}", {"_row": cols["_row"]}, 0)
        filters[str(k)] = {"seconds": time.perf_counter() - t1, "details": _detail_delta(base, f.details)}
        f.details = base
    if job["final"]:
        write_jsonl(work.column(p, s, "kept.jsonl"), (t for t in tasks if t.kept))
        write_jsonl(work.column(p, s, "rejected.jsonl"), (t for t in tasks if not t.kept))
    else:
        np.save(work.column(p, s, "alive.npy"), alive)
        write_jsonl(work.records(p, s), tasks)
    done = {"pass": p, "shard": s, "identity": job["identity"], "records": len(tasks), "kept": int(alive.sum()),
            "filters": filters,
            "seconds": round(time.perf_counter() - t0, 3), "pid": os.getpid()}
    write_json(work.done(p, s), done)
    append_jsonl(work.root / "events.jsonl", [{"pass": p, "shard": s, "pid": os.getpid()}])
    return done


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")


# --- central steps (in the driver) -------------------------------------------------------------------------------

class Central:
    """The driver's view of one pass's shards for its central steps: which rows are still kept, the ids, and the
    decisions written per shard."""

    def __init__(self, work: Work, p: int, counts: Sequence[int]):
        self.work, self.p, self.counts = work, p, list(counts)
        self.alive = [np.load(work.column(p, s, "alive.npy")) for s in range(len(counts))]

    def ids(self, s: int) -> list[str]:
        return json.loads(self.work.ids(s).read_text(encoding="utf-8"))  # read per step: not held between steps

    def replay(self, k: int) -> None:
        """A central step done before a crash: only its drops matter to the steps after it."""
        for s in range(len(self.counts)):
            for row, d in read_deltas(self.work.delta(k, s)):
                if "d" in d:
                    self.alive[s][row] = False

    def write(self, k: int, s: int, lines: list) -> None:
        """One shard's decisions of step k (written shard by shard: never every row's at once; the step made
        its folder)."""
        with open(self.work.delta(k, s), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(x, ensure_ascii=False) + "\n" for x in lines)

    def select_step(self, k: int, spec, f) -> dict:
        """A scoring per-record filter's ranks and keep_top, over every shard's scores."""
        _folder(self.work.root / f"c{k}")  # also with no shard at all (an empty input): its done marker goes here
        parts = {n: [] for n in ("row", "value", "dropped")}
        shard_of = []
        for s in range(len(self.counts)):
            for n in parts:
                parts[n].append(load_column(self.work, self.p, s, f"sel{k}", n))
            shard_of.append(np.full(len(parts["row"][-1]), s, dtype=np.int64))
        rows, vals, dropped = (_cat(parts[n], t) for n, t in (("row", np.int64), ("value", np.float64),
                                                              ("dropped", bool)))
        shard_of = _cat(shard_of, np.int64)
        ranks, newly, reason = select(vals, dropped, f.higher_is_better, f.keep_top, f.score_key)
        per_shard: list[list] = [[] for _ in self.counts]  # few rows: a rank or a budget drop each
        for i in range(len(rows)):
            d = {}
            if ranks[i]:
                d["r"] = int(ranks[i])
            if newly[i]:
                d["d"] = [reason, None]
                self.alive[shard_of[i]][rows[i]] = False
            if d:
                per_shard[shard_of[i]].append([int(rows[i]), d])
        for s, lines in enumerate(per_shard):
            self.write(k, s, lines)
        return {"records_in": 0, "dropped": dict(Counter({reason: int(newly.sum())})) if newly.any() else {},
                "details": {}}

    def global_step(self, k: int, spec, f: GlobalStep) -> dict:
        """Decide a global step from the features of the rows still kept, in input order."""
        _folder(self.work.root / f"c{k}")
        names: list[str] = []
        for s in range(len(self.counts)):  # a shard where no record reached the step saved only its rows
            names = [n for n in column_names(self.work, self.p, s, f"g{k}") if n != "_row"]
            if names:
                break
        feats: dict[str, list] = {n: [] for n in names if not n.startswith("_score.")}
        scores: dict[str, list] = {n[len("_score."):]: [] for n in names if n.startswith("_score.")}
        lazy: dict[str, LazyColumn] = {}  # text columns stay on disk, read by position or in order
        ids: list[str] = []
        where: list[tuple[int, np.ndarray]] = []
        for s in range(len(self.counts)):
            rows = load_column(self.work, self.p, s, f"g{k}", "_row")
            keep = self.alive[s][rows] if len(rows) else np.zeros(0, dtype=bool)
            sel = np.nonzero(keep)[0]
            where.append((s, rows[sel]))
            shard_ids = self.ids(s)
            ids += [shard_ids[r] for r in rows[sel].tolist()]
            for n in feats:
                npy = self.work.column(self.p, s, f"g{k}.{n}.npy")
                if not len(rows):
                    continue
                if npy.exists():
                    feats[n].append((npy, sel))  # read once the total is known: one array, no second copy
                else:
                    lazy.setdefault(n, LazyColumn()).add(self.work.column(self.p, s, f"g{k}.{n}.jsonl"), sel)
            for n in scores:
                col = load_column(self.work, self.p, s, f"g{k}", f"_score.{n}") if len(rows) else np.zeros(0)
                scores[n].append(col[sel])
        cols = {n: _fill(v) for n, v in feats.items() if v}
        cols.update({n: lazy.get(n, LazyColumn()) for n in feats if n not in cols})
        rows_obj = Rows(ids=ids, feats=cols, scores={n: _cat(v, np.float64) for n, v in scores.items() if v})
        del feats
        base = dict(f.details)
        out = list(f.decide(rows_obj)) if ids else []  # GlobalStep.decide(Rows) -> decide_rows
        if len(out) != len(ids):
            raise RuntimeError(f"filter '{spec.name}' returned {len(out)} decisions for {len(ids)} records")
        ranks = rows_obj.ranks
        if f.score_key is not None and ids:
            vals = rows_obj.set_scores.get(f.score_key, np.full(len(ids), np.nan))
            ranks, newly, reason = select(np.asarray(vals, dtype=np.float64), np.array([bool(d) for d in out]),
                                          f.higher_is_better, f.keep_top, f.score_key)
            out = [reason if newly[i] else d for i, d in enumerate(out)]
        dropped: Counter = Counter()
        i = 0
        for s, rows in where:
            lines = []
            for r in rows.tolist():
                d: dict = {}
                sc = {key: float(v[i]) for key, v in rows_obj.set_scores.items() if not np.isnan(v[i])}
                if sc:
                    d["s"] = sc
                m = {key: v[i] for key, v in rows_obj.set_meta.items() if v[i] is not None}
                if m:
                    d["m"] = m
                if ranks is not None and ranks[i]:
                    d["r"] = int(ranks[i])
                if out[i]:
                    reason, dup = out[i] if isinstance(out[i], tuple) else (out[i], None)
                    d["d"] = [reason, dup]
                    dropped[reason] += 1
                    self.alive[s][r] = False
                if d:
                    lines.append([r, d])
                i += 1
            self.write(k, s, lines)
        details = _detail_delta(base, f.details)
        f.details = base
        return {"records_in": len(ids), "dropped": dict(dropped), "details": details}


# --- the split ---------------------------------------------------------------------------------------------------

@dataclass
class Split:
    """What the driver learns while splitting the input: shard sizes and what the checks need."""

    counts: list[int] = field(default_factory=list)
    already_rejected: int = 0
    has_instances: bool = False
    carried_scores: set = field(default_factory=set)

    @property
    def records(self) -> int:
        return sum(self.counts)


def split(tasks: Iterable[Task], dest: Path | None, shard_size: int, info: Split) -> Iterable[Task]:
    """Yield the records to curate (those not already rejected) while writing them to `dest` in shards of
    `shard_size` (nothing is written when `dest` is None); `info` fills as it goes."""
    buf: list[Task] = []

    def flush():
        if dest is not None:
            s = len(info.counts)
            write_jsonl(dest / f"{s:05d}.jsonl", buf)
            (dest / f"{s:05d}.ids.json").write_text(json.dumps([t.id for t in buf], ensure_ascii=False),
                                                     encoding="utf-8")
        info.counts.append(len(buf))
        buf.clear()

    if dest is not None:
        dest.mkdir(parents=True, exist_ok=True)
    for t in tasks:
        if not t.kept:
            info.already_rejected += 1
            continue
        info.has_instances = info.has_instances or bool(t.instances)
        info.carried_scores.update(t.scores)
        buf.append(t)
        yield t
        if len(buf) >= shard_size:
            flush()
    if buf:
        flush()
    if dest is not None:
        write_json(dest / "done.json", {"counts": info.counts, "shard_size": shard_size,
                                        "already_rejected": info.already_rejected})


def concat(parts: Iterable[Path], dest: Path) -> None:
    """Concatenate shard outputs, in order, into `dest` atomically."""
    import shutil
    from ..rundir import atomic_path
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())


def pass_identity(pass_: Pass, previous: Pass | None, pairs: Sequence, split_id: str) -> str:
    """What a shard's done marker must match to be reused: the split, and the entries this pass applies, runs and
    computes features for (names and options)."""
    from ..records import text_hash

    def entries(ks):
        return [pairs[k][0].to_dict() for k in ks]
    return text_hash(json.dumps({"split": split_id, "apply": entries(previous.central if previous else []),
                                 "filters": entries(pass_.filters), "features": entries(pass_.features)},
                                sort_keys=True, default=str))


def run_pass(executor, work: Work, pass_: Pass, previous: Pass | None, counts: Sequence[int], job: dict,
             identity: str, on_done: Callable[[dict], None]) -> tuple[list[dict], int]:
    """Run a pass on every shard without a done marker; returns (every shard's done record, shards run). A
    marker written for another pass or split (not this run's) is refused, never reused."""
    from ..rundir import RunDirError
    last = not pass_.filters and not pass_.central
    todo = []
    for s in range(len(counts)):
        marker = work.done(pass_.index, s)
        if not marker.exists():
            todo.append(s)
            continue
        got = json.loads(marker.read_text(encoding="utf-8")).get("identity")
        if got != identity:
            raise RunDirError(f"{marker}: this shard was done by another run (its pass or split differs); pass "
                              f"--overwrite to curate again")
    jobs = [dict(job, shard=s, identity=identity, apply=list(previous.central) if previous else [],
                 filters=pass_.filters, features=pass_.features, final=last, **{"pass": pass_.index}) for s in todo]
    executor.map(run_shard, jobs, on_done)
    return [json.loads(work.done(pass_.index, s).read_text(encoding="utf-8")) for s in range(len(counts))], len(jobs)
