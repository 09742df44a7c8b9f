"""`gen eval`: does a student follow instructions better? Benchmarks nobody tuned to, scored before and after.

Suites (see suites.py): IFBench (`ifbench`, `ifbench:N`) and IFEval files (`ifeval:FILE`) scored by the
benchmarks' own checkers, run offline (checkers.py); ROUGE-L against reference outputs (`reference:FILE`);
an AlpacaEval-style pairwise judge (`judge:FILE` with `judge` and `against`, judge.py). Answers are greedy and
cached (answers.py); the run folder resumes and refuses like every stage (stage.py).

The API other stages use (training evaluates before and after with it):
    run_eval(EvalConfig(model="smollm2-135m", suite="ifbench:16"), out) -> the content of OUT/scores.json
    headline(scores) -> the four IFEval numbers, the floor, the suite name and its size, for tables and cards
Importing this package is light: the checkers, torch and transformers load only inside `run_eval`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..config import doc

DEFAULT_SUITE = "ifbench:16"  # 16 prompts, 16 instruction types: 1-2.5 min on 2 CPU cores (embedded student)
METRICS = ("prompt_level_strict", "inst_level_strict", "prompt_level_loose", "inst_level_loose")


@dataclass
class EvalConfig:
    """`gen eval`: one model (and adapter) on one suite."""

    model: str = doc("student spec: an embedded name (smollm2-135m), an HF folder, a merged folder, a .gguf, a "
                     "cached hub id, or a gen train output folder (its base student + adapter/)")
    adapter: str | None = doc("LoRA adapter folder applied to MODEL (not with a gen train folder)", default=None)
    suite: str = doc("ifbench | ifbench:N | ifeval:FILE | reference:FILE | judge:FILE", default=DEFAULT_SUITE)
    max_new_tokens: int = doc("answer length cap in tokens (IFEval's reference runs use 1280; 256 keeps a CPU "
                              "run short and most IFBench answers fit)", default=256)
    batch_size: int = doc("prompts per generate call (left-padded, sorted by length)", default=8)
    limit: int | None = doc("only the suite's first N prompts (None = all)", default=None)
    judge: str | None = doc("judge:FILE only: the judge's teacher spec (transformers:MODEL | vllm:MODEL | "
                            "openai:URL@MODEL)", default=None)
    against: str | None = doc("judge:FILE only: the model MODEL is compared with (same forms as model)", default=None)
    against_adapter: str | None = doc("judge:FILE only: an adapter for the --against model", default=None)
    cache_dir: str | None = doc("answer cache folder (default $INSTRUCTGEN_CACHE/answers)", default=None)
    judge_template: str = doc("judge:FILE only: the judge prompt template (name or file)", default="judge_pairwise")
    device: str | None = doc("cpu | cuda; None = cuda when available", default=None)
    chat_template: str | None = doc("a Jinja chat template file used instead of the model's own (gen train "
                                    "--chat-template; an adapter's saved tokenizer already carries it)", default=None)


def run_eval(cfg: EvalConfig, out: str | os.PathLike | None = None, overwrite: bool = False,
             quiet: bool = False) -> dict:
    """Evaluate `cfg.model` on `cfg.suite` into `out` (default runs/eval-SUITE-MODEL); returns scores.json's
    content. A finished `out` with the same config and inputs is a no-op returning it; an interrupted one
    resumes; a changed config or input is refused unless `overwrite`."""
    from .stage import evaluate
    return evaluate(cfg, out, overwrite=overwrite, quiet=quiet)


def headline(scores: dict) -> dict:
    """The numbers a table or a model card shows: suite name, prompts, the four IFEval numbers and the floor's
    (None where the suite has no such number), plus the suite's own metric for reference/judge suites."""
    suite = scores.get("suite", {})
    metrics, floor = scores.get("metrics", {}), scores.get("floor") or {}
    out = {"suite": suite.get("spec"), "kind": suite.get("kind"), "suite_version": suite.get("version"),
           "n_prompts": scores.get("n_prompts", suite.get("n_prompts")), "n_scored": scores.get("n_scored")}
    out.update({m: metrics.get(m) for m in METRICS})
    out["floor"] = {m: floor.get(m) for m in METRICS}
    out["floor_answer"] = floor.get("answer")
    if suite.get("kind") == "reference":
        out["rouge_l"], out["floor"]["rouge_l"] = metrics.get("rouge_l"), floor.get("rouge_l")
    if suite.get("kind") == "judge":
        j = scores.get("judge", {})
        out.update({k: j.get(k) for k in ("win_rate", "ci95", "wins", "losses", "ties", "unparseable", "n_pairs")})
    return out
