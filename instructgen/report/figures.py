"""What the report shows, computed from a RunData: the filter funnel (with instance-level drops), distributions,
the verb-object picture, training curves, and record samples. Each figure is an SVG string (drawn by svg.py with
matplotlib) plus a caption that says how it was made and which records it covers; a figure whose data is absent
is not drawn and a note says why.

Everything is computed from the stage digests (digest.py): one pass per stage, binned figures, sampled rows, so
the page of a million-record run is as large as that of a small one. Thresholds are read from the filter's own
parameters (stats.json `params`, or the generating stage's config), never guessed from a score's name.

Over 400 lines because every figure of the page is here, each next to the data it reads and the caption that
says which records it covers.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..records import Task
from . import svg
from .collect import BENCH_FLAG, BENCH_METRICS, RunData, Stage, benchmark_table
from .digest import TEXT_SAMPLE, StageDigest, digests, reason_order
from .text import (VERB_OBJECT_METHOD, TokenCounter, flesch_reading_ease, leading_boilerplate, token_counter,
                   verb_object)

# Chain order of the known filters of `gen instructions` (bootstrap.instruction_filters); other stages' filters
# follow in the order their first rejection appears.
FILTER_ORDER = ("parse", "length", "blacklist", "first_char", "prefix", "rouge_l")
# Config keys of `gen instructions` that are the thresholds of its filters (when it writes no stats.json).
FILTER_PARAMS = {"parse": ("drop_truncated",), "length": ("min_words", "max_words"), "blacklist": ("blacklist",),
                 "prefix": ("forbidden_prefixes",), "rouge_l": ("rouge_threshold",)}
# score (or score prefix, ending in "_") -> (the filter that writes it, its threshold parameter, drop side). The
# filter is the stats.json entry's "filter" (its registry name; "name" when absent), the threshold that entry's
# params; for `gen instructions` without stats.json, the config key in INSTRUCTION_THRESHOLDS.
SCORE_FILTERS = {"rouge_l_max": ("rouge_l", "threshold", "above"),
                 "minhash_jaccard": ("minhash", "threshold", "above"),
                 "embedding_cos_max": ("embedding", "threshold", "above"),
                 "reading_ease_": ("readability", "min_reading_ease", "below"),
                 "grade_": ("readability", "max_grade", "above"),
                 "grammar_issues_per_100_words_": ("grammar", "max_issues_per_100_words", "above"),
                 "ifd": ("ifd", "threshold", "above"), "judge_rating": ("llm_judge", "min_score", "below")}
# quality scores drawn each as its own figure: score -> what it is
QUALITY_SCORES = {"ifd": "Instruction-Following Difficulty (Cherry LLM: loss of the answer with the instruction "
                         "over without it; at or above 1 the instruction does not help)",
                  "judge_rating": "the LLM judge's 0-5 quality rating (AlpaGasus)"}
INSTRUCTION_THRESHOLDS = {"rouge_l_max": "rouge_threshold"}
SIMILARITY_SCORES = ("rouge_l_max", "minhash_jaccard", "embedding_cos_max")
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
    """One filter of the funnel: records in, drops per reason, records kept, and its thresholds. `unit` is
    "records" (tasks) or "instances" for the instance stage's per-instance rules."""

    stage: str
    name: str
    records_in: int
    dropped: dict[str, int]
    params: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    unit: str = "records"

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
        text = "; ".join(f"{k}={v}" for k, v in self.params.items())
        if self.note:
            text += f" ({self.note})" if text else self.note
        return text or "-"


def _stats_steps(kind: str, stats: dict) -> list[Step]:
    return [Step(kind, str(f.get("name")), int(f.get("records_in", 0)),
                 {str(k): int(v) for k, v in (f.get("dropped") or {}).items()},
                 {k: _param(v) for k, v in (f.get("params") or {}).items()}, f.get("note"))
            for f in stats.get("filters", []) if isinstance(f, dict)]


def funnel_steps(run: RunData) -> list[Step]:
    """Every filter step of every data stage, in order, and the instance stage's per-instance drops."""
    steps: list[Step] = []
    ds = digests(run)
    for kind in ("instructions", "instances"):
        st, d = run.stages.get(kind), ds.get(kind)
        if st is None or d is None or not (d.kept or d.rejected):
            continue
        if st.stats and st.stats.get("filters"):
            steps += _stats_steps(kind, st.stats)
        else:
            order = [f for f in FILTER_ORDER if f in d.drops] + [f for f in d.drops if f not in FILTER_ORDER]
            n = d.kept + d.rejected
            if not order:
                steps.append(Step(kind, "all filters", n, {}))
            for name in order:
                params = {k: _param(st.config[k]) for k in FILTER_PARAMS.get(name, ()) if k in st.config}
                steps.append(Step(kind, name, n, dict(d.drops[name].most_common()), params))
                n -= sum(d.drops[name].values())
        inst = _instance_step(st, d)
        if inst is not None:
            steps.append(inst)
    cur = run.stages.get("curated")
    if cur is not None and cur.stats:
        steps += _stats_steps("curated", cur.stats)
    return steps


def _instance_step(st: Stage, d: StageDigest) -> Step | None:
    """The instances the instance rules dropped inside tasks that may still be kept (meta.dropped_instances;
    summary.json when the records do not carry them)."""
    drops, seen = dict(d.instance_drops.most_common()), d.instances_seen
    by_summary = st.summary.get("instances_dropped_by_reason")
    if not drops and isinstance(by_summary, dict) and by_summary:
        drops = {str(k): int(v) for k, v in by_summary.items() if isinstance(v, int)}
        seen = int(st.summary.get("instances_kept", 0) or 0) + sum(drops.values())
    if not drops:
        return None
    return Step(st.kind, "instance rules (each instance)", seen, drops, unit="instances",
                note="counts are instances, not tasks; a task loses only the instances named")


def _param(v: Any) -> Any:
    if isinstance(v, list) and len(v) > 6:
        return f"{len(v)} entries: " + ", ".join(map(str, v[:6])) + ", ..."
    return v


def build_figures(run: RunData, tokens: TokenCounter | None = None) -> tuple[list[Figure], list[str]]:
    """All figures the run's data allows, and notes on those it does not."""
    figs: list[Figure] = []
    notes: list[str] = []
    for make in (_funnel, _lengths, _readability, _similarity, _quality, _verbs, _tokens, _loss, _before_after,
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
    rows = [(f"{s.stage}: {s.name}", s.kept, s.dropped_total) for s in steps]
    out, log = svg.funnel("funnel", rows, "Filter funnel: kept and dropped per step")
    inst = [s for s in steps if s.unit == "instances"]
    return [Figure("funnel", "Filter funnel", out,
                   "Each filter step: the records it kept (blue) and dropped (red), with the numbers beside the "
                   "bars" + ("; the count axis is logarithmic, so small counts stay visible beside large ones"
                             if log else "") + "." +
                   (f" The row '{inst[0].stage}: {inst[0].name}' counts instances inside tasks "
                    f"({inst[0].dropped_total:,} dropped), not tasks." if inst else "") +
                   " Reasons and thresholds are in the funnel table.")], None


def _final(run: RunData) -> tuple[Stage | None, StageDigest | None]:
    st = run.final()
    return st, (digests(run).get(st.kind) if st else None)


def _lengths(run: RunData):
    st, d = _final(run)
    if d is None or not d.kept:
        return [], "lengths: no kept records"
    figs = []
    instr = list(d.instruction_words)
    h = svg.histogram("len-instruction", [("kept instructions", instr)], "Instruction length", "words",
                      unit="instructions")
    figs.append(Figure("len-instruction", "Instruction length", h.svg,
                       f"Words per kept instruction ({st.kind} stage, all {len(instr):,}; median "
                       f"{statistics.median(instr):g}, max {max(instr)}; the longest 1% share the last bin)."))
    if not d.instances:
        return figs, f"input and output lengths: the {st.kind} stage has no instances yet"
    note = None
    if d.with_input:
        h = svg.histogram("len-input", [("inputs", list(d.input_words))], "Input length", "words",
                          unit="instances")
        figs.append(Figure("len-input", "Input length", h.svg,
                           f"Words per instance input; {d.with_input:,} of {d.instances:,} instances have an input "
                           f"({100 * d.with_input / d.instances:.0f}%; empty inputs count as 0)."))
    else:
        note = f"input length: none of the {d.instances:,} instances has an input"
    outputs = list(d.output_words)
    h = svg.histogram("len-output", [("outputs", outputs)], "Output length", "words", unit="instances")
    figs.append(Figure("len-output", "Output length", h.svg,
                       f"Words per instance output (all {len(outputs):,} instances of the kept tasks; median "
                       f"{statistics.median(outputs):g}, max {max(outputs)})."))
    return figs, note


def score_keys(run: RunData, match) -> list[str]:
    keys: list[str] = []
    for d in digests(run).values():
        keys += [k for k in d.scores if k not in keys and match(k)]
    return keys


def filter_of(key: str) -> tuple[str, str | tuple, str] | None:
    """(filter, threshold parameter, drop side) of the filter that writes score `key`."""
    if key in SCORE_FILTERS:
        return SCORE_FILTERS[key]
    return next((v for k, v in SCORE_FILTERS.items() if k.endswith("_") and key.startswith(k)), None)


def threshold(run: RunData, kind: str, key: str) -> tuple[float, str] | None:
    """(value, where it comes from) of the threshold that decided on score `key` in stage `kind`: the params
    of that stage's stats.json entry for the filter that writes the score (its last such step), else, for
    `gen instructions`, its config."""
    st = run.stages.get(kind)
    spec = filter_of(key)
    if st is None or spec is None:
        return None
    name, param, _ = spec
    found = None
    for f in (st.stats or {}).get("filters", []):
        if isinstance(f, dict) and (f.get("filter") or f.get("name")) == name:
            v = (f.get("params") or {}).get(param)
            if _num(v):
                found = (float(v), f"{kind} step {f.get('name')}: {param}")
    if found is None and kind == "instructions" and key in INSTRUCTION_THRESHOLDS:
        v = st.config.get(INSTRUCTION_THRESHOLDS[key])
        if _num(v):
            found = (float(v), f"instructions config {INSTRUCTION_THRESHOLDS[key]}")
    return found


def _keep_top(run: RunData, kind: str, key: str) -> str | None:
    """The budget (`keep_top`) of the step that writes score `key`, as text ("500", "10% of its input")."""
    spec = filter_of(key)
    for f in (run.stages[kind].stats or {}).get("filters", []) if spec else []:
        if isinstance(f, dict) and (f.get("filter") or f.get("name")) == spec[0]:
            v = (f.get("params") or {}).get("keep_top")
            if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
                return f"{v:,}"
            if isinstance(v, float) and 0 < v < 1:
                return f"{100 * v:g}% of its input"
    return None


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def coverage(d: StageDigest, key: str) -> str:
    """Which records a score figure covers, e.g. "12 of 30 kept and 5 of 5 dropped records"."""
    k, r = d.scored(key)
    text = f"{len(k):,} of {d.kept:,} kept" + (f" and {len(r):,} of {d.rejected:,} dropped" if d.rejected else "")
    missing = []
    if len(k) < d.kept:
        missing.append(f"{d.kept - len(k):,} kept")
    if len(r) < d.rejected:
        missing.append(f"{d.rejected - len(r):,} dropped")
    text += f" records of the {d.kind} stage"
    if missing:
        text += f" ({' and '.join(missing)} carry no `{key}` and are not in it"
        text += ": the chart shows dropped records only)" if not len(k) and d.kept else ")"
    return text


def _threshold_caption(thr: tuple[float, str] | None, where: str | None) -> str:
    if thr is None:
        return " No threshold: the filter's parameters name none."
    v, src = thr
    if where == "off":
        return (f" The threshold {v:g} ({src}) lies far outside the data: an arrow at the axis edge marks its "
                f"side.")
    return (f" Dashed line: the threshold {v:g} ({src})" +
            (", outside the data; the axis is widened to show it." if where == "widened" else "."))


def _score_figure(run: RunData, fid: str, title: str, key: str, kind: str, xlabel: str, how: str,
                  lo: float | None = None, hi: float | None = None, skip: float | None = None):
    d = digests(run)[kind]
    kept, dropped = (list(a) for a in d.scored(key))
    alone = 0
    if skip is not None:  # a marker value, not a score (-1: nothing earlier to compare with)
        alone = sum(v == skip for v in kept + dropped)
        kept, dropped = [v for v in kept if v != skip], [v for v in dropped if v != skip]
    if not kept and not dropped:
        return None
    thr = threshold(run, kind, key)
    label = f"threshold {thr[0]:g}" if thr else ""
    series = ([("kept", kept)] if kept else []) + ([("dropped", dropped)] if dropped else [])
    colors = ([svg.KEPT] if kept else []) + [svg.DROPPED]
    h = svg.histogram(fid, series, title, xlabel, colors=colors, clip_q=None, lo=lo, hi=hi,
                      threshold=(thr[0], label) if thr else None)
    top = _keep_top(run, kind, key)
    cap = (f"{how}. Covers {coverage(d, key)}." + _threshold_caption(thr, h.threshold) +
           (f" The step also keeps only the best {top} (keep_top), whatever the threshold." if top else "") +
           (f" {alone:,} record(s) with nothing earlier to compare with (score {skip:g}) left out." if alone else ""))
    return Figure(fid, title, h.svg, cap)


def _readability(run: RunData):
    keys = [k for k in score_keys(run, lambda k: k == READABILITY or k.startswith("reading_ease"))]
    figs = []
    for key in keys:
        kind = _deciding_stage(run, key)
        f = _score_figure(run, "readability" if not figs else f"readability-{key.replace('_', '-')}",
                          f"Readability: {key}", key, kind, "Flesch reading ease (higher = easier)",
                          f"`{key}` as scored by gen {run.stages[kind].command} (kept and dropped records in "
                          f"separate panels); 60-70 is plain English, below 30 very hard; values outside -50..121 "
                          f"fall in the end bins", lo=-50.0, hi=121.0)
        if f is not None:
            figs.append(f)
    if figs:
        return figs, None
    st, d = _final(run)
    if d is None:
        return [], "readability: no text to score"
    texts = [i.output for t in d.kept_sample for i in t.instances if i.output.strip()]
    what = "instance outputs"
    if not texts:
        texts, what = [t.instruction for t in d.kept_sample], "instructions"
    vals = [v for v in map(flesch_reading_ease, texts) if v is not None]
    if not vals:
        return [], "readability: no text to score"
    sample = (f" of a seeded sample of {len(d.kept_sample):,} of the {d.kept:,} kept tasks"
              if len(d.kept_sample) < d.kept else "")
    h = svg.histogram("readability", [(what, vals)], f"Readability: {READABILITY}",
                      "Flesch reading ease (higher = easier)", unit=what, clip_q=None, lo=-50.0, hi=121.0)
    return [Figure("readability", "Readability", h.svg,
                   f"Flesch reading ease of the {what}{sample}, computed by the report (vowel-group syllable "
                   f"count; gen curate did not score readability). 60-70 is plain English; below 30 is very "
                   f"hard. Values outside -50..121 fall in the end bins.")], None


def _deciding_stage(run: RunData, key: str) -> str:
    """The stage a score figure shows: the first whose dropped records carry the score (the stage that decided
    on it), else the most processed one that has it (later stages copy the scores of earlier ones)."""
    ds = digests(run)
    have = [k for k in ("instructions", "instances", "curated") if k in ds and (len(ds[k].scored(key)[0]) or
                                                                               len(ds[k].scored(key)[1]))]
    return next((k for k in have if len(ds[k].scored(key)[1])), have[-1])


def _similarity(run: RunData):
    figs = []
    keys = list(SIMILARITY_SCORES)
    keys += [k for k in score_keys(run, lambda k: any(w in k for w in ("cos", "jaccard", "rouge"))
                                   and not k.endswith("_mean")) if k not in keys]
    for key in keys:
        if not score_keys(run, lambda k: k == key):
            continue
        kind = _deciding_stage(run, key)
        f = _score_figure(run, f"sim-{key.replace('_', '-')}", f"Nearest-neighbour similarity: {key}", key, kind,
                          f"{key} (to the most similar other record)",
                          f"`{key}` of the {kind} stage: each record's score against its nearest neighbour "
                          f"(kept and dropped records in separate panels)", skip=-1.0)
        if f is not None:
            figs.append(f)
    if not figs:
        return [], "nearest-neighbour similarity: no record carries a similarity score"
    return figs, None


def _quality(run: RunData):
    """One figure per quality score a filter stored (IFD, judge rating); nothing to say when none did."""
    figs = []
    for key, what in QUALITY_SCORES.items():
        if not score_keys(run, lambda k: k == key):
            continue
        kind = _deciding_stage(run, key)
        f = _score_figure(run, f"score-{key.replace('_', '-')}", f"Quality score: {key}", key, kind, key,
                          f"`{key}` of the {kind} stage: {what} (kept and dropped records in separate panels)")
        if f is not None:
            figs.append(f)
    return figs, None


def verb_object_tree(instructions: Iterable[str], top_verbs: int = 20, top_objects: int = 4,
                     boilerplate: tuple[str, ...] | list[str] = ()):
    """([(verb, count, [(object, count), ...]), ...], pairs found, instructions seen)."""
    verbs: Counter = Counter()
    objects: dict[str, Counter] = {}
    n = pairs = 0
    for text in instructions:
        n += 1
        v, o = verb_object(text, boilerplate)
        if v is None:
            continue
        verbs[v] += 1
        if o is not None:
            objects.setdefault(v, Counter())[o] += 1
            pairs += 1
    tree = [(v, c, objects.get(v, Counter()).most_common(top_objects)) for v, c in verbs.most_common(top_verbs)]
    return tree, pairs, n


def _verbs(run: RunData):
    st, d = _final(run)
    if d is None or not d.kept:
        return [], "verb-object diversity: no kept instructions"
    texts = d.text_sample
    boiler = leading_boilerplate(texts)
    tree, pairs, n = verb_object_tree(texts, boilerplate=boiler)
    if not tree:
        return [], "verb-object diversity: no instruction starts with a verb (questions or statements only)"
    shown = sum(c for _, c, _ in tree)
    out = svg.sunburst("verbs", tree, "Leading verbs (inner) and their objects (outer)")
    of = (f"the {n:,} kept instructions" if n == d.kept else
          f"a seeded sample of {n:,} of the {d.kept:,} kept instructions (at most {TEXT_SAMPLE:,} are read)")
    cut = (" Boilerplate that opens many instructions alike was skipped before the verb: " +
           "; ".join(repr(b.strip()) for b in boiler) + "." if boiler else "")
    return [Figure("verbs", "Leading verbs and objects", out,
                   f"The {len(tree)} most common leading verbs of {of} (covering {shown:,} of them, "
                   f"{100 * shown / n:.0f}%) and each verb's 4 most common objects ({pairs:,} verb-object pairs "
                   f"found in all).{cut} Method: {VERB_OBJECT_METHOD}", data=tree)], None


def _tokens(run: RunData, tokens: TokenCounter | None):
    st, d = _final(run)
    if d is None or not d.kept:
        return [], "token lengths: no kept records"
    train = run.stages.get("train")
    if tokens is None:
        student = next((train.config[k] for k in ("student", "model", "base_model") if train and
                        isinstance(train.config.get(k), str)), "smollm2-135m")
        tokens = token_counter(student)
    from ..examples import iter_examples
    tasks = d.kept_sample
    if len(tasks) > TOKEN_SAMPLE:
        tasks = random.Random(0).sample(tasks, TOKEN_SAMPLE)
    sample = (f" (a seeded sample of {len(tasks):,} of the {d.kept:,} tasks)" if len(tasks) < d.kept else "")
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
    h = svg.histogram("tokens", [("examples", totals)], "Token lengths", "tokens", unit="examples", threshold=thr)
    where = ("" if thr is None else " Dashed line: the training max length" +
             (" (outside the data; the axis is widened to show it)." if h.threshold == "widened" else
              " (far beyond the data: marked by an arrow at the axis edge)." if h.threshold == "off" else "."))
    return [Figure("tokens", "Token lengths", h.svg,
                   f"{what}, counted with {tokens.name}; chat-template tokens not included. "
                   f"p95 {svg.quantile(totals, 0.95):g}, max {max(totals)}.{over}{where}")], None


def _loss(run: RunData):
    tr = run.stages.get("train")
    if tr is None:
        return [], None  # the missing stage is already listed
    pts = [(r["step"], r["loss"]) for r in tr.train_log if _num(r.get("step")) and _num(r.get("loss"))]
    if not pts:
        return [], "training loss: train/train_log.jsonl has no (step, loss) rows"
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    series = [("loss", xs, ys)]
    widths = [1.0]
    if len(ys) >= 20:  # a running mean shows the trend through per-step noise
        w = max(5, len(ys) // 20)
        series.append((f"mean of {w}", xs[w - 1:], [sum(ys[i - w + 1:i + 1]) / w for i in range(w - 1, len(ys))]))
        widths.append(2.2)
    evals = [(r["step"], r["eval_loss"]) for r in tr.train_log if _num(r.get("step")) and _num(r.get("eval_loss"))]
    if evals:
        series.append(("eval loss", [e[0] for e in evals], [e[1] for e in evals]))
        widths.append(1.8)
    out = svg.lines("loss", series, "Training loss", "step", "loss", colors=("#9ab6d6", svg.KEPT, svg.PALETTE[1]),
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
        out = svg.grouped_bars(f"eval-{k}", ["held-out " + k], [("before", [before[k]]), ("after", [after[k]])],
                               f"Evaluation {k}, before and after", k, colors=(svg.DROPPED, svg.KEPT),
                               width=3.6, height=2.8)
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
    out = svg.grouped_bars("benchmark", labels, series, "Benchmark, before and after training", "score (0-1)",
                           colors=(svg.DROPPED, svg.KEPT, svg.GREY), width=max(4.2, 1.5 * len(labels) + 1.4),
                           height=3.0)
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
    st, d = _final(run)
    pool = d.kept_sample if d else []
    kept = rng.sample(pool, min(n_kept, len(pool)))
    ds = digests(run)
    order = reason_order(ds)
    dropped: list[tuple[str, Task]] = []
    for kind, f, r in order:
        if len(dropped) < n_dropped:
            dropped.append((kind, rng.choice(ds[kind].dropped_sample[(f, r)])))
    rest = [(kind, t) for kind, f, r in order for t in ds[kind].dropped_sample[(f, r)]]
    rng.shuffle(rest)
    for pick in rest:
        if len(dropped) >= n_dropped:
            break
        if all(pick[1] is not x[1] for x in dropped):
            dropped.append(pick)
    return kept, dropped
