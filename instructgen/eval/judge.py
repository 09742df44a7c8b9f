"""Pairwise LLM-as-a-judge win rate, AlpacaEval-style, with both orders asked to cancel position bias.

AlpacaEval (Li et al. 2023, "AlpacaEval: An Automatic Evaluator of Instruction-following Models"; Dubois et al.
2024, "Length-Controlled AlpacaEval") scores a model by how often a judge prefers its output to a baseline's on
the same instructions. Two known biases of such judges are handled here in the open rather than hidden:

- Position bias: judges favour the output shown first (or second); Zheng et al. 2023 ("Judging LLM-as-a-Judge
  with MT-Bench and Chatbot Arena") ask each pair in both orders and call a pair a win only when the orders
  agree. Here every pair is asked twice, order "ab" (a, the model under test, shown first) and "ba" (b, the
  baseline, shown first); each order's verdict is mapped back to a/b and scored for a: win 1, tie 0.5, loss 0.
  A pair's score is the mean of its two orders (1, 0.75, 0.5, 0.25 or 0): a win when above 0.5, a loss below,
  a tie at 0.5 (so a judge that always picks the first output shown gives every pair 0.5: win rate 0.5, not
  noise). `position_consistency` is the share of pairs whose two orders name the same winner (tie-tie included)
  and `first_shown_rate` the share of non-tie verdicts that picked the first output shown (0.5 = no bias).
- Length bias: judges favour longer answers (the reason for Dubois et al.'s length control). We do not fit their
  regression; we report both models' mean answer lengths (characters and words) and `longer_won`, the share of
  decided pairs won by the longer answer, so a reader can see when a win is a length effect.

The win rate is the mean pair score over the pairs whose two orders both parsed; a pair with an unparseable
order is left out (its other order alone would not cancel position bias) and every unparseable order is counted
in `unparseable`. The 95% interval is a percentile bootstrap over those pairs (2000 resamples, seed 0), so the
same judgements always give the same interval.

STYLE: the prompt is a template file (`judge_pairwise.chat` by default, or a user's own), rendered and parsed by
two pure functions (`render_judge_prompt`, `parse_verdict`); the judge is any teacher backend, called in
`judge_pairwise` with its own greedy decoding (`JUDGE_SAMPLING`), never the generation defaults.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from ..generator.openai_teacher import TeacherRequestError
from ..generator.teachers import Prompt, Sampling, Teacher
from ..templates import TEMPLATE_DIR, PromptTemplate, TemplateError, load_template

DEFAULT_TEMPLATE = "judge_pairwise.chat"
ORDERS = ("ab", "ba")  # "ab": a (the model under test) shown first; "ba": b (the baseline) shown first
# Greedy: a verdict must not depend on a sampling draw. 32 tokens fit "Output (1)" with a short preamble; a judge
# that explains at length gets an unparseable verdict, counted, instead of paying for the explanation.
JUDGE_SAMPLING = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=32, presence_penalty=0.0)
CHECK_ATTEMPTS = 2  # check_judge: one retry, so a server that is down fails in about a second, not after backoff
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 2000, 0
_PROBE = {"instruction": "Say hello.", "input": "", "output_1": "Hello!", "output_2": "Hi."}


# -- the two pure functions ---------------------------------------------------------------------------------------

def render_judge_prompt(template: PromptTemplate, row: dict, order: str) -> Prompt:
    """The judge prompt for one pair in one order: output_1 is a's output in order "ab", b's in order "ba"."""
    first, second = ("output_a", "output_b") if order == "ab" else ("output_b", "output_a")
    return template.render(instruction=row["instruction"], input=row.get("input") or "",
                           output_1=row[first], output_2=row[second])


# A position label as a judge writes it: "Output (1)", "output 2", "Response (b)", "the first output". Letters
# count only in parentheses ("output a list" is not a label).
_LABEL = (r"(?:\b(?:output|response|answer|assistant)\s*(?:\(\s*([12ab])\s*\)|#?\s*([12])(?![\w]))"
          r"|\b(?:the\s+)?(first|second)\s+(?:output|response|answer|one)\b)")
_LABEL_RE = re.compile(_LABEL)
_TIE_RE = re.compile(r"\b(?:tie|tied|draw|equal|equally|neither)\b")
_EQUAL_RE = re.compile(r"\b(?:equal|equally|neither|as good as)\b")  # "tie" beside both labels may be a list
_MARKER_RE = re.compile(r"\[\[\s*([12abc]|tie)\s*\]\]")  # MT-Bench's [[A]] / [[B]] / [[C]] (tie)
_KEYED_RE = re.compile(r"\b(?:verdict|winner|final answer|answer|better output|best output|preferred output|"
                       r"preference|choice)\s*(?:is)?\s*[:=\-]\s*((?:a\s+)?(?:tie|draw)|" + _LABEL
                       + r"|\(?\s*[12ab]\s*\)?(?![\w]))")
_BETTER_RE = re.compile(r"(?P<x>" + _LABEL + r")\s+(?:is\s+|was\s+|seems\s+|appears\s+)?"
                        r"(?:clearly\s+|slightly\s+|much\s+)?(?:the\s+)?"
                        r"(?:better|preferred|superior|stronger|winner|wins)\b"
                        r"|\b(?:prefer|choose|pick|select|favou?r)\s+(?P<y>" + _LABEL + r")")
_BARE_RE = re.compile(r"\(?\s*([12ab])\s*\)?|(first|second)|(?:its\s+)?(?:a\s+)?(tie|draw)")
_KIND = {"1": "first", "a": "first", "first": "first", "2": "second", "b": "second", "second": "second",
         "c": "tie", "tie": "tie", "draw": "tie"}


def parse_verdict(text: str) -> str | None:
    """A judge's completion -> "first" | "second" | "tie" | None (unparseable), by position shown, not by model.

    Accepts the template's "Output (1)" / "Output (2)" / "Tie" and common variants: markdown, "(1)", "1",
    "Output 2", "Output (b)", "the first output", MT-Bench's "[[A]]"/"[[B]]"/"[[C]]", "Verdict: ...",
    "Output (2) is better than Output (1)", "I prefer Output (1)", an explanation after the verdict line, a
    `<think>` block before it. Tried in that order: an explicit marker (the last one), the whole reply as a bare
    verdict, "X is better" statements, the first non-empty line, the whole reply; a step that names both outputs
    (or an output and a tie) is ambiguous and falls through. Anything else is None, never an exception."""
    if not isinstance(text, str):
        return None
    t = re.sub(r"<think>.*?</think>", " ", text, flags=re.S | re.I)
    t = re.sub(r"[*_`\"'“”‘’]", "", t).lower()
    found = [_from_group(m.group(1)) for m in _MARKER_RE.finditer(t)]
    found += [_from_group(m.group(1)) for m in _KEYED_RE.finditer(t)]
    if found and found[-1]:
        return found[-1]
    bare = t.strip(" \t\r\n.!:;,")
    if _LABEL_RE.fullmatch(bare) or _BARE_RE.fullmatch(bare):
        return _from_group(bare)
    better = {_from_group(m.group("x") or m.group("y")) for m in _BETTER_RE.finditer(t)} - {None}
    if len(better) == 1:
        return better.pop()
    lines = [x for x in t.splitlines() if x.strip()]
    for part in ([lines[0]] if lines else []) + [t]:
        verdict = _mentions(part)
        if verdict:
            return verdict
    return None


def _from_group(s: str | None) -> str | None:
    """The verdict in a matched piece: a label ("output (1)"), a bare "2", "tie"; None when it holds none."""
    if not s:
        return None
    if s.strip() in _KIND:
        return _KIND[s.strip()]
    m = _LABEL_RE.search(s)
    if m:
        return _KIND[next(g for g in m.groups() if g)]
    m = _BARE_RE.fullmatch(s.strip(" \t\r\n.!:;,()"))
    if m:
        return _KIND[next(g for g in m.groups() if g)]
    return "tie" if _TIE_RE.search(s) else None


def _mentions(s: str) -> str | None:
    """The one verdict a passage names: one output and no tie word; a tie word and no output; both outputs said
    to be equal. Anything else (an echo of the options "Output (1), Output (2), Tie") is ambiguous: None."""
    labels = {_KIND[next(g for g in m.groups() if g)] for m in _LABEL_RE.finditer(s)}
    labels |= {_KIND[d] for d in re.findall(r"\(\s*([12])\s*\)", s)}  # "Output (1) or (2)?" names both
    tie = bool(_TIE_RE.search(s))
    if len(labels) == 1 and not tie:
        return labels.pop()
    if (tie and not labels) or (len(labels) == 2 and _EQUAL_RE.search(s)):
        return "tie"
    return None


def winner_of(verdict: str | None, order: str) -> str | None:
    """Map a positional verdict back to the models: "a" | "b" | "tie" | None."""
    if verdict in (None, "tie"):
        return verdict
    return ("a" if verdict == "first" else "b") if order == "ab" else ("b" if verdict == "first" else "a")


def prompt_hash(prompt: Prompt) -> str:
    """What was asked, as a hash: a stored judgement is reused only for the very same prompt."""
    return hashlib.sha256(json.dumps(prompt, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


# -- the judge ----------------------------------------------------------------------------------------------------

def load_judge_template(template: str | Path = DEFAULT_TEMPLATE) -> PromptTemplate:
    """A packaged judge template by name or a user's file; it must render strictly with the four variables and
    show both outputs (a template that hides one cannot judge), else TemplateError naming the file. A packaged
    name without its kind ("judge_pairwise") means its chat form."""
    if (isinstance(template, str) and not Path(template).exists()
            and (TEMPLATE_DIR / f"{template}.chat.jinja2").is_file()):
        template = f"{template}.chat"
    t = load_template(template)
    probes = {"output_1": "OUTPUT-ONE-7F3A", "output_2": "OUTPUT-TWO-7F3A"}
    shown = render_judge_prompt(t, {"instruction": "I", "input": "", "output_a": probes["output_1"],
                                    "output_b": probes["output_2"]}, "ab")
    text = shown if isinstance(shown, str) else json.dumps(shown)
    missing = [v for v, probe in probes.items() if probe not in text]
    if missing:
        raise TemplateError(f"{t.path}: a judge template must show {' and '.join(missing)} "
                            f"(variables: instruction, input, output_1, output_2)")
    return t


def check_judge(judge: Teacher, template: str | Path = DEFAULT_TEMPLATE) -> None:
    """One tiny greedy call (a 1-token verdict on a probe pair, through the template's endpoint) before any work:
    an unreachable or failing judge raises TeacherRequestError with one line naming the judge."""
    t = load_judge_template(template)
    probe = render_judge_prompt(t, {"instruction": _PROBE["instruction"], "input": "",
                                    "output_a": _PROBE["output_1"], "output_b": _PROBE["output_2"]}, "ab")
    # An openai teacher retries a refused connection with backoff (right mid-run, when a server restarts); here
    # a judge that is down should fail at once, so its attempts are capped for this one call.
    attempts = getattr(judge, "max_attempts", None)
    if isinstance(attempts, int):
        judge.max_attempts = min(attempts, CHECK_ATTEMPTS)  # type: ignore[attr-defined]
    try:
        judge.generate([probe], dataclasses.replace(JUDGE_SAMPLING, max_new_tokens=1))
    except (TeacherRequestError, OSError) as e:
        raise TeacherRequestError(_one_line(f"judge {judge.name} is not usable: {e}")) from None
    finally:
        if isinstance(attempts, int):
            judge.max_attempts = attempts  # type: ignore[attr-defined]


def judge_pairwise(judge: Teacher, rows: Sequence[dict], template: str | Path = DEFAULT_TEMPLATE,
                   done: dict | None = None, on_judged: Callable[[list[dict]], Any] | None = None,
                   quiet: bool = False, batch_size: int = 8, sampling: Sampling | None = None
                   ) -> tuple[list[dict], dict]:
    """Judge every row (`id`, `instruction`, `input`, `output_a` = model under test, `output_b` = baseline) in both
    orders; returns (judgements in row order, "ab" then "ba"; summary, see `summarize`).

    `done` maps (id, order) to a judgement already made: it is reused when its `prompt_hash` matches the prompt
    rendered now (a changed answer or template is judged again), so a resumed run redoes no finished call.
    `on_judged(new_judgements)` runs after every batch of `batch_size` judge calls, for the caller to persist
    them. All prompts are rendered before the first call, so a template error costs no judge call. A judgement:
    {"id", "order", "prompt_hash", "raw" (the judge's text), "verdict" (first/second/tie/None, by position),
    "winner" (a/b/tie/None)}."""
    from ..progress import bar
    t = load_judge_template(template)
    s = sampling or JUDGE_SAMPLING
    ids = [r["id"] for r in rows]
    if len(set(map(str, ids))) != len(ids):
        dup = next(i for i in ids if sum(1 for j in ids if str(j) == str(i)) > 1)
        raise ValueError(f"judge_pairwise: row id {dup!r} appears more than once")
    done = done or {}
    asks = []  # (id, order, prompt, hash) for every judgement, in row order
    for r in rows:
        for order in ORDERS:
            p = render_judge_prompt(t, r, order)
            asks.append((r["id"], order, p, prompt_hash(p)))
    result: dict[tuple, dict] = {}
    for i, order, _, h in asks:
        old = done.get((i, order))
        if old is not None and old.get("prompt_hash") == h:
            result[(i, order)] = old
    todo = [a for a in asks if (a[0], a[1]) not in result]
    pbar = bar(len(asks), "judge", initial=len(asks) - len(todo), unit="verdict", disable=quiet or None)
    try:
        for b in range(0, len(todo), max(1, batch_size)):
            chunk = todo[b:b + max(1, batch_size)]
            completions = judge.generate([p for _, _, p, _ in chunk], s)
            new = []
            for (i, order, _, h), c in zip(chunk, completions):
                verdict = parse_verdict(c.text)
                new.append({"id": i, "order": order, "prompt_hash": h, "raw": c.text, "verdict": verdict,
                            "winner": winner_of(verdict, order)})
            for j in new:
                result[(j["id"], j["order"])] = j
            if on_judged is not None:
                on_judged(new)
            pbar.update(len(new))
    finally:
        pbar.close()
    judgements = [result[(i, order)] for i, order, _, _ in asks]
    return judgements, summarize(rows, judgements, template=t.name, judge=getattr(judge, "name", str(judge)))


# -- the numbers --------------------------------------------------------------------------------------------------

_SCORE = {"a": 1.0, "tie": 0.5, "b": 0.0}


def summarize(rows: Sequence[dict], judgements: Sequence[dict], template: str = DEFAULT_TEMPLATE,
              judge: str | None = None) -> dict:
    """Win rate of a over b and the numbers that qualify it (pure; see the module docstring for the protocol)."""
    by = {(j["id"], j["order"]): j for j in judgements}
    scores, consistent, longer = [], 0, []
    first_shown = [j["verdict"] == "first" for j in judgements if j.get("verdict") in ("first", "second")]
    for r in rows:
        w = [(by.get((r["id"], o)) or {}).get("winner") for o in ORDERS]
        if None in w:
            continue
        score = (_SCORE[w[0]] + _SCORE[w[1]]) / 2
        scores.append(score)
        consistent += w[0] == w[1]
        la, lb = len(r["output_a"]), len(r["output_b"])
        if score != 0.5 and la != lb:
            longer.append((score > 0.5) == (la > lb))
    n = len(scores)
    return {
        "win_rate": _r(sum(scores) / n) if n else None,
        "ci95": _bootstrap(scores) if n else None,
        "ci95_method": f"percentile bootstrap over pairs, {BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}",
        "wins": sum(x > 0.5 for x in scores), "losses": sum(x < 0.5 for x in scores),
        "ties": sum(x == 0.5 for x in scores),
        "unparseable": sum(1 for j in judgements if j.get("winner") is None),
        "n_pairs": len(rows), "n_judged": n, "n_judgements": len(judgements),
        "position_consistency": _r(consistent / n) if n else None,
        "first_shown_rate": _r(sum(first_shown) / len(first_shown)) if first_shown else None,
        "longer_won": _r(sum(longer) / len(longer)) if longer else None,
        "mean_length_a": _lengths([r["output_a"] for r in rows]),
        "mean_length_b": _lengths([r["output_b"] for r in rows]),
        "template": template, "judge": judge,
        "scoring": "pair score = mean of its two orders (a wins 1, tie 0.5, b wins 0); win > 0.5 > loss; pairs "
                   "with an unparseable order are left out of win_rate and counted in unparseable (per order)",
    }


def _bootstrap(scores: list[float]) -> list[float]:
    rng, n = random.Random(BOOTSTRAP_SEED), len(scores)
    means = sorted(sum(rng.choices(scores, k=n)) / n for _ in range(BOOTSTRAP_RESAMPLES))
    return [_r(means[round(0.025 * (BOOTSTRAP_RESAMPLES - 1))]), _r(means[round(0.975 * (BOOTSTRAP_RESAMPLES - 1))])]


def _lengths(texts: list[str]) -> dict:
    n = len(texts) or 1
    return {"chars": _r(sum(len(x) for x in texts) / n), "words": _r(sum(len(x.split()) for x in texts) / n)}


def _r(x: float) -> float:
    return round(x, 4)


def _one_line(s: str) -> str:
    return " ".join(s.split())
