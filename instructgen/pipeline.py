"""`gen run`: seeds -> instructions -> instances -> curate -> train (with before/after evaluation) -> report,
one run folder, each stage in its own subfolder with its own `completed` marker. Re-running the same command
skips finished stages and resumes the one that was interrupted, at the record or checkpoint where it stopped.

Stage order and folders:
  RUN/instructions/  gen instructions   (the Self-Instruct bootstrap loop, or Alpaca's one pass)
  RUN/instances/     gen instances      (skipped for --preset alpaca, magpie, evol: their records carry answers)
  RUN/curated/       gen curate         (the default filter chain unless run.yaml names another)
  RUN/train/         gen train          (adapter, metrics.json, eval.jsonl)
  RUN/report.html    gen report
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError, build, doc, load_yaml
from .rundir import RunDir, releases_locks


ONE_PASS = ("alpaca", "magpie", "evol")  # presets whose records already carry their answers (no gen instances)


@dataclass
class RunConfig:
    """`gen run`: shared choices, plus per-stage overrides (each a mapping of that stage's own options)."""

    num: int = doc("instructions to keep", default=30)
    seeds: str | None = doc("seed file; None = packaged seeds", default=None)
    teacher: str = doc("teacher spec for generation", default="smollm2-135m")
    teacher_options: dict = doc("backend keywords for the teacher, e.g. {device: cuda, dtype: bfloat16} "
                                "(transformers), {max_concurrency: 16, timeout_s: 120, api_key_env: MY_KEY} "
                                "(openai), vllm.LLM / EngineArgs fields such as {gpu_memory_utilization: 0.8, "
                                "max_model_len: 4096} (vllm)", default_factory=dict)
    student: str = doc("student model spec for training", default="smollm2-135m")
    preset: str = doc("self-instruct | alpaca | magpie | evol (the last three write answers: no gen instances)",
                      default="self-instruct")
    seed: int = doc("random seed for every stage", default=42)
    train: bool = doc("train and evaluate the student (false stops after curation)", default=True)
    instructions: dict = doc("GenerationConfig overrides for gen instructions", default_factory=dict)
    instances: dict = doc("InstancesConfig overrides for gen instances", default_factory=dict)
    curate: dict = doc("curate config overrides (same keys as gen curate's YAML)", default_factory=dict)
    training: dict = doc("TrainConfig overrides for gen train", default_factory=dict)


def run_config(flags: dict[str, Any], config_file: str | None) -> RunConfig:
    file_values = load_yaml(config_file) if config_file else {}
    cfg = build(RunConfig, [(f"--config {config_file}", file_values), ("flags", flags)])
    if cfg.preset not in ONE_PASS + ("self-instruct",):
        raise ConfigError(f"preset '{cfg.preset}': choose self-instruct, {', '.join(ONE_PASS)}")
    return cfg


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"\n== {msg}", file=sys.stderr, flush=True)


@releases_locks
def run_pipeline(cfg: RunConfig, out: str | Path, overwrite: bool = False, quiet: bool = False) -> dict:
    """Run or resume every stage into `out`; returns {stage: summary}. Validation happens before any model call."""
    from .config import generation_config
    from .filters.stage import curate
    from .generator.bootstrap import generate_instructions
    from .generator.instances import InstancesConfig, generate_instances, validate_instances
    from .report import write_report
    from .trainer import TrainConfig, train
    from .trainer.config import validate as validate_training

    out = Path(out)
    # every stage's config is resolved and validated before the first model call
    gen_cfg = generation_config(dict(cfg.instructions, num=cfg.num, seeds=cfg.seeds, teacher=cfg.teacher,
                                     preset=cfg.preset, seed=cfg.seed))
    inst_cfg = build(InstancesConfig, [("instances", dict(cfg.instances, teacher=cfg.teacher))])
    validate_instances(inst_cfg)
    train_cfg = build(TrainConfig, [("training", dict(cfg.training, student=cfg.student, seed=cfg.seed))])
    validate_training(train_cfg)
    from .generator.teachers import validate_options, validate_spec
    validate_spec(cfg.teacher)  # an unknown or secret-holding spec fails before anything is written
    validate_options(cfg.teacher, cfg.teacher_options)
    top = RunDir(out, "run")
    top.check_path(inputs=[cfg.seeds] + [v for v in (cfg.instructions.get("template"),
                                                     cfg.training.get("chat_template"))
                                          if isinstance(v, str) and Path(v).exists()])
    top.open(asdict(cfg), overwrite=overwrite)  # refuses a different config before any stage starts
    t0 = time.perf_counter()
    summaries: dict[str, Any] = {}

    stages = ["instructions"] + (["instances"] if cfg.preset not in ONE_PASS else [])
    # One teacher for both generation stages, closed before curation and training (a vLLM engine or a CUDA
    # model would otherwise hold its memory through them); not loaded at all when both stages are finished.
    teacher = None
    if not all((out / s / "completed").exists() for s in stages):
        teacher = shared_teacher(cfg, gen_cfg, inst_cfg)
    try:
        _say(f"1/5 instructions -> {out / 'instructions'}", quiet)
        summaries["instructions"] = generate_instructions(gen_cfg, out / "instructions", overwrite=overwrite,
                                                          teacher=teacher, quiet=quiet)
        data = out / "instructions"
        if "instances" in stages:
            _say(f"2/5 instances -> {out / 'instances'}", quiet)
            summaries["instances"] = generate_instances(inst_cfg, data, out / "instances", overwrite=overwrite,
                                                        teacher=teacher, quiet=quiet)
            data = out / "instances"
    finally:
        if teacher is not None:
            teacher.close()
    _say(f"3/5 curate -> {out / 'curated'}", quiet)
    summaries["curate"] = curate(data, out / "curated", config=cfg.curate or None, overwrite=overwrite, quiet=quiet)
    if cfg.train:
        _say(f"4/5 train -> {out / 'train'}", quiet)
        summaries["train"] = train(train_cfg, out / "curated", out / "train", overwrite=overwrite, quiet=quiet)
    _say(f"5/5 report -> {out / 'report.html'}", quiet)
    report = write_report(out, out / "report.html")
    summaries["wall_seconds_this_session"] = round(time.perf_counter() - t0, 1)
    top.mark_completed(summaries)  # writes summary.json, then the `completed` marker
    if not quiet:
        print(where(out, report), file=sys.stderr)
    return summaries


def shared_teacher(cfg: RunConfig, gen_cfg: Any, inst_cfg: Any):
    """The teacher both generation stages use: `teacher_options` for the backend, the larger of the two stages'
    batch sizes (each stage's calls then fit one backend batch, as with a teacher of its own), prices and rps
    from the instructions stage (the budget limits themselves are checked by each stage)."""
    from .generator.teachers import Budget, make_teacher
    budget = Budget(getattr(gen_cfg, "price_input_per_m", 0.0), getattr(gen_cfg, "price_output_per_m", 0.0))
    return make_teacher(cfg.teacher, budget=budget, rps=getattr(gen_cfg, "rps", None),
                        batch_size=max(gen_cfg.batch_size, inst_cfg.batch_size), **cfg.teacher_options)


def where(out: Path, report: Path) -> str:
    lines = ["", "Done. Where things are:",
             f"  dataset (curated)      {out / 'curated' / 'kept.jsonl'}",
             f"  dropped, with reasons  {out / 'curated' / 'rejected.jsonl'}"]
    if (out / "train").exists():
        lines += [f"  adapter                {out / 'train' / 'adapter'}",
                  f"  before/after metrics   {out / 'train' / 'metrics.json'}",
                  f"  before/after answers   {out / 'train' / 'eval.jsonl'}"]
    lines += [f"  report                 {report}",
              f"  export for a trainer   gen export {out / 'curated'} --format messages --out train.jsonl"]
    return "\n".join(lines)
