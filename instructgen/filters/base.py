"""The filter contract: a filter scores records, then keeps or drops each with a short reason (datatrove's base
filter shape). Its `Params` dataclass is its one configuration: `XFilter(XFilter.Params(...))`, or
`XFilter.of(**options)`; a subclass validates and derives state in `setup()`, never in `__init__`.

Two kinds:
- `RecordFilter` judges each record on its own: it implements `score_batch(tasks) -> list[Decision]`, and the
  base does the batching, the progress bar, skipping records already dropped and, for expensive filters
  (`cache_kind`), a per-record score cache keyed by text hash, so a crash mid-step redoes no finished record.
- `GlobalStep` depends on order or on the whole set (dedup, novelty, selection). It is split in two so the set
  never has to be in one process as records: `features(tasks)` computes compact per-record data (hashes,
  signatures, vectors, texts) shard by shard, anywhere; `decide(rows)` decides from those columns alone (`Rows`),
  once, centrally. `step(tasks)` is the in-memory path through the same two.

A Decision is None (keep), a reason (`too_short:instruction`) or (reason, id of the record it duplicates).
A scoring filter (`score_key` set) ranks every record it scored (`task.meta["rank"][name]`, 1 = best) and keeps
by threshold and/or by budget (`keep_top`, from `SelectParams`): re-selecting costs no model call.
`select` is that ranking rule on arrays, shared by the Task path and the sharded engine.
`run_chain` applies filters in order and counts drops per reason: the report comes for free.

(Over 400 lines on purpose: both kinds, the columns a sharded engine passes a global step and the ranking rule
are one contract; split, each half would have to be read with the other.)
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ..records import Task

if TYPE_CHECKING:  # numpy loads on first use: `gen curate --help` imports this module
    import numpy as np

FIELDS = ("instruction", "input", "output")
Decision = Any  # None | str | tuple[str, str]


def doc(text: str, **kw):
    """A dataclass field with its documentation (`field_docs` and the registry tests read it)."""
    return field(metadata={"doc": text}, **kw)


def field_texts(task: Task, fld: str) -> list[str]:
    """The texts of one field: the instruction, or every instance's input or output."""
    if fld == "instruction":
        return [task.instruction]
    if fld not in ("input", "output"):
        raise ValueError(f"unknown field '{fld}': expected one of {FIELDS}")
    return [getattr(i, fld) for i in task.instances]


def joined_text(task: Task, fields: Sequence[str]) -> str:
    """Fields joined into one text (for dedup and embeddings)."""
    return "\n".join(t for f in fields for t in field_texts(task, f) if t)


def check_fields(fields: Sequence[str], name: str) -> tuple[str, ...]:
    """Validate a filter's `fields` option; the error names the filter and the allowed fields."""
    fields = tuple(fields)
    bad = [f for f in fields if f not in FIELDS]
    if bad or not fields:
        raise ValueError(f"fields: {', '.join(bad) or '(empty)'} - filter '{name}' reads one or more of "
                         f"{', '.join(FIELDS)}")
    return fields


@dataclass
class SelectParams:
    """The budget option every scoring filter's Params inherits."""

    keep_top: float | None = doc("also keep only the best records by this filter's score: an int N >= 1 keeps N, "
                                 "a share in (0, 1) keeps that share of the records reaching the filter; null = "
                                 "threshold only", default=None)


def budget(keep_top: float | int | None, n: int) -> int | None:
    """How many records `keep_top` keeps out of `n` (None: no budget); ValueError on a value that is neither."""
    if keep_top is None:
        return None
    if isinstance(keep_top, bool) or not isinstance(keep_top, (int, float)):
        raise ValueError(f"keep_top: an int N >= 1 or a share in (0, 1), got {keep_top!r}")
    if isinstance(keep_top, int):
        if keep_top < 1:
            raise ValueError(f"keep_top: an int N >= 1 or a share in (0, 1), got {keep_top}")
        return min(keep_top, n)
    if not 0 < keep_top < 1:
        raise ValueError(f"keep_top: a share must be in (0, 1) (or give an int count), got {keep_top}")
    return min(n, math.ceil(keep_top * n))


class Filter:
    """Base of both kinds. Subclasses set `name`, `Params` (a dataclass with a default and a doc per field) and
    a docstring; they may implement `setup()` (validate `self.p`, raise ValueError naming the option) and
    `prepare(ctx)` (check a server, a model or a file before any record is read)."""

    name = "filter"
    Params: Any = None
    per_field = True  # True: judges each field on its own; False: reads the fields joined into one text
    score_key: str | None = None  # the task.scores key ranked for keep_top (None: not a scoring filter)
    higher_is_better = True
    writes: tuple[str, ...] = ()  # task.scores keys set besides score_key and score_names; "{f}": one per field
    note: str | None = None  # shown in the stats, e.g. "skipped: LanguageTool not reachable"
    progress: Any = None  # a tqdm-like bar (update(n)) set by the chain runner, or None

    def __init__(self, params=None):
        self.p = params if params is not None else self.Params()
        self.details: dict = {}
        self._ticked = 0
        if hasattr(self.p, "fields"):
            self.fields = check_fields(self.p.fields, self.name)
        self.setup()
        budget(self.keep_top, 1)  # a bad keep_top fails at build time

    @property
    def keep_top(self) -> float | int | None:
        return self.p.keep_top if isinstance(self.p, SelectParams) else None

    @classmethod
    def of(cls, **options) -> "Filter":
        """`cls(cls.Params(**options))`: build from options in code."""
        return cls(cls.Params(**options))

    def setup(self) -> None:
        """Validate `self.p` and derive state (override; raise ValueError naming the option)."""

    def prepare(self, ctx: dict) -> None:
        """Check what the filter needs before any work (server, model, files); raise a user error if missing.
        `ctx` holds run-wide settings (cache_dir, read_only_cache, quiet, languagetool_url)."""

    def close(self) -> None:
        """Release what `prepare` opened (a server, a model); called at the end of `apply`."""

    def score_keys(self) -> set[str]:
        """The task.scores keys this filter sets (a later diversity step may only walk by one of them)."""
        keys = {k for k in (self.score_key, *getattr(self, "score_names", ())) if k}
        for w in self.writes:
            keys.update(w.format(f=f) for f in getattr(self, "fields", ())) if "{f}" in w else keys.add(w)
        return keys

    def params(self) -> dict:
        """The options this filter runs with (stats.json): its Params, nothing else."""
        return dataclasses.asdict(self.p)

    def tick(self, n: int) -> None:
        """Advance the progress bar by n records."""
        self._ticked += n
        if self.progress is not None and n:
            self.progress.update(n)

    def decisions(self, tasks: list[Task]) -> list[Decision]:
        raise NotImplementedError

    def decide_one(self, task: Task) -> Decision:
        raise NotImplementedError(f"filter '{self.name}' judges a whole set, not one record at a time")

    def decide(self, task: Task) -> bool:
        """Run one record through the filter (online use, e.g. `gen instructions`); True when kept."""
        return _record(self.name, task, self.decide_one(task))

    def apply(self, tasks: Iterable[Task]) -> list[Task]:
        """Decide every kept record, rank them and apply keep_top, record the verdicts; returns all records."""
        tasks = list(tasks)
        todo = [t for t in tasks if t.kept]
        self._ticked = 0
        try:
            out = self.decisions(todo) if todo else []
        finally:
            self.close()
        if len(out) != len(todo):
            raise RuntimeError(f"filter '{self.name}' returned {len(out)} decisions for {len(todo)} records")
        self.tick(max(0, len(todo) - self._ticked))
        if self.score_key is not None:
            out = self._select(todo, list(out))
        for t, d in zip(todo, out):
            _record(self.name, t, d)
        return tasks

    def _select(self, todo: list[Task], out: list[Decision]) -> list[Decision]:
        """Rank every scored record (meta["rank"][name], 1 = best) and drop the survivors beyond keep_top."""
        import numpy as np
        values = score_column(todo, self.score_key)
        ranks, newly, reason = select(values, np.array([bool(d) for d in out], dtype=bool), self.higher_is_better,
                                      self.keep_top, self.score_key)
        for i in np.nonzero(ranks)[0].tolist():
            t = todo[i]
            t.meta["rank"] = {**t.meta.get("rank", {}), self.name: int(ranks[i])}
        return [reason if newly[i] else d for i, d in enumerate(out)]


def select(values: np.ndarray, dropped: np.ndarray, higher_is_better: bool, keep_top, key: str
           ) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Rank and budget on arrays (the one ranking rule, for Task lists and for the sharded engine).

    `values`: float64 scores, nan = not scored; `dropped`: already dropped by the filter's own threshold.
    Returns (ranks int64: 1 = best among the scored, kept or dropped, 0 = unscored; newly_dropped: the records
    not dropped yet and not among the first `budget(keep_top, n)` undropped scored ones; the reason
    `below_top_{n}:{key}`, or None without a budget). Ties go to the earlier position."""
    import numpy as np
    values = np.asarray(values, dtype=np.float64)
    dropped = np.asarray(dropped, dtype=bool)
    n = len(values)
    ranks = np.zeros(n, dtype=np.int64)
    scored = np.nonzero(~np.isnan(values))[0]
    order = scored[np.argsort(values[scored] * (-1.0 if higher_is_better else 1.0), kind="stable")]
    ranks[order] = np.arange(1, len(order) + 1)
    b = budget(keep_top, n)
    if b is None:
        return ranks, np.zeros(n, dtype=bool), None
    keep = np.zeros(n, dtype=bool)
    keep[order[~dropped[order]][:b]] = True
    return ranks, ~dropped & ~keep, f"below_top_{b}:{key}"


def score_column(tasks: Sequence[Task], key: str) -> np.ndarray:
    """task.scores[key] of every task as float64, nan where absent or not a number."""
    import numpy as np
    return np.array([float(v) if _is_num(v := t.scores.get(key)) else math.nan for t in tasks], dtype=np.float64)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def _record(name: str, task: Task, d: Decision) -> bool:
    if not d:
        return True
    reason, dup = d if isinstance(d, tuple) else (d, None)
    task.drop(reason, filter=name, duplicate_of=dup)
    return False


class RecordFilter(Filter):
    """A filter judging each record on its own: implement `score_batch(tasks) -> list[Decision]`, writing every
    score it computes into `task.scores` for every record, kept or dropped.

    An expensive filter sets `cache_kind` and `score_names` (the float scores score_batch sets) and implements
    `decide_scores(task)`: scores are then cached per record by text hash (`cache.VectorCache` in
    ctx["cache_dir"]), flushed every `cache_flush` records or 30 s, and a hit costs no scoring at all."""

    batch_size = 256  # records per score_batch call (Params.batch_size wins when it has one)
    cache_kind: str | None = None
    score_names: tuple[str, ...] = ()
    cache_flush = 256
    cache: Any = None

    def score_batch(self, tasks: list[Task]) -> list[Decision]:
        raise NotImplementedError

    def decide_scores(self, task: Task) -> Decision:
        """The decision from `task.scores` alone (needed with a cache: a cached record is not scored again)."""
        raise NotImplementedError

    def cache_identity(self) -> dict:
        """What makes a cached score valid: the params, less the options that only decide."""
        return {k: v for k, v in self.params().items() if k not in ("threshold", "keep_top")}

    def cache_text(self, task: Task) -> str:
        return joined_text(task, self.fields)

    def prepare(self, ctx: dict) -> None:
        if self.cache_kind is not None:
            from .cache import VectorCache
            self.cache = VectorCache(ctx.get("cache_dir"), self.cache_kind, self.cache_identity(),
                                     read_only=ctx.get("read_only_cache", False))

    def decide_one(self, task: Task) -> Decision:
        return self.score_batch([task])[0]

    def decisions(self, tasks: list[Task]) -> list[Decision]:
        size = max(1, int(getattr(self.p, "batch_size", self.batch_size)))
        out: list[Decision] = [None] * len(tasks)
        todo = list(range(len(tasks)))
        cache = self.cache if self.cache_kind is not None else None
        keys: list = []
        if cache is not None:
            import numpy as np
            from .cache import VectorCache
            keys = [VectorCache.key(self.cache_text(t)) for t in tasks]
            vecs, found = cache.lookup(keys, len(self.score_names), np.float64)
            for i in np.nonzero(found)[0].tolist():
                for k, v in zip(self.score_names, vecs[i].tolist()):
                    if not math.isnan(v):
                        tasks[i].scores[k] = v
                out[i] = self.decide_scores(tasks[i])
            todo = np.nonzero(~found)[0].tolist()
            self.details.update(scores_cached=int(found.sum()), scored=len(todo))
            self.tick(int(found.sum()))
        pending: list[int] = []
        last_flush = time.monotonic()
        for a in range(0, len(todo), size):
            idx = todo[a:a + size]
            for i, d in zip(idx, self.score_batch([tasks[i] for i in idx])):
                out[i] = d
            self.tick(len(idx))
            if cache is not None:
                pending += idx
                if len(pending) >= self.cache_flush or time.monotonic() - last_flush > 30:
                    self._flush(cache, tasks, keys, pending)
                    pending, last_flush = [], time.monotonic()
        if cache is not None and pending:
            self._flush(cache, tasks, keys, pending)
        return out

    def _flush(self, cache, tasks: list[Task], keys: list, idx: list[int]) -> None:
        import numpy as np
        vec = np.array([[float(tasks[i].scores.get(k, math.nan)) for k in self.score_names] for i in idx],
                       dtype=np.float64).reshape(len(idx), len(self.score_names))
        cache.add([keys[i] for i in idx], vec)


@dataclass
class Rows:
    """The records reaching a global step as columns, in input order (no Task objects)."""

    ids: list[str]  # record ids
    feats: dict[str, Any]  # this step's features, concatenated over shards (GlobalStep.features)
    scores: dict[str, np.ndarray]  # input score columns named by reads_scores(): float64, nan = absent
    set_scores: dict[str, np.ndarray] = field(default_factory=dict)  # decide() writes: key -> float64, nan = unset
    set_meta: dict[str, list] = field(default_factory=dict)  # decide() writes: meta key -> list (None = unset)
    ranks: np.ndarray | None = None  # decide() may write int64 ranks (1 = best, 0 = none) -> meta.rank[name]

    def __len__(self) -> int:
        return len(self.ids)

    def score_out(self, key: str) -> np.ndarray:
        """The column decide() fills for `key` (created all-nan on first use)."""
        import numpy as np
        col = self.set_scores.get(key)
        if col is None:
            col = self.set_scores[key] = np.full(len(self.ids), math.nan, dtype=np.float64)
        return col


class GlobalStep(Filter):
    """An order-dependent step (dedup, novelty, selection), in two halves so it scales past one process:
    `features(tasks)` per shard (in a worker), then `decide(rows)` once over every shard's features in input
    order. `step(tasks)` runs both in memory. Online steps also implement `check(task)`."""

    # features that cost a model (embeddings): a sharded engine computes them only for the records that reach
    # the step, not for every record alive at the start of its pass
    expensive_features = False

    def features(self, tasks: list[Task]) -> dict[str, Any]:
        """Per-record compact data, computed per shard in a worker (maybe another process, maybe another
        machine), on the records of that shard that reach the step. Each value has len(tasks) rows and is
        either a numpy array (numeric, 1-D or 2-D; saved with np.save) or a list of str / None / JSON-able
        values (saved as JSONL). Must not depend on other shards."""
        raise NotImplementedError

    def reads_scores(self) -> tuple[str, ...]:
        """task.scores keys decide() reads (diversity: its walk keys)."""
        return ()

    def decide(self, rows):  # type: ignore[override]
        """Decisions for the rows, in order, from rows alone; duplicate_of names rows.ids[j]. Writes the
        scores and meta it sets into rows.set_scores / rows.set_meta (and rows.ranks for a walk order).
        Subclasses implement `decide_rows`; given a Task instead of Rows (online use, `Filter.decide`, as
        `gen instructions` calls it), runs `check` on it and returns True when kept."""
        if isinstance(rows, Task):
            return super().decide(rows)
        return self.decide_rows(rows)

    def decide_rows(self, rows: Rows) -> list[Decision]:
        raise NotImplementedError

    def to_rows(self, tasks: list[Task], feats: dict[str, Any] | None = None) -> Rows:
        """The Rows of in-memory tasks (features computed here unless given)."""
        return Rows([t.id for t in tasks], self.features(tasks) if feats is None else feats,
                    {k: score_column(tasks, k) for k in self.reads_scores()})

    def step(self, tasks: list[Task]) -> list[Decision]:
        """The in-memory path: features of all tasks, decide, then copy the scores, meta and ranks back."""
        rows = self.to_rows(tasks)
        out = self.decide(rows)
        write_back(self.name, tasks, rows)
        return out

    def check(self, task: Task) -> Decision:
        raise NotImplementedError(f"filter '{self.name}' judges a whole set, not one record at a time")

    def decide_one(self, task: Task) -> Decision:
        return self.check(task)

    def decisions(self, tasks: list[Task]) -> list[Decision]:
        return self.step(tasks)


def write_back(name: str, tasks: Sequence[Task], rows: Rows) -> None:
    """Copy what decide() set into the tasks: set_scores (non-nan), set_meta (non-None), ranks (> 0)."""
    import numpy as np
    for key, col in rows.set_scores.items():
        for i in np.nonzero(~np.isnan(col))[0].tolist():
            tasks[i].scores[key] = float(col[i])
    for key, vals in rows.set_meta.items():
        for t, v in zip(tasks, vals):
            if v is not None:
                t.meta[key] = v
    if rows.ranks is not None:
        for i in np.nonzero(rows.ranks)[0].tolist():
            t = tasks[i]
            t.meta["rank"] = {**t.meta.get("rank", {}), name: int(rows.ranks[i])}


def concat_features(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Features of consecutive shards joined in order: arrays concatenated (shards with no rows skipped, so an
    empty shard's placeholder shape never matters), lists chained."""
    import numpy as np
    out: dict[str, Any] = {}
    for key in (parts[0] if parts else {}):
        vals = [p[key] for p in parts]
        if isinstance(vals[0], np.ndarray):
            full = [v for v in vals if len(v)]
            out[key] = np.concatenate(full) if full else vals[0]
        else:
            out[key] = [x for v in vals for x in v]
    return out


@dataclass
class FilterStats:
    name: str
    records_in: int = 0
    dropped: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    note: str | None = None  # e.g. "skipped: LanguageTool not reachable"

    def to_dict(self) -> dict:
        return {"name": self.name, "records_in": self.records_in, "dropped": dict(self.dropped),
                "dropped_total": sum(self.dropped.values()), "kept": self.records_in - sum(self.dropped.values()),
                "seconds": round(self.seconds, 3), "note": self.note}


def run_filter(f: Filter, tasks: list[Task]) -> tuple[list[Task], FilterStats]:
    """Apply one filter to the records still kept; returns all records and its stats."""
    st = FilterStats(f.name, records_in=sum(t.kept for t in tasks))
    before = {id(t) for t in tasks if t.kept}
    t0 = time.perf_counter()
    tasks = f.apply(tasks)
    st.seconds = time.perf_counter() - t0
    st.dropped.update(t.verdict.reason for t in tasks if id(t) in before and not t.kept)
    st.note = getattr(f, "note", None)
    return tasks, st


def run_chain(filters: Sequence[Filter], tasks: list[Task]) -> tuple[list[Task], list[FilterStats]]:
    """Apply filters in order to the records still kept; returns all records and per-filter stats."""
    stats = []
    for f in filters:
        tasks, st = run_filter(f, tasks)
        stats.append(st)
    return tasks, stats
