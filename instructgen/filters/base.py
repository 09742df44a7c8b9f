"""A filter scores a record, then keeps it or drops it with a short reason (datatrove's base filter shape).

`Filter.check(task)` returns None to keep, a reason string to drop, or (reason, duplicate_of id) for a
near-duplicate; it may store scores on the task.
`Filter.apply(tasks)` runs `check` over the records still kept, in order; stateful filters (novelty, dedup)
override it. `run_chain` applies filters in order and counts drops per reason: the report comes for free.

Filters that users pick by name in a `gen curate` config also declare `Params`, a dataclass of their options
with a doc per field (built with `doc`), and `prepare(ctx)`, which checks everything the filter needs (a
server, a model, a file) before any record is touched.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from ..records import Task

FIELDS = ("instruction", "input", "output")


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


class Filter:
    """Base class: subclasses set `name` and implement `check` (or override `apply`)."""

    name = "filter"
    fields: tuple[str, ...] = ("instruction",)
    Params: Any = None  # dataclass of the options a config may set (None: not configurable by name)
    per_field = True  # True: judges each field on its own; False: reads the fields joined into one text
    note: str | None = None  # shown in the stats, e.g. "skipped: LanguageTool not reachable"
    progress: Any = None  # a tqdm-like bar (update(n)) set by the chain runner, or None

    @classmethod
    def from_params(cls, params) -> "Filter":
        """Build the filter from its `Params` (the default: the params are the constructor's arguments)."""
        return cls(**dataclasses.asdict(params))

    def prepare(self, ctx: dict) -> None:
        """Check what the filter needs before any work (server, model, files); raise a user error if missing.
        `ctx` holds run-wide settings (cache_dir, read_only_cache, quiet, languagetool_url)."""

    def params(self) -> dict:
        """The options this filter runs with, for stats.json."""
        return {}

    def check(self, task: Task) -> str | tuple[str, str] | None:
        raise NotImplementedError

    def decide(self, task: Task) -> bool:
        """Run `check` on one record and record the verdict; True when kept."""
        reason = self.check(task)
        if reason:
            reason, dup = reason if isinstance(reason, tuple) else (reason, None)
            task.drop(reason, filter=self.name, duplicate_of=dup)
            return False
        return True

    def apply(self, tasks: Iterable[Task]) -> list[Task]:
        out = []
        pbar = self.progress
        for t in tasks:
            if t.kept:
                self.decide(t)
                if pbar is not None:
                    pbar.update(1)
            out.append(t)
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
