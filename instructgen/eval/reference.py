"""Reference overlap: ROUGE-L F (Lin 2004, rouge-score's `rougeL`, no stemming) of each answer against the
reference output of its instance, averaged; the floor is checkers.FLOOR_ANSWER scored the same way."""

from __future__ import annotations

from typing import Sequence

from .checkers import FLOOR_ANSWER


def rouge_l(references: Sequence[str], answers: Sequence[str]) -> list[float]:
    from rouge_score import rouge_scorer
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return [scorer.score(r, a)["rougeL"].fmeasure for r, a in zip(references, answers)]


def score_reference(items: Sequence[dict], answers: Sequence[str]) -> dict:
    """{"metrics": {"rouge_l"}, "floor": {"answer", "rouge_l"}, "prompts": [{"id", "rouge_l"}], counts}."""
    refs = [it["reference"] for it in items]
    model = rouge_l(refs, answers)
    floor = rouge_l(refs, [FLOOR_ANSWER] * len(refs))
    mean = (lambda xs: round(sum(xs) / len(xs), 4) if xs else None)
    return {"metrics": {"rouge_l": mean(model)}, "floor": {"answer": FLOOR_ANSWER, "rouge_l": mean(floor)},
            "n_prompts": len(items), "n_scored": len(items), "n_unscored": 0,
            "prompts": [{"id": it["id"], "rouge_l": round(s, 4)} for it, s in zip(items, model)]}
