"""`gen instructions`: the Self-Instruct bootstrap loop (Wang et al. 2023, "Self-Instruct: Aligning Language
Models with Self-Generated Instructions", stage 1), resumable and batched.

Each prompt shows `num_prompt_instructions` numbered instructions (2 from the machine pool once it has them,
the rest seeds, shuffled) and ends with the next number so the teacher continues the list. Completions are
parsed into candidates, checked by the rule filters and the exact ROUGE-L novelty check, and every candidate is
appended to the run's log with its verdict. A recipe (`SelfInstructRecipe`, or Alpaca's in `alpaca.py`) owns
the two pure functions: render a prompt from the shown tasks, parse a completion into candidates.
"""

from __future__ import annotations

import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..config import GenerationConfig, to_dict
from ..filters.base import Filter
from ..filters.rouge import RougeNoveltyFilter
from ..filters.rules import BlacklistFilter, FirstCharFilter, LengthFilter, PrefixFilter
from ..progress import Rate, bar, table
from ..records import Instance, Task, read_seed_tasks, text_hash
from ..rundir import RunDir, fingerprint_files, records_fingerprint, releases_locks
from ..templates import PromptTemplate, load_template
from .teachers import Sampling, Teacher

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
    if preset == "alpaca":
        from .alpaca import AlpacaRecipe
        return AlpacaRecipe()
    return SelfInstructRecipe()


def instruction_filters(cfg: GenerationConfig, seeds: Sequence[Task]) -> tuple[list[Filter], RougeNoveltyFilter]:
    """The preset's rule filters and a novelty filter whose pool starts with the seed instructions."""
    rules: list[Filter] = [LengthFilter(cfg.min_words, cfg.max_words), BlacklistFilter(cfg.blacklist),
                           FirstCharFilter(), PrefixFilter(cfg.forbidden_prefixes)]
    novelty = RougeNoveltyFilter(cfg.rouge_threshold, top_k=cfg.top_k_similar,
                                 reference=[(s.id, s.instruction) for s in seeds],
                                 mean_similarity=cfg.mean_similarity)
    return rules, novelty


def sample_shown(rng: random.Random, seeds: Sequence[Task], machine: Sequence[Task], n: int,
                 n_machine: int) -> list[Task]:
    """Pick the in-context tasks for one prompt: up to `n_machine` generated ones, the rest seeds, shuffled."""
    m = min(n_machine, len(machine))
    shown = rng.sample(list(machine), m) + rng.sample(list(seeds), min(n - m, len(seeds)))
    rng.shuffle(shown)
    return shown


@releases_locks
def generate_instructions(cfg: GenerationConfig, out: str | Path, overwrite: bool = False,
                          teacher: Teacher | None = None, quiet: bool = False) -> dict:
    """Run (or resume) the bootstrap loop into `out` until `cfg.num` instructions are kept; returns the summary."""
    seeds = read_seed_tasks(cfg.seeds or PACKAGED_SEEDS)
    template = load_template(cfg.template)
    recipe = recipe_for(cfg.preset)
    if teacher is None:
        from .teachers import validate_spec
        validate_spec(cfg.teacher)
    rd = RunDir(out, "instructions")
    rd.check_path(inputs=[cfg.seeds or PACKAGED_SEEDS, template.path])
    # an edited seed file or template is another run: resuming would mix two of them in one pool
    run_config = dict(to_dict(cfg), seeds_fingerprint=records_fingerprint(seeds),
                      template_fingerprint=fingerprint_files([template.path]))
    state, log = rd.open_batched(run_config, overwrite=overwrite, templates=[template.path])
    if state == "done":
        return rd.done_summary(format_summary, quiet)


    rules, novelty = instruction_filters(cfg, seeds)
    machine: list[Task] = []
    reasons: Counter = Counter()
    tokens = Counter()
    seen_completions = set()
    for t in log:  # replay: the pool and counters are exactly as they were
        if t.kept:
            novelty.index.add(t.id, t.instruction)
            machine.append(t)
        else:
            reasons[t.verdict.reason] += 1
        key = (t.meta.get("batch"), t.provenance.get("completion_index"))
        if key not in seen_completions:
            seen_completions.add(key)
            tokens["prompt"] += t.provenance.get("prompt_tokens", 0)
            tokens["completion"] += t.provenance.get("completion_tokens", 0)
    batch_idx = (log[-1].meta["batch"] + 1) if log else 0
    max_batches = cfg.max_batches or max(50, (50 * cfg.num) // cfg.batch_size)
    sampling = Sampling(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                        presence_penalty=cfg.presence_penalty, stop=tuple(cfg.stop))

    t_start = time.perf_counter()
    if teacher is None:
        from .teachers import make_teacher
        teacher = make_teacher(cfg.teacher, batch_size=cfg.batch_size)
    rate = Rate()
    pbar = bar(cfg.num, "instructions", initial=min(len(machine), cfg.num), unit="instr", disable=quiet or None)
    with rd.appender() as appender:
        while len(machine) < cfg.num:
            if batch_idx >= max_batches:
                pbar.close()
                raise RuntimeError(
                    f"made {batch_idx} teacher calls and kept {len(machine)}/{cfg.num}; stopping (raise "
                    f"max_batches to go on). Rejections so far: {dict(reasons.most_common(5))}. The run folder "
                    f"{rd.path} resumes where it stopped.")
            rng = random.Random(f"{cfg.seed}:{batch_idx}")
            shown = [sample_shown(rng, seeds, machine, cfg.num_prompt_instructions, cfg.num_machine_instructions)
                     for _ in range(cfg.batch_size)]
            prompts = [recipe.render(template, s) for s in shown]
            sampling.seed = cfg.seed * 100_003 + batch_idx
            completions = teacher.generate(prompts, sampling)
            created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            records: list[Task] = []
            for c in completions:  # every generated token counts, also those of completions left unused
                rate.add(c.completion_tokens)
                tokens["prompt"] += c.prompt_tokens
                tokens["completion"] += c.completion_tokens
            for j, (prompt, c, sh) in enumerate(zip(prompts, completions, shown)):
                prov = {"teacher": teacher.name, "template": template.name, "recipe": recipe.name,
                        "sampling": sampling.to_dict(), "prompt_hash": text_hash(str(prompt)),
                        "created_at": created, "shown": [t.id for t in sh], "completion_index": j,
                        "finish_reason": c.finish_reason, "prompt_tokens": c.prompt_tokens,
                        "completion_tokens": c.completion_tokens}
                cands = recipe.parse(template, c.text, len(sh))
                if not cands:
                    t = Task(id=f"gen-{batch_idx:05d}-{j:03d}-00", instruction=c.text[:2000], provenance=prov)
                    t.drop("unparseable", filter="parse")
                    records.append(t)
                for k, cand in enumerate(cands):
                    t = Task(id=f"gen-{batch_idx:05d}-{j:03d}-{k:02d}", instruction=cand.instruction,
                             instances=cand.instances, provenance=prov)
                    if c.finish_reason == "length" and (cfg.drop_truncated == "completion" or k == len(cands) - 1):
                        t.drop("truncated_completion" if cfg.drop_truncated == "completion" else "truncated_item",
                               filter="parse")
                    elif cand.error:
                        t.drop(cand.error, filter="parse")
                    elif all(f.decide(t) for f in rules) and novelty.decide(t):
                        machine.append(t)
                        pbar.update(1)
                    records.append(t)
                    if len(machine) >= cfg.num:
                        break
                if len(machine) >= cfg.num:
                    break
            for t in records:
                t.meta.update(batch=batch_idx, batch_size=len(records))
                if not t.kept:
                    reasons[t.verdict.reason] += 1
            appender.write(records)
            batch_idx += 1
            pbar.set_postfix(kept=len(machine), rejected=sum(reasons.values()), tok_s=f"{rate.per_s:.1f}")
    pbar.close()

    summary = {"kept": len(machine), "rejected": sum(reasons.values()), "rejected_by_reason": dict(reasons.most_common()),
               "teacher_calls": batch_idx, "prompt_tokens": tokens["prompt"], "completion_tokens": tokens["completion"],
               "wall_seconds_this_session": round(time.perf_counter() - t_start, 2),
               "completion_tokens_per_s_this_session": round(rate.per_s, 2), "teacher": teacher.name,
               "preset": cfg.preset, "seeds": len(seeds)}
    rd.write_output("instructions.jsonl", machine)
    all_records = rd.read_log()
    rd.write_output("rejected.jsonl", [t for t in all_records if not t.kept])
    rd.mark_completed(summary)
    if not quiet:
        print(format_summary(summary), file=sys.stderr)
        print(f"kept instructions: {rd.path / 'instructions.jsonl'}", file=sys.stderr)
    return summary


def format_summary(s: dict) -> str:
    rows = [["kept", s.get("kept", 0)], ["rejected", s.get("rejected", 0)]]
    rows += [[f"  {r}", n] for r, n in s.get("rejected_by_reason", {}).items()]
    rows += [["prompt tokens", s.get("prompt_tokens", 0)], ["completion tokens", s.get("completion_tokens", 0)],
             ["teacher calls", s.get("teacher_calls", 0)],
             ["wall seconds (this session)", s.get("wall_seconds_this_session", 0.0)],
             ["completion tokens/s (this session)", s.get("completion_tokens_per_s_this_session", 0.0)]]
    return table(rows, header=["instructions", "count"])
