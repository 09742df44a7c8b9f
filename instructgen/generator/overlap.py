"""`gen instructions` on a teacher that streams (the embedded one): batches overlap on one decoder.

Batch b is queued once batch b - 1 - pool_lag is written, so its prompts take the rows the last long completions
of the batch before leave idle. Each batch is turned into records in completion order and written whole, so a
run writes what the one-batch loop in bootstrap.py writes with the same pool_lag (tests/generator/test_stream.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass

from ..config import budget_spent
from .bootstrap import Run, completion_records, count_completion, prepare_batch
from .teachers import BudgetReached, Sampling


@dataclass
class _Flight:
    """A batch on a streaming teacher: its prompts, rows, and the records of its completions so far."""
    idx: int
    shown: list
    prompts: list
    sampling: Sampling
    rows: list
    created: str
    done: int = 0  # completions turned into records, in order
    records: list = dataclasses.field(default_factory=list)
    cands: dict = dataclasses.field(default_factory=dict)  # completion index -> candidates it parses into
    outs: dict = dataclasses.field(default_factory=dict)  # completion index -> its Completion, once finished

    def completion(self, dec, j: int):
        """Row j's completion (decoded once: the queueing estimate and the records both read it)."""
        if j not in self.outs:
            self.outs[j] = dec.completion(self.rows[j])
        return self.outs[j]


def streams(run: Run, recipe) -> bool:
    """Whether the batches go through `stream_batches`: a teacher that streams, a list recipe (Self-Instruct,
    Alpaca) and a pool lag that lets two batches overlap."""
    return (run.cfg.pool_lag >= 1 and "stream" in getattr(run.teacher, "supports", ())
            and not hasattr(recipe, "batch"))


def stream_batches(run: Run, recipe, batch_idx: int, max_batches: int, write) -> int:
    """Batches `batch_idx, ...` on one streaming decoder, each written (`write(records, idx)`) in order as soon
    as all its completions are in; returns the next batch index. Batch b is queued once batch b - 1 - pool_lag
    is written (its prompts are sampled from that pool, so it can be queued then and no earlier), so when a batch
    is down to its last long rows, the next batch's prompts take the freed rows. The records are those the
    one-batch-at-a-time loop writes with the same pool_lag: completions do not depend on which rows share a
    step, and each batch is turned into records in completion order. Once `num` is kept, rows still running
    are cancelled (their tokens are counted). A spent budget stops queueing; the batches already queued are
    finished and written, then BudgetReached is raised. With a budget, batches do not overlap: each is
    queued once those before it are in, so the run stops at the batch the one-batch loop stops at."""
    cfg, teacher = run.cfg, run.teacher
    on_tokens = run.progress.on_tokens if run.progress is not None else None
    dec = teacher.stream(run.sampling, on_tokens=on_tokens)
    charge = getattr(teacher, "charge", None)
    flights: deque[_Flight] = deque()
    cut: list[_Flight] = []  # a batch written before all its completions were used (num reached)
    spent: str | None = None
    queued = batch_idx

    def count(c) -> None:
        count_completion(c, run.tokens, run.rate)
        if charge is not None:
            charge(c.prompt_tokens, c.completion_tokens, 1 if c.prompt_tokens or c.completion_tokens else 0)

    budgeted = cfg.max_tokens is not None or cfg.max_cost is not None
    used = [0, 0, 7]  # candidates of the completions turned into records this session, how many were kept,
    # and the most candidates one completion parsed into (at least 7: Self-Instruct stops at item 16)

    def parsed(f: _Flight, j: int) -> int:
        if j not in f.cands:
            n = f.cands[j] = len(recipe.parse(run.templates[0], f.completion(dec, j).text, len(f.shown[j])))
            used[2] = max(used[2], n)
        return f.cands[j]

    def wanted() -> bool:
        """Whether to queue another batch now: only when rows would otherwise idle, and unless the batches in
        flight may still reach num. A finished row counts its parsed candidates, a running one the most any
        completion parsed into so far, at least 7 (Self-Instruct stops at item 16), times the share
        of candidates kept so far. This decides only when a batch starts (a small run does not prefill a batch
        it will not use; a large one keeps every row busy), never what it holds."""
        if not flights:
            return True
        if dec.free == 0 or budgeted:  # a budget is checked as the batch loop does: once the batches before are in
            return False
        done = [parsed(f, j) for f in flights for j in range(f.done, len(f.rows)) if f.rows[j].finish]
        running = sum(len(f.rows) - f.done for f in flights) - len(done)
        share = used[1] / used[0] if used[0] else 0.9
        return len(run.machine) + share * (sum(done) + used[2] * running) < cfg.num

    try:
        while len(run.machine) < cfg.num:
            while spent is None and queued < max_batches and queued <= batch_idx + cfg.pool_lag and wanted():
                spent = budget_spent(cfg, run.tokens["prompt"], run.tokens["completion"])
                if spent is None:
                    shown, prompts, sampling = prepare_batch(run, recipe, queued)
                    rows = dec.add([teacher.encode(teacher.render(p)) for p in prompts], seed=sampling.seed)
                    flights.append(_Flight(queued, shown, prompts, sampling, rows,
                                           time.strftime("%Y-%m-%dT%H:%M:%S%z")))
                    queued += 1
            if not flights:
                if spent is not None:
                    raise BudgetReached(spent)
                return batch_idx  # max_batches reached: the caller says so
            f = flights[0]
            while f.done < len(f.rows) and f.rows[f.done].finish and len(run.machine) < cfg.num:
                c = f.completion(dec, f.done)
                count(c)
                kept, n = len(run.machine), parsed(f, f.done)
                f.records += completion_records(run, recipe, f.idx, f.done, f.prompts[f.done], c,
                                                f.shown[f.done], f.sampling, f.created)
                f.done += 1
                used[0], used[1] = used[0] + n, used[1] + len(run.machine) - kept
            if f.done == len(f.rows) or len(run.machine) >= cfg.num:
                write(f.records, f.idx)
                flights.popleft()
                if f.done < len(f.rows):
                    cut.append(f)
                batch_idx += 1
                continue
            dec.step()
    finally:
        dec.cancel()
        for f in cut + list(flights):  # every token the teacher spent counts, also on completions left unused
            for j in range(f.done, len(f.rows)):
                count(f.completion(dec, j))
    return batch_idx
