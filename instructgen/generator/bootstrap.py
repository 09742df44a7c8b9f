"""`gen instructions`: the Self-Instruct bootstrap loop (Wang et al. 2023, "Self-Instruct: Aligning Language
Models with Self-Generated Instructions", stage 1), resumable and batched.

Each prompt shows `num_prompt_instructions` numbered instructions (2 from the machine pool once it has them,
the rest seeds, shuffled) and ends with the next number so the teacher continues the list. Completions are
parsed into candidates, checked by the rule filters and the exact ROUGE-L novelty check, and every candidate is
appended to the run's log with its verdict. A recipe (`SelfInstructRecipe`, or Alpaca's in `alpaca.py`) owns
the two pure functions: render a prompt from the shown tasks, parse a completion into candidates.
"""

from __future__ import annotations

import dataclasses
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..config import GenerationConfig, budget_spent, run_identity
from ..filters.chain import instruction_chain
from ..progress import Progress, Rate, cost_of, table
from ..records import Instance, Task, read_seed_tasks, text_hash
from ..rundir import releases_locks
from ..stage import Outcome, Resume, Stage, fingerprint, run_stage
from ..templates import PromptTemplate, load_template
from .teachers import BudgetReached, Sampling, Teacher

PACKAGED_SEEDS = Path(__file__).resolve().parent.parent / "data" / "seed_tasks.jsonl"

_ITEM_RE = re.compile(r"\n\s*\d{1,3}\s?[.)](?=\s|$)")  # "\n10. ", "\n10) ", "\n 10 . "


def parse_numbered_list(text: str, continues_from: int | None) -> list[str]:
    """Split a completion into list items, whitespace collapsed, empty items dropped (pure).

    With `continues_from=9` the text is the continuation of a prompt ending in "9.", so the text before the
    first "\\n10." is item 9 (the Self-Instruct form). With None (a chat reply) items are numbered lines."""
    if continues_from is not None:
        items = _ITEM_RE.split(text)
    else:  # whatever precedes the first numbered line is empty or a preamble ("Sure! Here are ...")
        items = _ITEM_RE.split("\n" + text.lstrip())[1:]
    return [s for s in (re.sub(r"\s+", " ", i).strip() for i in items) if s]


@dataclass
class Candidate:
    instruction: str
    instances: list[Instance]
    error: str | None = None  # a parse-time drop reason (e.g. Alpaca's "malformed_item"), recorded, not filtered


class SelfInstructRecipe:
    """Self-Instruct: the prompt lists instructions only; the completion continues the numbered list."""

    name = "self-instruct"

    def render(self, template: PromptTemplate, shown: Sequence[Task]):
        return template.render(instructions=[t.instruction for t in shown])

    def parse(self, template: PromptTemplate, text: str, n_shown: int) -> list[Candidate]:
        start = None if template.is_chat else n_shown + 1
        return [Candidate(i, []) for i in parse_numbered_list(text, start)]


def recipe_for(preset: str):
    """The recipe object of a preset: render/parse for list recipes, or its own `batch` (Magpie, Evol)."""
    if preset == "alpaca":
        from .alpaca import AlpacaRecipe
        return AlpacaRecipe()
    if preset == "magpie":
        from .magpie import MagpieRecipe
        return MagpieRecipe()
    if preset == "evol":
        from .evol import EvolRecipe
        return EvolRecipe()
    return SelfInstructRecipe()


def sample_shown(rng: random.Random, seeds: Sequence[Task], machine: Sequence[Task], n: int,
                 n_machine: int) -> list[Task]:
    """Pick the in-context tasks for one prompt: up to `n_machine` generated ones, the rest seeds, shuffled."""
    m = min(n_machine, len(machine))
    shown = rng.sample(list(machine), m) + rng.sample(list(seeds), min(n - m, len(seeds)))
    rng.shuffle(shown)
    return shown


class Run:
    """What a recipe's batch works with: the config, teacher, templates, filters, the pool of kept tasks and
    the counters. `generate` is the one way to the teacher: it checks the budget first (the whole run's spend,
    resumed batches included), feeds the progress bar as tokens arrive and counts tokens and cost."""

    def __init__(self, cfg: GenerationConfig, seeds: list[Task], templates: list[PromptTemplate]):
        self.cfg, self.seeds, self.templates = cfg, seeds, templates
        # the same filter specs and stats as gen curate (filters/chain.py); recipes may run their own checks
        # between the rules and the novelty check (run.chain.decide_rules / decide_novelty)
        self.chain = instruction_chain(cfg, seeds)
        self.rules, self.novelty = self.chain.rules, self.chain.novelty
        self.machine: list[Task] = []
        self.pool_sizes: list[int] = []  # len(machine) after each batch, by batch index
        self.reasons: Counter = Counter()
        self.tokens: Counter = Counter()
        self.rate = Rate()
        self.teacher: Teacher | None = None
        self.progress: Progress | None = None
        self.sampling = Sampling(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                 presence_penalty=cfg.presence_penalty, stop=tuple(cfg.stop))

    @property
    def cost(self) -> float:
        return cost_of(self.tokens["prompt"], self.tokens["completion"], self.cfg.price_input_per_m,
                       self.cfg.price_output_per_m)

    def generate(self, prompts: list, sampling: Sampling):
        return metered_generate(self.teacher, prompts, sampling, self.cfg, self.tokens, self.rate, self.progress)

    def accept(self, t: Task) -> bool:
        """The rule filters, then the ROUGE-L novelty check (which adds a kept instruction to the pool)."""
        if self.chain.decide(t):
            self.machine.append(t)
            if self.progress is not None:
                self.progress.update(1)
            return True
        return False

    def pool_for(self, batch_idx: int) -> list[Task]:
        """The machine pool a batch's prompts are sampled from: as it was after batch `batch_idx - 1 -
        pool_lag` (pool_lag 0: after the previous batch, the original loop). With a lag of 1 a batch can be
        sampled, and decoded, while the one before it is still running (see overlap.py)."""
        last = batch_idx - 1 - self.cfg.pool_lag
        if last < 0:
            return []
        if last >= len(self.pool_sizes):
            raise RuntimeError(f"batch {batch_idx} sampled before batch {last} was written")
        return self.machine[: self.pool_sizes[last]]

    def batch_written(self, batch_idx: int) -> None:
        """Record the pool size after batch `batch_idx` (batches are written in order)."""
        while len(self.pool_sizes) <= batch_idx:
            self.pool_sizes.append(len(self.machine))

    def replay(self, log: Sequence[Task]) -> None:
        """Rebuild the pool and counters from the log, so a resumed run goes on exactly as it would have."""
        seen_completions = set()
        for t in log:
            if "batch" in t.meta:
                self.batch_written(t.meta["batch"] - 1)
            if t.kept:
                self.chain.replay(t)
                self.machine.append(t)
            else:
                self.reasons[t.verdict.reason] += 1
            for key, prov in _token_sources(t):
                if key not in seen_completions:
                    seen_completions.add(key)
                    self.tokens["prompt"] += prov.get("prompt_tokens", 0)
                    self.tokens["completion"] += prov.get("completion_tokens", 0)
        if log and "batch" in log[-1].meta:
            self.batch_written(log[-1].meta["batch"])


def _token_sources(t: Task):
    """(key, provenance part) for each teacher completion a record carries, keyed so a completion shared by
    several records (one list completion, many instructions) counts once."""
    b = t.meta.get("batch")
    yield (b, "c", t.provenance.get("completion_index")), t.provenance
    for part in ("response", "equal"):  # Magpie / Evol: the answer and the elimination judgement
        if isinstance(t.provenance.get(part), dict):
            yield (b, part, t.id), t.provenance[part]


def metered_generate(teacher: Teacher, prompts: list, sampling: Sampling, cfg, tokens: Counter, rate: Rate,
                     progress: Progress | None):
    """A teacher call as every generation stage makes it: BudgetReached first when the run (its resumed
    batches included, counted in `tokens`) has spent cfg's budget; tokens fed to the progress bar as they come;
    every token counted, also those of completions left unused."""
    why = budget_spent(cfg, tokens["prompt"], tokens["completion"])
    if why:
        raise BudgetReached(why)
    if progress is not None and _takes_on_tokens(teacher):
        completions = teacher.generate(prompts, sampling, on_tokens=progress.on_tokens)
    else:
        completions = teacher.generate(prompts, sampling)
    for c in completions:
        count_completion(c, tokens, rate)
    return completions


def count_completion(c, tokens: Counter, rate: Rate) -> None:
    """A completion's tokens into the run's counters (budget, cost, tokens/s)."""
    rate.add(c.completion_tokens)
    tokens["prompt"] += c.prompt_tokens
    tokens["completion"] += c.completion_tokens


_ON_TOKENS: dict[type, bool] = {}


def _takes_on_tokens(teacher) -> bool:
    """Whether `teacher.generate` accepts `on_tokens` (every backend does; a test's stand-in may not)."""
    import inspect
    kind = type(teacher)
    if kind not in _ON_TOKENS:
        try:
            params = inspect.signature(teacher.generate).parameters
            _ON_TOKENS[kind] = "on_tokens" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):
            _ON_TOKENS[kind] = False
    return _ON_TOKENS[kind]


def prepare_batch(run: Run, recipe, batch_idx: int) -> tuple[list[list[Task]], list, Sampling]:
    """A Self-Instruct / Alpaca batch before the teacher: the shown tasks of each prompt (sampled from the
    pool `run.pool_for(batch_idx)`), the prompts, and the batch's sampling (its seed)."""
    cfg = run.cfg
    rng = random.Random(f"{cfg.seed}:{batch_idx}")
    pool = run.pool_for(batch_idx)
    shown = [sample_shown(rng, run.seeds, pool, cfg.num_prompt_instructions, cfg.num_machine_instructions)
             for _ in range(cfg.batch_size)]
    sampling = dataclasses.replace(run.sampling, seed=cfg.seed * 100_003 + batch_idx)
    return shown, [recipe.render(run.templates[0], sh) for sh in shown], sampling


def completion_records(run: Run, recipe, batch_idx: int, j: int, prompt, c, shown: list[Task],
                       sampling: Sampling, created: str) -> list[Task]:
    """Completion j of a batch as records: parsed, each candidate through the rules and the novelty check
    (a kept one joins the pool); stops after the record that reaches `num`."""
    cfg, template = run.cfg, run.templates[0]
    prov = {"teacher": run.teacher.name, "template": template.name, "recipe": recipe.name,
            "sampling": sampling.to_dict(), "prompt_hash": text_hash(str(prompt)),
            "created_at": created, "shown": [t.id for t in shown], "completion_index": j,
            "finish_reason": c.finish_reason, "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens}
    cands = recipe.parse(template, c.text, len(shown))
    if not cands:
        t = Task(id=f"gen-{batch_idx:05d}-{j:03d}-00", instruction=c.text[:2000], provenance=prov)
        t.drop("unparseable", filter="parse")
        return [t]
    records: list[Task] = []
    for k, cand in enumerate(cands):
        t = Task(id=f"gen-{batch_idx:05d}-{j:03d}-{k:02d}", instruction=cand.instruction,
                 instances=cand.instances, provenance=prov)
        if c.finish_reason == "length" and (cfg.drop_truncated == "completion" or k == len(cands) - 1):
            t.drop("truncated_completion" if cfg.drop_truncated == "completion" else "truncated_item",
                   filter="parse")
        elif cand.error:
            t.drop(cand.error, filter="parse")
        else:
            run.accept(t)
        records.append(t)
        if len(run.machine) >= cfg.num:
            break
    return records


def bootstrap_batch(run: Run, recipe, batch_idx: int) -> list[Task]:
    """One Self-Instruct / Alpaca teacher call: sample the shown tasks, render, complete, parse, filter."""
    shown, prompts, sampling = prepare_batch(run, recipe, batch_idx)
    completions = run.generate(prompts, sampling)
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    records: list[Task] = []
    for j, (prompt, c, sh) in enumerate(zip(prompts, completions, shown)):
        records += completion_records(run, recipe, batch_idx, j, prompt, c, sh, sampling, created)
        if len(run.machine) >= run.cfg.num:
            break
    return records


def novelty_last(run, records: list[Task], candidates: list[Task]) -> list[Task]:
    """The novelty check, last and in record order, over candidates still kept; the batch is cut after the
    record that reaches `num` (as the Self-Instruct loop does), so a resumed run matches an uninterrupted one."""
    pending = {id(t) for t in candidates}
    for i, t in enumerate(records):
        if id(t) in pending and t.kept and run.novelty.decide(t):
            run.machine.append(t)
            if run.progress is not None:
                run.progress.update(1)
            if len(run.machine) >= run.cfg.num:
                return records[: i + 1]
    return records


def recipe_templates(cfg: GenerationConfig, recipe) -> list[PromptTemplate]:
    """The templates a recipe renders: `cfg.template` first, then any fixed siblings (Evol's breadth and
    elimination prompts)."""
    return [load_template(cfg.template)] + [load_template(n) for n in getattr(recipe, "extra_templates", ())]


def estimate(cfg: GenerationConfig, run: Run, recipe, batches_done: int) -> str:
    """A one-line estimate of tokens and cost before the loop starts: one call's prompt tokens (~4 characters a
    token) and completion tokens at most, and the calls needed at the kept rate so far (or one instruction per
    prompt on a fresh run, an assumption the progress line then corrects)."""
    prompts = getattr(recipe, "sample_prompts", None)
    texts = prompts(run) if prompts else [str(recipe.render(run.templates[0], sample_shown(
        random.Random(cfg.seed), run.seeds, run.machine, cfg.num_prompt_instructions,
        cfg.num_machine_instructions))) for _ in range(cfg.batch_size)]
    calls_per_batch = getattr(recipe, "calls_per_batch", 1)
    p_tok = sum(len(t) for t in texts) // 4 * calls_per_batch
    c_tok = cfg.batch_size * (cfg.max_new_tokens + (calls_per_batch - 1) * cfg.response_max_new_tokens)
    left = max(cfg.num - len(run.machine), 0)
    rate = len(run.machine) / batches_done if batches_done and run.machine else cfg.batch_size
    batches = -(-left // max(rate, 1e-9)) if left else 0
    per = cost_of(p_tok, c_tok, cfg.price_input_per_m, cfg.price_output_per_m)
    basis = f"{rate:.1f} kept per batch so far" if batches_done and run.machine else "1 kept per prompt, assumed"
    line = (f"estimate: a batch is ~{p_tok:,} prompt + at most {c_tok:,} completion tokens; ~{batches:,.0f} more "
            f"batches for {left} instructions ({basis}): ~{batches * p_tok:,.0f} prompt + at most "
            f"{batches * c_tok:,.0f} completion tokens")
    if cfg.price_input_per_m or cfg.price_output_per_m:
        line += f", at most ~{batches * per:.4f} (prices {cfg.price_input_per_m:g}/{cfg.price_output_per_m:g} per M)"
    return line


@releases_locks
def generate_instructions(cfg: GenerationConfig, out: str | Path, overwrite: bool = False,
                          teacher: Teacher | None = None, quiet: bool = False) -> dict:
    """Run (or resume) the preset's recipe into `out` until `cfg.num` instructions are kept; returns the summary.

    A spent --max-cost / --max-tokens raises BudgetReached after the last finished batch is written; the same
    command with a larger budget resumes from there."""
    recipe = recipe_for(cfg.preset)
    seedless = getattr(recipe, "seedless", False)
    seeds = [] if seedless else read_seed_tasks(cfg.seeds or PACKAGED_SEEDS)
    templates = recipe_templates(cfg, recipe)
    paths = [t.path for t in templates]
    if hasattr(recipe, "check"):
        recipe.check(cfg, templates)
    if teacher is None:
        from .teachers import validate_options, validate_spec
        validate_spec(cfg.teacher)
        validate_options(cfg.teacher, cfg.teacher_options)
    # an edited seed file or template is another run: resuming would mix two of them in one pool
    stage = Stage("instructions", Path(out), inputs=([] if seedless else [cfg.seeds or PACKAGED_SEEDS]) + paths,
                  identity=dict(run_identity(cfg), seeds_fingerprint=fingerprint(records=seeds),
                                template_fingerprint=fingerprint(files=paths)),
                  templates=paths, batched=True, show=format_summary)
    return run_stage(stage, lambda resume: _bootstrap(cfg, recipe, seeds, templates, teacher, resume, quiet),
                     overwrite=overwrite, quiet=quiet)


def _bootstrap(cfg: GenerationConfig, recipe, seeds: list[Task], templates: list[PromptTemplate],
               teacher: Teacher | None, resume: Resume, quiet: bool) -> Outcome:
    """The loop: replay the log, then one batch at a time until `cfg.num` are kept, each batch logged whole."""
    run = Run(cfg, seeds, templates)
    if hasattr(recipe, "replay"):
        recipe.replay(run, resume.log)
    else:
        run.replay(resume.log)
    batch_idx = resume.next_batch
    max_batches = getattr(recipe, "max_batches", lambda c, r: 0)(cfg, run) or cfg.max_batches or \
        max(50, (50 * cfg.num) // cfg.batch_size)
    batch = getattr(recipe, "batch", None) or (lambda r, b: bootstrap_batch(r, recipe, b))
    if not quiet:
        print(f"gen instructions: {estimate(cfg, run, recipe, batch_idx)}", file=sys.stderr)

    t_start = time.perf_counter()
    own_teacher = teacher is None  # a teacher built here is closed here (a vLLM engine holds GPU memory)
    if teacher is None:
        from .teachers import Budget, make_teacher
        teacher = make_teacher(cfg.teacher, budget=Budget(cfg.price_input_per_m, cfg.price_output_per_m),
                               rps=cfg.rps, batch_size=cfg.batch_size, **cfg.teacher_options)
    run.teacher = teacher
    run.progress = Progress(cfg.num, "instructions", initial=min(len(run.machine), cfg.num), unit="instr",
                            quiet=quiet)
    _show(run)
    try:
        with resume.appender() as appender:
            def write(records: list[Task], idx: int) -> None:
                for t in records:
                    t.meta.update(batch=idx, batch_size=len(records))
                    if not t.kept:
                        run.reasons[t.verdict.reason] += 1
                appender.write(records)
                run.batch_written(idx)
                _show(run)

            from .overlap import stream_batches, streams  # overlap builds on this module's batch functions
            if streams(run, recipe):
                batch_idx = stream_batches(run, recipe, batch_idx, max_batches, write)
            while len(run.machine) < cfg.num:
                if batch_idx >= max_batches:
                    if getattr(recipe, "stops_when_exhausted", False):
                        break  # Evol: every round done; the run completes with what it kept
                    raise RuntimeError(
                        f"made {batch_idx} teacher calls and kept {len(run.machine)}/{cfg.num}; stopping (raise "
                        f"max_batches to go on). Rejections so far: {dict(run.reasons.most_common(5))}. The run "
                        f"folder {resume.path} resumes where it stopped.")
                write(batch(run, batch_idx), batch_idx)
                batch_idx += 1
    except BudgetReached as e:
        raise BudgetReached(f"{e}; kept {len(run.machine)}/{cfg.num} instructions in {resume.path} (every "
                            f"finished batch is written); the same command with a larger budget resumes") from None
    finally:
        run.progress.close()
        if own_teacher:
            teacher.close()

    summary = {"kept": len(run.machine), "rejected": sum(run.reasons.values()),
               "rejected_by_reason": dict(run.reasons.most_common()), "teacher_calls": batch_idx,
               "prompt_tokens": run.tokens["prompt"], "completion_tokens": run.tokens["completion"],
               "cost": round(run.cost, 6), "wall_seconds_this_session": round(time.perf_counter() - t_start, 2),
               "completion_tokens_per_s_this_session": round(run.rate.per_s, 2), "teacher": teacher.name,
               "preset": cfg.preset, "seeds": len(seeds)}
    if getattr(recipe, "calls_per_batch", 1) > 1:
        summary["batches"] = summary.pop("teacher_calls")  # Magpie: two calls a batch, Evol: three
    all_records = resume.read_log()
    summary["filters"] = run.chain.stats(all_records)  # per filter, the entries of gen curate's stats.json
    return Outcome(summary, records={"instructions.jsonl": run.machine,
                                     "rejected.jsonl": [t for t in all_records if not t.kept]},
                   where=f"kept instructions: {resume.file('instructions.jsonl')}")


def _show(run: Run) -> None:
    fields = dict(kept=len(run.machine), rejected=sum(run.reasons.values()))
    if run.cfg.price_input_per_m or run.cfg.price_output_per_m:
        fields["cost"] = round(run.cost, 6)
    run.progress.set(**fields)


def format_summary(s: dict) -> str:
    rows = [["kept", s.get("kept", 0)], ["rejected", s.get("rejected", 0)]]
    rows += [[f"  {r}", n] for r, n in s.get("rejected_by_reason", {}).items()]
    rows += [["prompt tokens", s.get("prompt_tokens", 0)], ["completion tokens", s.get("completion_tokens", 0)],
             ["teacher calls" if "teacher_calls" in s else "batches", s.get("teacher_calls", s.get("batches", 0))],
             ["cost", s.get("cost", 0.0)],
             ["wall seconds (this session)", s.get("wall_seconds_this_session", 0.0)],
             ["completion tokens/s (this session)", s.get("completion_tokens_per_s_this_session", 0.0)]]
    return table(rows, header=["instructions", "count"])
