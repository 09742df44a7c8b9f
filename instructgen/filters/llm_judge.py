"""LLM-as-a-judge quality rating of each (instruction, input, output), AlpaGasus-style, with DEITA's expected score.

AlpaGasus (Chen et al. 2024, "AlpaGasus: Training a Better Alpaca with Fewer Data", ICLR) asks a strong LLM to
rate each Alpaca triplet for accuracy on 0-5, score first, and keeps those rated >= 4.5: 9k of 52k, and the
model trained on them beats the one trained on all. DEITA (Liu et al. 2024, "What Makes Good Data for Alignment?
A Comprehensive Study of Automatic Data Selection in Instruction Tuning", ICLR) reads a rating not as the token
the scorer wrote but as the expected value over the rating tokens, sum_s s * softmax(logit(s)), from one pass:
a judge torn between 4 and 5 gives 4.5, which ranks finer than either. Here both come from any teacher spec:
- the prompt is a template file (`judge_quality.chat` by default; `judge_quality.completion` for a base model),
  rendered and parsed by two pure functions (`render_quality_prompt`, `parse_rating`);
- the judge decodes greedily with a short budget of its own (`JUDGE_SAMPLING`), never the generation defaults;
- where the backend supports "logprobs", the top-k token log-probabilities at the score's position give the
  expected rating (`expected_rating`); elsewhere only the written score;
- a rating that does not parse (or is off the scale) is counted (`details["unparseable"]`), never a crash;
- every judgement is appended to a journal (`records.append_jsonl`, one fsynced batch at a time) keyed by the
  triplet, the judge spec, the template and the decoding settings, so a crash or a new threshold redoes no
  finished call. A record with several instances gets the mean rating of its instances.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..generator.teachers import Prompt, Sampling, Teacher
from ..records import Task, append_jsonl, iter_jsonl, repair_torn_tail, text_hash
from ..templates import TEMPLATE_DIR, PromptTemplate, TemplateError, load_template
from .base import Decision, RecordFilter, SelectParams, doc

DEFAULT_TEMPLATE = "judge_quality.chat"
SCALE = (0, 5)  # AlpaGasus's scale
# Greedy: a rating must not depend on a sampling draw. 64 tokens hold "Score: 4" and a sentence of rationale; a
# judge that explains at length is cut there (the score comes first, so it still parses).
JUDGE_SAMPLING = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=64, presence_penalty=0.0)
JOURNAL = "llm_judge.jsonl"


# -- the two pure functions ---------------------------------------------------------------------------------------

def render_quality_prompt(template: PromptTemplate, instruction: str, input: str, output: str) -> Prompt:
    """The judge prompt for one triplet."""
    return template.render(instruction=instruction, input=input or "", output=output)


_NUM = r"(\d+(?:\.\d+)?)(?!\s*(?:-|–|to)\s*\d)"  # not the start of a range ("Score (0-5): 4")
_OF = r"(?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?"
# "Score: 4", "**Score:** 4.5", "Rating = [[3]]", "I rate it 4 out of 5", "a score of 5/5"
_KEYED = re.compile(r"\b(?:score|rating|rate[sd]?(?:\s+(?:it|this|the\s+response))?|grade)\b\s*(?:is|of|as)?"
                    r"[\s*:=\-\[\]()]*" + _NUM + r"[\]\)*]*" + _OF, re.I)
_LEADING = re.compile(r"^[\s*#>\[(]*" + _NUM + r"[\])*]*" + _OF + r"(?![\d.]*\w)")  # a first line "4", "4.5/5"


_SCALE_TEXT = re.compile(r"\(?\s*(?:on\s+a\s+scale\s+(?:of|from)\s+)?0\s*(?:-|–|to)\s*5\s*\)?", re.I)


def _rating_match(text: str) -> tuple[float, int, int, int] | None:
    """(value, start and end of the number, end of the match) of the rating a judge wrote, or None."""
    # the scale echoed ("Score (0-5): 4", "on a scale of 0 to 5, I rate it 4") is blanked, positions kept
    text = _SCALE_TEXT.sub(lambda m: " " * len(m.group()), text)
    for m in (_LEADING.match(text), _KEYED.search(text)):
        if m is None:
            continue
        denom = m.group(2)
        if denom is not None and float(denom) != SCALE[1]:
            return None  # "8/10": another scale, not ours to rescale
        return float(m.group(1)), m.start(1), m.end(1), m.end()
    return None


def parse_rating(text: str) -> tuple[float | None, str]:
    """A judge's completion -> (rating on SCALE or None when none parses or it is off the scale, rationale).

    Accepts the template's "Score: X" and the forms judges drift into: markdown ("**Score:** 4"), a bare first
    line ("4" or "4.5/5", as the completion template's continuation), "Rating: [[3]]", "I would rate it 4 out of
    5". The rationale is the text after the score's line (the whole text when no score parses)."""
    text = text or ""
    m = _rating_match(text)
    if m is None:
        return None, text.strip()
    value, end = m[0], m[3]
    line_end = text.find("\n", end)
    rationale = text[line_end + 1:] if line_end >= 0 else text[end:].lstrip(" \t*:.,;-–—)]")
    rationale = rationale.strip()
    if not SCALE[0] <= value <= SCALE[1]:
        return None, text.strip()
    return value, rationale


def expected_rating(text: str, top_logprobs: Sequence[dict[str, float]] | None) -> float | None:
    """DEITA's score: at the position where the judge wrote its rating, the expected value over the rating
    tokens "0".."5" among the top-k log-probabilities there, renormalised (softmax over those tokens). None
    without log-probabilities, without a parsed rating, or when no rating token is among the top k."""
    if not top_logprobs:
        return None
    m = _rating_match(text or "")
    if m is None:
        return None
    # the generated token at each position is the most probable one (greedy): their texts rebuild the completion
    tokens = [max(d.items(), key=lambda kv: kv[1])[0] if d else "" for d in top_logprobs]
    pos, at = None, 0
    for k, tok in enumerate(tokens):
        if at <= m[1] < at + len(tok):
            pos = k
            break
        at += len(tok)
    if pos is None or "".join(tokens)[m[1]:m[2]] != text[m[1]:m[2]]:
        return None  # the tokens do not spell the text: no position to read
    mass: dict[int, float] = {}
    for tok, lp in top_logprobs[pos].items():
        s = tok.strip()
        if s.isdigit() and SCALE[0] <= int(s) <= SCALE[1]:
            mass[int(s)] = _logaddexp(mass.get(int(s), -math.inf), lp)  # " 4" and "4" are one rating
    if not mass:
        return None
    top = max(mass.values())
    w = {s: math.exp(lp - top) for s, lp in mass.items()}
    return sum(s * x for s, x in w.items()) / sum(w.values())


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


# -- the judge ----------------------------------------------------------------------------------------------------

def load_quality_template(template: str | Path = DEFAULT_TEMPLATE) -> PromptTemplate:
    """A packaged template by name or a user's file; it must render strictly with instruction, input and output
    and show all three, else TemplateError naming the file. A packaged name without its kind means chat."""
    if (isinstance(template, str) and not Path(template).exists()
            and (TEMPLATE_DIR / f"{template}.chat.jinja2").is_file()):
        template = f"{template}.chat"
    t = load_template(template)
    probe = {"instruction": "INSTRUCTION-7F3A", "input": "INPUT-7F3A", "output": "OUTPUT-7F3A"}
    shown = render_quality_prompt(t, **probe)
    text = shown if isinstance(shown, str) else json.dumps(shown)
    missing = [k for k, v in probe.items() if v not in text]
    if missing:
        raise TemplateError(f"{t.path}: a quality judge template must show {', '.join(missing)} "
                            "(variables: instruction, input, output)")
    return t


def judgement_key(judge: str, template: PromptTemplate, sampling: Sampling, instruction: str, input: str,
                  output: str) -> str:
    """What a journaled judgement answers: this triplet, by this judge spec, with this template and decoding."""
    return text_hash(judge, text_hash(template.source), json.dumps(sampling.to_dict(), sort_keys=True),
                     instruction, input or "", output)


def read_journal(path: Path | None) -> dict[str, dict]:
    """key -> judgement from a journal (a torn last line, from a crash mid-write, is cut first)."""
    if path is None or not path.exists():
        return {}
    repair_torn_tail(path)
    return {obj["key"]: obj for _, obj in iter_jsonl(path) if isinstance(obj, dict) and "key" in obj}


def judge_quality(judge: Teacher, triplets: Sequence[tuple[str, str, str]], template: PromptTemplate,
                  judge_spec: str, done: dict[str, dict] | None = None,
                  on_judged: Callable[[list[dict]], Any] | None = None, sampling: Sampling = JUDGE_SAMPLING,
                  batch_size: int = 8) -> list[dict]:
    """Rate every (instruction, input, output); returns one judgement per triplet, in order: {"key", "score"
    (float or None), "expected" (DEITA's expected rating or None), "rationale", "raw", "finish_reason"}.

    `done` maps keys to judgements already made (reused: a resumed run redoes no finished call); identical
    triplets share one call. `on_judged(new)` runs after every batch of `batch_size` calls, to persist them. All
    prompts are rendered before the first call, so a template error costs no judge call."""
    done = dict(done or {})
    asks: dict[str, Prompt] = {}
    keys = []
    for ins, inp, out in triplets:
        k = judgement_key(judge_spec, template, sampling, ins, inp, out)
        keys.append(k)
        if k not in done and k not in asks:
            asks[k] = render_quality_prompt(template, ins, inp, out)
    want = dataclasses.replace(sampling, logprobs=sampling.logprobs if "logprobs" in _supports(judge) else 0)
    todo = list(asks.items())
    for b in range(0, len(todo), max(1, batch_size)):
        chunk = todo[b:b + max(1, batch_size)]
        completions = judge.generate([p for _, p in chunk], want)
        new = []
        for (k, _), c in zip(chunk, completions):
            score, rationale = parse_rating(c.text)
            exp = expected_rating(c.text, c.top_logprobs) if score is not None else None
            new.append({"key": k, "score": score, "expected": None if exp is None else round(exp, 6),
                        "rationale": rationale, "raw": c.text, "finish_reason": c.finish_reason})
        done.update((j["key"], j) for j in new)
        if on_judged is not None:
            on_judged(new)
    return [done[k] for k in keys]


def _supports(judge: Teacher) -> frozenset:
    return frozenset(getattr(judge, "supports", ()) or ())


# -- the filter ---------------------------------------------------------------------------------------------------

@dataclass
class LLMJudgeParams(SelectParams):
    judge: str = doc("teacher spec of the judge (any backend: transformers:MODEL, vllm:MODEL, "
                     "openai:BASE_URL@MODEL); AlpaGasus used ChatGPT, an embedded <1B model rates poorly",
                     default="smollm2-135m")
    min_score: float | None = doc("drop a record rated below this on 0-5 (AlpaGasus: 4.5); null = no threshold "
                                  "(select with keep_top)", default=4.5)
    template: str = doc("prompt template: judge_quality.chat (chat models), judge_quality.completion (base "
                        "models), or a file with instruction, input and output", default=DEFAULT_TEMPLATE)
    use_expected: bool = doc("rank and threshold on DEITA's expected rating where the judge gives token "
                             "log-probabilities (else the written score)", default=True)
    logprobs: int = doc("top-k log-probabilities asked per position for the expected rating (OpenAI caps chat at "
                        "20, completions at 5); 0 = written score only", default=5)
    max_new_tokens: int = doc("the judge's token budget: the score comes first, then a brief rationale",
                              default=JUDGE_SAMPLING.max_new_tokens)
    on_unparseable: str = doc("a rating that does not parse: drop (as judge_unparseable) or keep; counted in the "
                              "stats either way", default="drop")
    batch_size: int = doc("judge calls per batch; the journal is written after each", default=8)


class LLMJudgeFilter(RecordFilter):
    """LLM-as-a-judge quality rating (AlpaGasus, Chen et al. 2024; expected rating as in DEITA, Liu et al.
    2024): drops a record whose rating on 0-5 is below `min_score` and, with keep_top, keeps the best rated.
    Stores `judge_score` (the written score), `judge_expected` (the expected rating, where the backend gives
    log-probabilities) and `judge_rating` (the one ranked), and the rationale in meta["judge"]. Judgements are
    journaled in the cache folder, so a resumed run redoes no finished call."""

    name = "llm_judge"
    Params = LLMJudgeParams
    score_key = "judge_rating"
    writes = ("judge_score", "judge_expected")
    higher_is_better = True
    fields = ("output",)  # what it needs besides the instruction: curate refuses records without outputs
    per_field = False

    def setup(self) -> None:
        p = self.p
        if p.min_score is not None and not SCALE[0] <= p.min_score <= SCALE[1]:
            raise ValueError(f"min_score: a rating in [{SCALE[0]}, {SCALE[1]}] or null, got {p.min_score}")
        if p.on_unparseable not in ("drop", "keep"):
            raise ValueError(f"on_unparseable: drop or keep, got {p.on_unparseable!r}")
        if p.logprobs < 0 or p.max_new_tokens < 1 or p.batch_size < 1:
            raise ValueError("logprobs must be >= 0, max_new_tokens and batch_size >= 1")
        self.sampling = dataclasses.replace(JUDGE_SAMPLING, max_new_tokens=p.max_new_tokens, logprobs=p.logprobs)
        self.template: PromptTemplate | None = None
        self.teacher: Teacher | None = None
        self.journal: Path | None = None
        self.read_only = False
        self.done: dict[str, dict] = {}
        self.details.update(judged=0, reused=0, unparseable=0, with_expected=0)

    def prepare(self, ctx: dict) -> None:
        from ..generator.teachers import TeacherSpecError, validate_spec
        try:  # a bad spec fails here, before any record; the judge loads on first use
            validate_spec(self.p.judge)
        except TeacherSpecError as e:
            raise type(e)(f"judge: {e}") from None
        try:
            self.template = load_quality_template(self.p.template)
        except TemplateError as e:
            raise TemplateError(f"template: {e}") from None
        cache = ctx.get("cache_dir")
        self.read_only = bool(ctx.get("read_only_cache"))
        self.journal = Path(cache) / JOURNAL if cache else None
        self.done = read_journal(self.journal)

    def close(self) -> None:
        """Release the judge (idempotent)."""
        if self.teacher is not None and hasattr(self.teacher, "close"):
            self.teacher.close()
        self.teacher = None

    def _judge(self) -> Teacher:
        if self.teacher is None:
            from ..generator.teachers import make_teacher
            self.teacher = make_teacher(self.p.judge)
        return self.teacher

    def _persist(self, new: list[dict]) -> None:
        self.done.update((j["key"], j) for j in new)
        if self.journal is not None and not self.read_only:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            append_jsonl(self.journal, new)

    def score_batch(self, tasks: list[Task]) -> list[Decision]:
        if self.template is None:
            self.prepare({})
        triplets, spans = [], []
        for t in tasks:
            spans.append((len(triplets), len(triplets) + len(t.instances)))
            triplets += [(t.instruction, i.input, i.output) for i in t.instances if i.output]
            spans[-1] = (spans[-1][0], len(triplets))
        keys = [judgement_key(self.p.judge, self.template, self.sampling, *x) for x in triplets]
        missing = sum(1 for k in set(keys) if k not in self.done)
        judge = self._judge() if missing else None
        got = judge_quality(judge, triplets, self.template, self.p.judge, self.done, self._persist, self.sampling,
                            self.p.batch_size) if triplets else []
        self.details["judged"] += missing
        self.details["reused"] += len(set(keys)) - missing
        out = []
        for t, (a, b) in zip(tasks, spans):
            js = got[a:b]
            t.meta["judge"] = [{"score": j["score"], "expected": j["expected"], "rationale": j["rationale"]}
                               for j in js]
            self._set_scores(t, js)
            out.append(self.decide_scores(t))
        return out

    def _set_scores(self, t: Task, js: list[dict]) -> None:
        scores = [j["score"] for j in js]
        if None in scores:
            self.details["unparseable"] += sum(1 for s in scores if s is None)
        if not js or None in scores:
            return  # no rating: no score, no rank; decide_scores says what happens to it
        t.scores["judge_score"] = sum(scores) / len(scores)
        exps = [j["expected"] for j in js]
        if None not in exps:
            t.scores["judge_expected"] = sum(exps) / len(exps)
            self.details["with_expected"] += 1
        use = "judge_expected" if self.p.use_expected and "judge_expected" in t.scores else "judge_score"
        t.scores["judge_rating"] = t.scores[use]

    def decide_scores(self, task: Task) -> Decision:
        r = task.scores.get("judge_rating")
        if r is None and not task.meta.get("judge"):
            return "judge:no_output"
        if r is None:
            return "judge_unparseable" if self.p.on_unparseable == "drop" else None
        if self.p.min_score is not None and r < self.p.min_score:
            return f"judge<{self.p.min_score:g}"
        return None

