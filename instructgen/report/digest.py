"""One pass over a stage's records into what the report draws: counts, score columns, lengths, drop reasons,
instance-level drops, and seeded samples. Memory is a few numbers per record plus fixed-size samples, so a
million-record run costs seconds, and the page (binned figures, sampled rows) stays the same size.

Samples are reservoir samples (Vitter's algorithm R) with a fixed seed over the records in file order: the same
run always gives the same page.
"""

from __future__ import annotations

import random
from array import array
from collections import Counter
from dataclasses import dataclass, field

from ..records import Task
from .collect import RunData, Stage

KEPT_SAMPLE = 2000  # kept tasks kept whole: token lengths, readability fallback, sample rows
TEXT_SAMPLE = 20000  # kept instructions for the leading-verb picture
PER_REASON = 4  # dropped records kept whole per (filter, reason)


@dataclass
class StageDigest:
    kind: str
    kept: int = 0
    rejected: int = 0
    instances: int = 0  # instances of the kept tasks
    with_input: int = 0  # of those, instances with a non-empty input
    scores: dict[str, tuple[array, array]] = field(default_factory=dict)  # score -> (kept values, dropped)
    instruction_words: array = field(default_factory=lambda: array("l"))  # per kept task
    input_words: array = field(default_factory=lambda: array("l"))  # per instance of a kept task
    output_words: array = field(default_factory=lambda: array("l"))
    drops: dict[str, Counter] = field(default_factory=dict)  # filter -> reason -> records, first-seen order
    instance_drops: Counter = field(default_factory=Counter)  # reason -> instances (meta.dropped_instances)
    instances_seen: int = 0  # instances kept + dropped by the instance rules, over every task
    kept_sample: list[Task] = field(default_factory=list)
    text_sample: list[str] = field(default_factory=list)  # kept instructions
    dropped_sample: dict[tuple[str, str], list[Task]] = field(default_factory=dict)  # (filter, reason) -> records
    reason_counts: Counter = field(default_factory=Counter)  # (filter, reason) -> records

    def scored(self, key: str) -> tuple[array, array]:
        return self.scores.get(key, (array("d"), array("d")))


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def digest_stage(st: Stage, seed: int = 0) -> StageDigest:
    """The digest of one data stage (one pass over `st.iter_records()`)."""
    d = StageDigest(st.kind)
    rk, rt, rd = random.Random(seed), random.Random(seed + 1), random.Random(seed + 2)
    seen_reason: Counter = Counter()
    for t in st.iter_records():
        for key, v in t.scores.items():
            if _num(v):
                if key not in d.scores:
                    d.scores[key] = (array("d"), array("d"))
                d.scores[key][0 if t.kept else 1].append(float(v))
        dropped_inst = t.meta.get("dropped_instances") if isinstance(t.meta, dict) else None
        if isinstance(dropped_inst, list):
            for x in dropped_inst:
                if isinstance(x, dict):
                    d.instance_drops[str(x.get("reason") or "unknown")] += 1
                    d.instances_seen += 1
        d.instances_seen += len(t.instances)
        if t.kept:
            n = d.kept
            d.kept += 1
            d.instruction_words.append(len(t.instruction.split()))
            for i in t.instances:
                d.instances += 1
                d.with_input += bool(i.input.strip())
                d.input_words.append(len(i.input.split()))
                d.output_words.append(len(i.output.split()))
            _reservoir(d.kept_sample, t, n, KEPT_SAMPLE, rk)
            _reservoir(d.text_sample, t.instruction, n, TEXT_SAMPLE, rt)
        else:
            d.rejected += 1
            flt, reason = t.verdict.filter or "unknown", t.verdict.reason or "unknown"
            d.drops.setdefault(flt, Counter())[reason] += 1
            key = (flt, reason)
            d.reason_counts[key] += 1
            _reservoir(d.dropped_sample.setdefault(key, []), t, seen_reason[key], PER_REASON, rd)
            seen_reason[key] += 1
    return d


def _reservoir(sample: list, item, n_seen: int, size: int, rng: random.Random) -> None:
    if n_seen < size:
        sample.append(item)
    else:
        j = rng.randrange(n_seen + 1)
        if j < size:
            sample[j] = item


def digests(run: RunData) -> dict[str, StageDigest]:
    """The digest of every data stage of the run, made once and kept on the RunData."""
    cache = run.digests
    for kind, st in run.stages.items():
        if kind != "train" and kind not in cache:
            cache[kind] = digest_stage(st)
    return cache


def texts_of(run: RunData, ids: set[str]) -> dict[str, str]:
    """{id: instruction} for these record ids, from any stage (one streaming pass, only when asked)."""
    found: dict[str, str] = {}
    if not ids:
        return found
    for st in run.stages.values():
        if st.kind == "train":
            continue
        if st.loaded:
            records = st.iter_records()
        else:  # only parse lines that name a wanted id
            records = _matching(st, ids)
        for t in records:
            if t.id in ids and t.id not in found:
                found[t.id] = t.instruction
                if len(found) == len(ids):
                    return found
    return found


def _matching(st: Stage, ids: set[str]):
    import json
    for path, _, _ in st.sources:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if any(i in line for i in ids):
                    try:
                        yield Task.from_dict(json.loads(line))
                    except (ValueError, TypeError):
                        continue


def reason_order(ds: dict[str, StageDigest]) -> list[tuple[str, str, str]]:
    """(stage, filter, reason) of every drop reason, most frequent first."""
    keys = [(kind, f, r, n) for kind, d in ds.items() for (f, r), n in d.reason_counts.items()]
    return [(k, f, r) for k, f, r, _ in sorted(keys, key=lambda x: -x[3])]
