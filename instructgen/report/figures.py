"""What the report shows, computed from a RunData: the filter funnel, distributions, the verb-object picture,
training curves, and record samples. Each figure is an SVG string plus a caption that says how it was made;
a figure whose data is absent is not drawn and a note says why.

Over 400 lines because every figure of the page is here, each next to the data it reads.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..records import Task
from . import svg
from .collect import BENCH_FLAG, BENCH_METRICS, RunData, Stage, benchmark_table
from .text import VERB_OBJECT_METHOD, TokenCounter, flesch_reading_ease, token_counter, verb_object, word_count

# Chain order of the known filters of `gen instructions` (bootstrap.instruction_filters); other stages' filters
# follow in the order their first rejection appears.
FILTER_ORDER = ("parse", "length", "blacklist", "first_char", "prefix", "rouge_l")
# Config keys that are the thresholds of each `gen instructions` filter.
FILTER_PARAMS = {"parse": ("drop_truncated",), "length": ("min_words", "max_words"), "blacklist": ("blacklist",),
                 "prefix": ("forbidden_prefixes",), "rouge_l": ("rouge_threshold",)}
# Nearest-neighbour similarity scores, with the config key or filter name that holds their threshold.
SIMILARITY_SCORES = ("rouge_l_max", "minhash_jaccard", "embedding_cos_max", "embedding_cosine")
READABILITY = "flesch_reading_ease"
TOKEN_SAMPLE = 2000  # tasks whose examples are tokenized for the token-length figure


@dataclass
class Figure:
    id: str
    title: str
    svg: str
    caption: str
    data: Any = None  # what the page also shows as a table (the verb-object tree)


@dataclass
class Step:
    """One filter of the funnel: records in, drops per reason, records kept, and its thresholds."""

    stage: str
    name: str
    records_in: int
    dropped: dict[str, int]
    params: dict[str, Any] = field(default_factory=dict)
    note: str | None = None

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def kept(self) -> int:
        return self.records_in - self.dropped_total

    @property
    def reasons_text(self) -> str:
        return ", ".join(f"{r}: {n:,}" for r, n in sorted(self.dropped.items(), key=lambda x: -x[1])) or "-"

    @property
    def thresholds_text(self) -> str:
        text = "; ".join(f"{k}={v}" for k, v in self.params.items()) + (f" ({self.note})" if self.note else "")
        return text or "-"


def funnel_steps(run: RunData) -> list[Step]:
    """Every filter step of every data stage, in order."""
    steps: list[Step] = []
    for kind in ("instructions", "instances"):
        st = run.stages.get(kind)
        if st is None or not (st.kept or st.rejected):
            continue
        by_filter: dict[str, Counter] = defaultdict(Counter)
        for t in st.rejected:
            by_filter[t.verdict.filter or "unknown"][t.verdict.reason or "unknown"] += 1
        order = [f for f in FILTER_ORDER if f in by_filter] + [f for f in by_filter if f not in FILTER_ORDER]
        n = len(st.kept) + len(st.rejected)
        if not order:
            steps.append(Step(kind, "all filters", n, {}))
        for name in order:
            params = {k: _param(st.config[k]) for k in FILTER_PARAMS.get(name, ()) if k in st.config}
            steps.append(Step(kind, name, n, dict(by_filter[name].most_common()), params))
            n -= sum(by_filter[name].values())
    cur = run.stages.get("curated")
    if cur is not None and cur.stats:
        for f in cur.stats.get("filters", []):
            steps.append(Step("curated", str(f.get("name")), int(f.get("records_in", 0)),
                              {str(k): int(v) for k, v in (f.get("dropped") or {}).items()},
                              {k: _param(v) for k, v in (f.get("params") or {}).items()}, f.get("note")))
    return steps


def _param(v: Any) -> Any:
    if isinstance(v, list) and len(v) > 6:
        return f"{len(v)} entries: " + ", ".join(map(str, v[:6])) + ", ..."
    return v


def build_figures(run: RunData, tokens: TokenCounter | None = None) -> tuple[list[Figure], list[str]]:
    """All figures the run's data allows, and notes on those it does not."""
    figs: list[Figure] = []
    notes: list[str] = []
    for make in (_funnel, _lengths, _readability, _similarity, _verbs, _tokens, _loss, _before_after,
                 _benchmark):
        try:
            made, why = make(run, tokens) if make is _tokens else make(run)
        except ValueError as e:  # an empty series slipped through; say so rather than draw a blank plot
            made, why = [], f"{make.__name__.strip('_')}: {e}"
        figs += made
        if why:
            notes.append(why)
    return figs, notes


def _funnel(run: RunData):
    steps = funnel_steps(run)
    if not steps:
        return [], "filter funnel: no stage holds kept or rejected records"
    rows = [(f"{s.stage}: {s.name}", [s.kept, s.dropped_total]) for s in steps]
    notes = [f"-{s.dropped_total:,} ({100 * s.dropped_total / max(1, s.records_in):.0f}%)" if s.dropped_total else
             "none dropped" for s in steps]
    out = svg.hbars(rows, "Filter funnel", "records", segment_names=("kept", "dropped"),
                    colors=(svg.KEPT, svg.DROPPED), notes=notes)
    return [Figure("funnel", "Filter funnel", out,
                   "Each bar is one filter step: the records it saw, split into kept and dropped. Reasons and "
                   "thresholds are in the funnel table.")], None


def _final_records(run: RunData) -> tuple[Stage | None, list[Task]]:
    st = run.final()
    return st, (st.kept if st else [])


def _lengths(run: RunData):
    st, tasks = _final_records(run)
    if not tasks:
        return [], "lengths: no kept records"
    figs = []
    instr = [word_count(t.instruction) for t in tasks]
    figs.append(Figure("len-instruction", "Instruction length", svg.histogram(
        [("instructions", instr)], "Instruction length (words)", "words per instruction", "instructions"),
        f"Words per kept instruction ({st.kind} stage, {len(instr):,} instructions; "
        f"median {statistics.median(instr):g}, max {max(instr)})."))
    inputs = [word_count(i.input) for t in tasks for i in t.instances]
    outputs = [word_count(i.output) for t in tasks for i in t.instances]
    if not outputs:
        return figs, f"input and output lengths: the {st.kind} stage has no instances yet"
    note = None
    with_input = sum(1 for t in tasks for i in t.instances if i.input.strip())
    if with_input:
        figs.append(Figure("len-input", "Input length", svg.histogram(
            [("inputs", inputs)], "Input length (words)", "words per input", "instances"),
            f"Words per instance input; {with_input:,} of {len(inputs):,} instances have an input "
            f"({100 * with_input / len(inputs):.0f}%; empty inputs count as 0)."))
    else:
        note = f"input length: none of the {len(inputs):,} instances has an input"
    figs.append(Figure("len-output", "Output length", svg.histogram(
        [("outputs", outputs)], "Output length (words)", "words per output", "instances"),
        f"Words per instance output ({len(outputs):,} instances; median {statistics.median(outputs):g}, "
        f"max {max(outputs)})."))
    return figs, note


def _scored(st: Stage | None, key: str) -> tuple[list[float], list[float]]:
    if st is None:
        return [], []
    kept = [float(t.scores[key]) for t in st.kept if _num(t.scores.get(key))]
    dropped = [float(t.scores[key]) for t in st.rejected if _num(t.scores.get(key))]
    return kept, dropped


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _series(kept, dropped):
    return [("kept", kept)] + ([("dropped", dropped)] if dropped else [])


def _score_keys(stages: Iterable[Stage | None], match) -> list[str]:
    """Score names carried by the records of these stages (first 200 kept and dropped of each) that `match`."""
    keys: list[str] = []
    for st in stages:
        if st is not None:
            for t in st.kept[:200] + st.rejected[:200]:
                keys += [k for k in t.scores if k not in keys and match(k)]
    return keys


def _readability(run: RunData):
    st = run.stages.get("curated")
    # gen curate's readability filter stores reading_ease_<field>; flesch_reading_ease is accepted too
    keys = _score_keys([st], lambda k: k == READABILITY or k.startswith("reading_ease"))
    series = [(k, *_scored(st, k)) for k in keys]
    series = [x for x in series if x[1] or x[2]]
    thr = None
    if series:
        made = [(key, kept, dropped, f"`{key}` as scored by gen curate (kept records, and the records any "
                                     f"curate filter dropped in red)") for key, kept, dropped in series]
        for f in (st.stats or {}).get("filters", []):
            v = (f.get("params") or {}).get("min_reading_ease")
            thr = float(v) if _num(v) else thr
    else:
        st, tasks = _final_records(run)
        texts = [i.output for t in tasks for i in t.instances if i.output.strip()]
        what = "instance outputs"
        if not texts:
            texts, what = [t.instruction for t in tasks], "instructions"
        kept = [v for v in map(flesch_reading_ease, texts) if v is not None]
        made = [(READABILITY, kept, [], f"Flesch reading ease of the {what}, computed by the report (vowel-group "
                                        f"syllable count; gen curate did not score readability)")]
    figs = []
    for key, kept, dropped, how in made:
        if not kept and not dropped:
            continue
        allv = kept + dropped
        out = svg.histogram(_series(kept, dropped), f"Readability: {key}", "Flesch reading ease (higher = easier)",
                            colors=(svg.KEPT, svg.DROPPED), clip_q=None, lo=max(-50.0, min(allv)),
                            hi=min(121.0, max(allv)),
                            threshold=(thr, f"min {thr:g}") if thr is not None else None)
        fid = "readability" if not figs else f"readability-{key.replace('_', '-')}"
        figs.append(Figure(fid, "Readability", out,
                           f"{how}. 60-70 is plain English; below 30 is very hard. Values outside -50..121 fall "
                           f"in the end bins." + (f" Dashed line: the filter's minimum {thr:g}." if thr is not None
                                                  else "")))
    return figs, (None if figs else "readability: no text to score")


def _similarity(run: RunData):
    figs = []
    keys = list(SIMILARITY_SCORES)
    keys += [k for k in _score_keys(run.stages.values(), lambda k: any(w in k for w in ("cos", "jaccard", "rouge"))
                                    and not k.endswith("_mean")) if k not in keys]
    for key in keys:
        # one figure per score, from the stage that decided on it (the first whose dropped records carry it),
        # else the most processed stage that has it: later stages copy the scores of earlier ones
        have = [(k, *_scored(run.stages.get(k), key)) for k in ("instructions", "instances", "curated")]
        have = [h for h in have if h[1] or h[2]]
        if not have:
            continue
        kind, kept, dropped = next((h for h in have if h[2]), have[-1])
        # -1 marks a record with nothing earlier to compare with (gen curate's embedding filter, first record)
        alone = sum(v == -1.0 for v in kept + dropped)
        kept, dropped = [v for v in kept if v != -1.0], [v for v in dropped if v != -1.0]
        if not kept and not dropped:
            continue
        thr = _threshold(run, kind, key)
        out = svg.histogram(_series(kept, dropped), f"Nearest-neighbour similarity: {key}",
                            f"{key} (to the most similar other record)", colors=(svg.KEPT, svg.DROPPED),
                            clip_q=None, threshold=(thr, f"threshold {thr:g}") if thr is not None else None)
        figs.append(Figure(f"sim-{key.replace('_', '-')}", f"Similarity ({key})", out,
                           f"`{key}` of every {kind} record that has it: the score against its nearest "
                           f"neighbour (kept records, and dropped ones in red)."
                           + (f" Dashed line: the drop threshold {thr:g}." if thr is not None else "")
                           + (f" {alone} record(s) with nothing earlier to compare with (score -1) left out."
                              if alone else "")))
    if not figs:
        return [], "nearest-neighbour similarity: no record carries a similarity score"
    return figs, None


def _threshold(run: RunData, kind: str, key: str) -> float | None:
    st = run.stages.get(kind)
    if st is None:
        return None
    if key == "rouge_l_max" and _num(st.config.get("rouge_threshold")):
        return float(st.config["rouge_threshold"])
    if st.stats:  # a curate filter whose name shares the score's first word ("minhash" -> minhash_jaccard)
        for f in st.stats.get("filters", []):
            params = f.get("params") or {}
            if str(f.get("name", "")).split("_")[0] == key.split("_")[0] and _num(params.get("threshold")):
                return float(params["threshold"])
    return None


def verb_object_tree(instructions: Iterable[str], top_verbs: int = 20, top_objects: int = 4):
    """([(verb, count, [(object, count), ...]), ...], pairs found, instructions seen)."""
    verbs: Counter = Counter()
    objects: dict[str, Counter] = defaultdict(Counter)
    n = pairs = 0
    for text in instructions:
        n += 1
        v, o = verb_object(text)
        if v is None:
            continue
        verbs[v] += 1
        if o is not None:
            objects[v][o] += 1
            pairs += 1
    tree = [(v, c, objects[v].most_common(top_objects)) for v, c in verbs.most_common(top_verbs)]
    return tree, pairs, n


def _verbs(run: RunData):
    st, tasks = _final_records(run)
    if not tasks:
        return [], "verb-object diversity: no kept instructions"
    tree, pairs, n = verb_object_tree(t.instruction for t in tasks)
    if not tree:
        return [], "verb-object diversity: no instruction starts with a verb (questions or statements only)"
    shown = sum(c for _, c, _ in tree)
    out = svg.sunburst(tree, "Leading verbs (inner) and their objects (outer)")
    return [Figure("verbs", "Leading verbs and objects", out,
                   f"The {len(tree)} most common leading verbs of the {n:,} kept instructions (covering {shown:,} "
                   f"of them, {100 * shown / n:.0f}%) and each verb's 4 most common objects "
                   f"({pairs:,} verb-object pairs found in all). Method: {VERB_OBJECT_METHOD}", data=tree)], None


def _tokens(run: RunData, tokens: TokenCounter | None):
    st, tasks = _final_records(run)
    if not tasks:
        return [], "token lengths: no kept records"
    train = run.stages.get("train")
    if tokens is None:
        student = next((train.config[k] for k in ("student", "model", "base_model") if train and
                        isinstance(train.config.get(k), str)), "smollm2-135m")
        tokens = token_counter(student)
    from ..examples import iter_examples
    sample = ""
    if len(tasks) > TOKEN_SAMPLE:  # a real tokenizer over every long example would dominate the report's time
        sample = f" (a seeded sample of {TOKEN_SAMPLE:,} of the {len(tasks):,} tasks)"
        tasks = random.Random(0).sample(tasks, TOKEN_SAMPLE)
    examples = list(iter_examples(tasks))
    if examples:
        prompts = tokens.count([e["messages"][0]["content"] for e in examples])
        responses = tokens.count([e["output"] for e in examples])
        totals = [a + b for a, b in zip(prompts, responses)]
        what = (f"Tokens per training example, user turn + response{sample} ({len(totals):,} examples; user "
                f"turn median {statistics.median(prompts):g}, response median {statistics.median(responses):g})")
    else:
        totals = tokens.count([t.instruction for t in tasks])
        what = f"Tokens per instruction{sample} ({len(totals):,} instructions; the stage has no instances)"
    limit = next((train.config[k] for k in ("max_seq_length", "max_length", "max_seq_len")
                  if train and _num(train.config.get(k))), None)
    thr = (float(limit), f"max length {limit}") if limit else None
    over = f" {sum(t > limit for t in totals):,} examples exceed the training max length {limit}." if limit else ""
    out = svg.histogram([("examples", totals)], "Token lengths", "tokens", "examples", threshold=thr)
    return [Figure("tokens", "Token lengths", out,
                   f"{what}, counted with {tokens.name}; chat-template tokens not included. "
                   f"p95 {svg.quantile(totals, 0.95):g}, max {max(totals)}.{over}")], None


def _loss(run: RunData):
    tr = run.stages.get("train")
    if tr is None:
        return [], None  # the missing stage is already listed
    pts = [(r["step"], r["loss"]) for r in tr.train_log if _num(r.get("step")) and _num(r.get("loss"))]
    if not pts:
        return [], "training loss: train/train_log.jsonl has no (step, loss) rows"
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    series = [("loss", xs, ys)]
    widths = [1.2]
    if len(ys) >= 20:  # a running mean shows the trend through per-step noise
        w = max(5, len(ys) // 20)
        series.append((f"mean of {w}", xs[w - 1:], [sum(ys[i - w + 1:i + 1]) / w for i in range(w - 1, len(ys))]))
        widths.append(2.4)
    evals = [(r["step"], r["eval_loss"]) for r in tr.train_log if _num(r.get("step")) and _num(r.get("eval_loss"))]
    if evals:
        series.append(("eval loss", [e[0] for e in evals], [e[1] for e in evals]))
        widths.append(2.0)
    out = svg.lines(series, "Training loss", "step", "loss", colors=("#9ab6d6", svg.KEPT, svg.PALETTE[1]),
                    widths=widths)
    return [Figure("loss", "Training loss", out,
                   f"Training loss per logged step ({len(pts)} points, from {ys[0]:.3g} to {ys[-1]:.3g}).")], None


def _before_after(run: RunData):
    tr = run.stages.get("train")
    if tr is None:
        return [], None
    before, after = tr.metrics.get("before") or {}, tr.metrics.get("after") or {}
    cats = [k for k in ("loss", "perplexity") if _num(before.get(k)) and _num(after.get(k))]
    if not cats:
        return [], "before/after evaluation: train/metrics.json has no before and after loss"
    figs = []
    for k in cats:
        out = svg.grouped_bars(["held-out " + k], [("before", [before[k]]), ("after", [after[k]])],
                               f"Evaluation {k}, before and after", k, colors=(svg.DROPPED, svg.KEPT),
                               width=360, height=280)
        change = 100 * (after[k] - before[k]) / before[k] if before[k] else float("nan")
        figs.append(Figure(f"eval-{k}", f"Evaluation {k}", out,
                           f"Student {k} on the held-out examples before and after tuning "
                           f"({before[k]:.4g} -> {after[k]:.4g}, {change:+.1f}%)."))
    return figs, None


def _benchmark(run: RunData):
    tr = run.stages.get("train")
    if tr is None:
        return [], None
    if not tr.metrics or "benchmark" not in tr.metrics:
        return [], (f"benchmark before/after: the training stage measured none ({BENCH_FLAG} measures one)"
                    if tr.metrics else None)  # no metrics.json at all: the training section says so
    t = benchmark_table(tr.metrics, run.root)
    if not t.present:
        return [], f"benchmark before/after: {t.about}"
    series = [(phase, [0.0 if v is None else v for v in t.values[phase]]) for phase in ("before", "after", "floor")
              if any(v is not None for v in t.values[phase])]
    if not series:
        return [], "benchmark before/after: train/metrics.json holds no benchmark number to draw"
    labels = [BENCH_METRICS.get(k, (k, k))[1] for k in t.keys]
    out = svg.grouped_bars(labels, series, "Benchmark, before and after training", "score (0-1)",
                           colors=(svg.DROPPED, svg.KEPT, "#BAB0AC"), width=max(360, 150 * len(labels) + 60),
                           height=300)
    gaps = any(v is None for phase, _ in series for v in t.values[phase])
    return [Figure("benchmark", "Benchmark before and after", out,
                   f"{t.about} Before: the base student; after: with the trained adapter; floor: a fixed trivial "
                   f"answer on the same prompts." + (" A missing number is drawn as 0 (- in the table)." if gaps
                                                     else ""))], None


def samples(run: RunData, n_kept: int = 8, n_dropped: int = 12,
            seed: int = 0) -> tuple[list[Task], list[tuple[str, Task]]]:
    """A seeded sample of kept records (final stage) and of dropped records, one per reason first (most
    frequent reasons first) across every stage, so each reason shows an example."""
    rng = random.Random(seed)
    st, tasks = _final_records(run)
    kept = rng.sample(tasks, min(n_kept, len(tasks)))
    by_reason: dict[tuple[str, str], list[Task]] = defaultdict(list)
    for kind, s in run.stages.items():
        for t in s.rejected:
            by_reason[(kind, t.verdict.reason or "unknown")].append(t)
    order = sorted(by_reason, key=lambda k: -len(by_reason[k]))
    dropped: list[tuple[str, Task]] = []
    for key in order:
        if len(dropped) < n_dropped:
            dropped.append((key[0], rng.choice(by_reason[key])))
    rest = [(k[0], t) for k in order for t in by_reason[k]]
    rng.shuffle(rest)
    for pick in rest:
        if len(dropped) >= n_dropped:
            break
        if all(pick[1] is not d[1] for d in dropped):
            dropped.append(pick)
    return kept, dropped
