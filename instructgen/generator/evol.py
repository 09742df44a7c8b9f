"""Evol-Instruct (Xu et al., ICLR 2024, "WizardLM: Empowering Large Language Models to Follow Complex
Instructions", arXiv 2304.12244), with the paper's elimination step (distilabel's EvolInstruct has none).

The pool starts as the seed tasks (instruction, and its input on the next line, as the authors' main.py does).
Each round, every pool entry is rewritten by one operation drawn uniformly (section 3.1): in-depth
`constraints`, `deepen`, `concretize`, `reasoning`, `complicate_input`, or in-breadth `breadth`. The teacher then
answers the new instruction, and judges whether it gains information over its parent. Elimination evolving
(section 3.2) drops a failed evolution:
  1. no information gain: the judge answers "Equal" (`no_information_gain`);
  2. the answer contains "sorry" and is under 80 words (`response_sorry_short`);
  3. the answer is only punctuation and stop words (`response_only_stopwords`);
  4. the instruction copies words of the evolving prompt ("given prompt", "rewritten prompt", ...)
     (`copied_prompt_words`).
A failed evolution leaves its parent in the pool for the next round; a kept one replaces it. Survivors also pass
the Self-Instruct rule filters and, last, the ROUGE-L novelty check. Records carry `provenance.round`,
`operation`, `parent` and `slot`; a resumed run rebuilds the pool from the log. Prompts: `evol_depth.chat`,
`evol_breadth.chat`, `evol_equal.chat` (the authors' text, see each file).
"""

from __future__ import annotations

import random
import re
import time
from typing import Sequence

from ..records import Instance, Task, text_hash
from ..templates import PromptTemplate
from .bootstrap import novelty_last
from .teachers import Sampling

COPIED = ("given prompt", "rewritten prompt", "created prompt")  # rule 4; '#The Given Prompt#' etc. included
SORRY_MAX_WORDS = 80  # rule 2: "contains 'sorry' and is relatively short (i.e., less than 80 words)"
# rule 3's stop words: the common English function words (NLTK's list, abridged to those a reply is made of)
STOPWORDS = frozenset("""a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just let me more most my
myself no nor not now of off on once only or other our ours ourselves out over own same she should so some such
than that the their theirs them themselves then there these they this those through to too under until up us
very was we were what when where which while who whom why will with would you your yours yourself yourselves
ok okay yes sure""".split())


def seed_text(t: Task) -> str:
    """The text a seed is evolved from: its instruction, and its input on the next line (WizardLM main.py)."""
    inp = t.instances[0].input.strip() if t.instances else ""
    return t.instruction.strip() + (f"\n{inp}" if inp else "")


def render_evolve(templates: Sequence[PromptTemplate], operation: str, instruction: str):
    """The evolving prompt for one operation (pure): the in-breadth template, or the in-depth one with its method."""
    depth, breadth = templates[0], templates[1]
    if operation == "breadth":
        return breadth.render(instruction=instruction)
    return depth.render(operation=operation, instruction=instruction)


def parse_evolved(text: str) -> str | None:
    """The rewritten instruction (pure): the reply stripped; None when empty."""
    return text.strip() or None


def parse_equal(text: str) -> bool | None:
    """The elimination judge's answer (pure): True for "Equal", False for "Not Equal" (or "different"), None
    when it says neither; the first of them in the reply counts."""
    m = re.search(r"\b(not\s+equal|unequal|different|equal)\b", text.lower())
    return None if m is None else m.group(1) == "equal"


def elimination_reason(evolved: str, response: str | None, equal: bool | None) -> str | None:
    """WizardLM's elimination evolving (section 3.2), rules 1-4, as a drop reason or None (pure)."""
    if any(w in evolved.lower() for w in COPIED):
        return "copied_prompt_words"
    if equal is True:
        return "no_information_gain"
    if response is None:
        return "empty_response"
    words = response.split()
    if "sorry" in response.lower() and len(words) < SORRY_MAX_WORDS:
        return "response_sorry_short"
    if all(w.strip(".,;:!?'\"()[]{}-*#`").lower() in STOPWORDS or not re.search(r"\w", w) for w in words):
        return "response_only_stopwords"
    return None


class EvolRecipe:
    """Evol-Instruct over rounds; three teacher calls a batch (rewrite, answer, equality judgement)."""

    name = "evol"
    extra_templates = ("evol_breadth.chat", "evol_equal.chat")
    calls_per_batch = 3
    stops_when_exhausted = True  # after the last round the run completes with what it kept

    def __init__(self):
        self.pool: list[Task] = []

    def _per_round(self, run) -> int:
        return -(-len(run.seeds) // run.cfg.batch_size)

    def max_batches(self, cfg, run) -> int:
        return cfg.rounds * self._per_round(run)

    def replay(self, run, log: Sequence[Task]) -> None:
        run.replay(log)
        self.pool = list(run.seeds)
        for t in log:
            if t.kept and "slot" in t.provenance:
                self.pool[t.provenance["slot"]] = t

    def _slots(self, run, batch_idx: int) -> tuple[int, list[int]]:
        per = self._per_round(run)
        bs = run.cfg.batch_size
        start = (batch_idx % per) * bs
        return batch_idx // per + 1, list(range(start, min(start + bs, len(run.seeds))))

    def _operations(self, run, batch_idx: int, slots: list[int]) -> list[str]:
        rng = random.Random(f"{run.cfg.seed}:{batch_idx}")
        return [rng.choice(list(run.cfg.evol_operations)) for _ in slots]

    def _parent_text(self, t: Task) -> str:
        return t.instruction if "slot" in t.provenance else seed_text(t)  # an evolution, or a seed

    def sample_prompts(self, run) -> list:
        if not self.pool:
            self.pool = list(run.seeds)
        _, slots = self._slots(run, 0)
        return [str(render_evolve(run.templates, op, self._parent_text(self.pool[s])))
                for s, op in zip(slots, self._operations(run, 0, slots))]

    def batch(self, run, batch_idx: int) -> list[Task]:
        cfg, templates = run.cfg, run.templates
        rnd, slots = self._slots(run, batch_idx)
        ops = self._operations(run, batch_idx, slots)
        parents = [self.pool[s] for s in slots]
        texts = [self._parent_text(p) for p in parents]
        prompts = [render_evolve(templates, op, x) for op, x in zip(ops, texts)]
        sampling = run.sampling
        sampling.seed = cfg.seed * 100_003 + batch_idx
        completions = run.generate(prompts, sampling)
        created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        records: list[Task] = []
        asked: list[tuple[Task, str]] = []
        for j, (slot, op, parent, ptext, prompt, c) in enumerate(zip(slots, ops, parents, texts, prompts, completions)):
            prov = {"teacher": run.teacher.name, "template": templates[1 if op == "breadth" else 0].name,
                    "recipe": self.name, "round": rnd, "operation": op, "parent": parent.id, "slot": slot,
                    "sampling": sampling.to_dict(), "prompt_hash": text_hash(str(prompt)), "created_at": created,
                    "completion_index": j, "finish_reason": c.finish_reason, "prompt_tokens": c.prompt_tokens,
                    "completion_tokens": c.completion_tokens}
            evolved = parse_evolved(c.text)
            t = Task(id=f"evol-{batch_idx:05d}-{j:03d}", instruction=evolved or c.text[:2000], provenance=prov)
            if c.finish_reason == "length":
                t.drop("truncated_completion", filter="parse")
            elif evolved is None:
                t.drop("unparseable", filter="parse")
            elif any(w in evolved.lower() for w in COPIED):
                t.drop("copied_prompt_words", filter="evol_elimination")  # rule 4 needs no answer: no call spent
            elif all(f.decide(t) for f in run.rules):
                asked.append((t, ptext))
            records.append(t)
        if asked:
            answer = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=cfg.response_max_new_tokens,
                              presence_penalty=0.0)
            judge = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=8, presence_penalty=0.0, stop=("\n",))
            answers = run.generate([[{"role": "user", "content": t.instruction}] for t, _ in asked], answer)
            verdicts = run.generate([templates[2].render(first=p, second=t.instruction) for t, p in asked], judge)
            for (t, _), a, v in zip(asked, answers, verdicts):
                response, equal = a.text.strip() or None, parse_equal(v.text)
                t.provenance["response"] = {"sampling": answer.to_dict(), "finish_reason": a.finish_reason,
                                            "prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens}
                t.provenance["equal"] = {"template": templates[2].name, "answer": v.text, "equal": equal,
                                         "prompt_tokens": v.prompt_tokens, "completion_tokens": v.completion_tokens}
                reason = "truncated_response" if a.finish_reason == "length" else \
                    elimination_reason(t.instruction, response, equal)
                if reason:
                    t.drop(reason, filter="evol_elimination")
                else:
                    t.instances = [Instance("", response)]
        out = novelty_last(run, records, [t for t, _ in asked])
        for t in out:
            if t.kept:
                self.pool[t.provenance["slot"]] = t
        return out
