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
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .config import TEACHER_OPTIONS_DOC, ConfigError, build, doc, identity_values, load_yaml
from .rundir import releases_locks
from .stage import PIPELINE, STAGES, Lifecycle, Outcome, Stage


ONE_PASS = ("alpaca", "magpie", "evol")  # presets whose records already carry their answers (no gen instances)


@dataclass
class RunConfig:
    """`gen run`: shared choices, plus per-stage sections (each a mapping of that stage's own options, which win
    over the shared ones: a section's `teacher` or `seed` is that stage's)."""

    num: int = doc("instructions to keep", default=30)
    seeds: str | None = doc("seed file; None = packaged seeds", default=None)
    teacher: str = doc("teacher spec for both generation stages (unless a section names its own): "
                       "transformers:MODEL | vllm:MODEL | openai:URL@MODEL | openai:URL,URL@MODEL (several "
                       "endpoints of one model)", default="smollm2-135m")
    teacher_options: dict = doc(TEACHER_OPTIONS_DOC, default_factory=dict)
    student: str = doc("student model spec for training", default="smollm2-135m")
    preset: str = doc("self-instruct | alpaca | magpie | evol (the last three write answers: no gen instances)",
                      default="self-instruct")
    seed: int = doc("random seed for every stage (unless a section sets its own)", default=42)
    train: bool = doc("train and evaluate the student (false stops after curation)", default=True)
    instructions: dict = doc("GenerationConfig options of gen instructions", default_factory=dict)
    instances: dict = doc("InstancesConfig options of gen instances", default_factory=dict)
    curate: dict = doc("gen curate: `filters:` (a chain replacing the default, as in its YAML), CurateOptions "
                       "(executor, workers, ray_address, shard_size, ...) and NAME: {OPTION: VALUE} changes to "
                       "the chain's entry NAME", default_factory=dict)
    training: dict = doc("TrainConfig options of gen train", default_factory=dict)


# --set STAGE.KEY: a stage's name (or its section's) -> the RunConfig field holding that stage's options
STAGE_SECTIONS = {**{s: s for s in PIPELINE}, "train": "training", "training": "training"}


def run_config(flags: dict[str, Any], config_file: str | None, sets: list[tuple[str, Any]] = (),
               extra: dict[str, dict] | None = None) -> RunConfig:
    """Resolve a RunConfig: defaults < run.yaml < flags < `extra` (per-stage values of flags, such as
    --benchmark) < --set. A --set key is a RunConfig option (num, teacher...) or STAGE.KEY, checked here
    against the stage's typed config (STAGE: instructions, instances, curate, train)."""
    file_values = load_yaml(config_file) if config_file else {}
    cfg = build(RunConfig, [(f"--config {config_file}", file_values), ("flags", flags)])
    for section, values in (extra or {}).items():
        setattr(cfg, section, {**getattr(cfg, section), **values})
    for key, value in sets:
        apply_set(cfg, key, value)
    if cfg.preset not in ONE_PASS + ("self-instruct",):
        raise ConfigError(f"preset '{cfg.preset}': choose self-instruct, {', '.join(ONE_PASS)}")
    return cfg


def apply_set(cfg: RunConfig, key: str, value: Any) -> None:
    """One `--set KEY=VALUE` into `cfg`: a RunConfig option, or a stage's (into its section)."""
    from .config import CurateOptions, GenerationConfig, set_value, unknown_key
    from .generator.instances import InstancesConfig
    from .trainer.config import TrainConfig
    if "." not in key:
        setattr(cfg, key.replace("-", "_"), set_value(RunConfig, key, key, value))
        return
    stage, rest = key.split(".", 1)
    if stage not in STAGE_SECTIONS:
        raise unknown_key(f"--set {key}", stage, PIPELINE, what="stage")
    section = STAGE_SECTIONS[stage]
    values = dict(getattr(cfg, section) or {})
    if section == "curate":
        if "." in rest:  # NAME.OPTION of a filter entry: checked against the chain in resolve_stages
            name, option = rest.split(".", 1)
            entry = values.get(name)
            values[name] = {**(entry if isinstance(entry, dict) else {}), option: value}
        elif rest == "filters":
            values[rest] = value
        else:
            values[rest] = set_value(CurateOptions, key, rest, value)
    else:
        cls = {"instructions": GenerationConfig, "instances": InstancesConfig, "training": TrainConfig}[section]
        rest = rest.replace("-", "_")
        values[rest] = set_value(cls, key, rest, value)
    setattr(cfg, section, values)


@dataclass
class Stages:
    """Every stage's resolved, validated config."""

    instructions: Any  # GenerationConfig
    instances: Any  # InstancesConfig
    chain: Any  # CurateConfig
    curate: Any  # CurateOptions
    train: Any  # TrainConfig


def resolve_stages(cfg: RunConfig) -> Stages:
    """Each stage's typed config: its defaults < the run's shared values (teacher, teacher_options, seed,
    student...) < its own section, so a per-stage teacher or seed wins. Validated here, before any model call."""
    from .config import (CurateOptions, GenerationConfig, curate_overrides, generation_config, unknown_key,
                         validate_curate_options)
    from .filters.chain import load_config
    from .generator.instances import InstancesConfig, validate_instances
    from .trainer.config import TrainConfig, yaml_floats, validate as validate_training

    def own(section: str, cls) -> dict:
        values = getattr(cfg, section)
        known = {f.name for f in fields(cls)}
        for k in values:
            if not isinstance(k, str) or k.replace("-", "_") not in known:
                raise unknown_key(section, str(k), known)
        return {k.replace("-", "_"): v for k, v in values.items()}

    shared = {"teacher": cfg.teacher, "teacher_options": cfg.teacher_options}
    gen = generation_config({**dict(shared, num=cfg.num, seeds=cfg.seeds, preset=cfg.preset, seed=cfg.seed),
                             **own("instructions", GenerationConfig)}, label="instructions")
    inst = build(InstancesConfig, [("instances", {**shared, **own("instances", InstancesConfig)})])
    validate_instances(inst)
    train = build(TrainConfig, [("training", {"student": cfg.student, "seed": cfg.seed,
                                              **yaml_floats(own("training", TrainConfig))})])
    validate_training(train)
    section = dict(cfg.curate)
    chain_values = {"filters": section.pop("filters")} if "filters" in section else None
    option_names = {f.name for f in fields(CurateOptions)}
    options = {k: section.pop(k) for k in list(section) if k in option_names}
    overrides = []
    for name, changes in section.items():
        if not isinstance(changes, dict):
            raise unknown_key("curate", str(name), ["filters", *sorted(option_names), "NAME: {OPTION: VALUE}"])
        overrides += [(f"curate.{name}.{option}", str(name), str(option), v) for option, v in changes.items()]
    chain = curate_overrides(load_config(chain_values), overrides)
    cur = build(CurateOptions, [("curate", options)])
    validate_curate_options(cur)
    return Stages(gen, inst, chain, cur, train)


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"\n== {msg}", file=sys.stderr, flush=True)


def run_identity(cfg: RunConfig) -> dict[str, Any]:
    """What the run folder is identified by (its config.json): the RunConfig, less what does not change what is
    made (a section's budget options, the teachers' transport options: see config.identity_values), so an
    interrupted run resumes with another cooldown_s or a larger max_cost and is refused for another teacher."""
    ident = identity_values(asdict(cfg))
    for section in ("instructions", "instances"):
        ident[section] = identity_values(ident[section])
    return ident


@releases_locks
def run_pipeline(cfg: RunConfig, out: str | Path, overwrite: bool = False, quiet: bool = False) -> dict:
    """Run or resume every stage into `out`; returns {stage: summary}. Validation happens before any model call.
    A completed run folder with the same identity answers its summary.json at once (nothing is run)."""
    from .filters.stage import curate
    from .generator.bootstrap import generate_instructions
    from .generator.instances import generate_instances
    from .generator.teachers import validate_options, validate_spec
    from .report import write_report
    from .trainer import train

    out = Path(out)
    st = resolve_stages(cfg)  # every stage's config is resolved and validated before the first model call
    gen_cfg, inst_cfg = st.instructions, st.instances
    one_pass = gen_cfg.preset in ONE_PASS
    for c in (gen_cfg,) if one_pass else (gen_cfg, inst_cfg):
        validate_spec(c.teacher)  # an unknown or secret-holding spec fails before anything is written
        validate_options(c.teacher, c.teacher_options)
    lc = Lifecycle(Stage("run", out, identity=run_identity(cfg),
                         inputs=[gen_cfg.seeds] + [v for v in (gen_cfg.template, st.train.chat_template)
                                                   if isinstance(v, str) and Path(v).exists()]),
                   overwrite=overwrite, quiet=quiet)
    lc.check_path()
    done = lc.finished()  # a completed run: its summary, nothing run or written
    if done is not None:
        return done
    lc.open()  # refuses a different config before any stage starts
    t0 = time.perf_counter()
    summaries: dict[str, Any] = {}

    folder = {s: out / STAGES[s].folder for s in PIPELINE}
    stages = [s for s in PIPELINE if not (s == "instances" and one_pass) and not (s == "train" and not cfg.train)]
    generation = [s for s in stages if s in ("instructions", "instances")]
    step = {s: f"{i}/{len(PIPELINE) + 1} {s} -> {folder[s]}" for i, s in enumerate(PIPELINE, 1)}
    # One teacher for both generation stages when they name the same one, closed before curation and training (a
    # vLLM engine or a CUDA model would otherwise hold its memory through them); not loaded at all when both
    # stages are finished. A stage with a teacher of its own (a per-stage `teacher:`) builds and closes it itself.
    teacher = None
    shared = one_pass or (gen_cfg.teacher, gen_cfg.teacher_options) == (inst_cfg.teacher, inst_cfg.teacher_options)
    if shared and not all((folder[s] / "completed").exists() for s in generation):
        teacher = shared_teacher(gen_cfg, None if one_pass else inst_cfg)
    try:
        _say(step["instructions"], quiet)
        summaries["instructions"] = generate_instructions(gen_cfg, folder["instructions"], overwrite=overwrite,
                                                          teacher=teacher, quiet=quiet)
        if "instances" in stages:
            _say(step["instances"], quiet)
            summaries["instances"] = generate_instances(inst_cfg, folder["instructions"], folder["instances"],
                                                        overwrite=overwrite, teacher=teacher, quiet=quiet)
    finally:
        if teacher is not None:
            teacher.close()
    _say(step["curate"], quiet)
    summaries["curate"] = curate(folder[generation[-1]], folder["curate"], config=st.chain, overwrite=overwrite,
                                 quiet=quiet, **asdict(st.curate))
    if "train" in stages:
        _say(step["train"], quiet)
        summaries["train"] = train(st.train, folder["curate"], folder["train"], overwrite=overwrite, quiet=quiet)
    _say(f"{len(PIPELINE) + 1}/{len(PIPELINE) + 1} report -> {out / 'report.html'}", quiet)
    report = write_report(out, out / "report.html")
    summaries["wall_seconds_this_session"] = round(time.perf_counter() - t0, 1)
    return lc.finish(Outcome(summaries, where=where(out, report)))  # summary.json, then `completed` last


def shared_teacher(gen_cfg: Any, inst_cfg: Any | None):
    """The teacher both generation stages use (they name the same teacher and teacher_options): the larger of
    the two stages' batch sizes (each stage's calls then fit one backend batch, as with a teacher of its own),
    prices and rps from the instructions stage (the budget limits themselves are checked by each stage)."""
    from .generator.teachers import Budget, make_teacher
    budget = Budget(getattr(gen_cfg, "price_input_per_m", 0.0), getattr(gen_cfg, "price_output_per_m", 0.0))
    batch = max(gen_cfg.batch_size, inst_cfg.batch_size) if inst_cfg is not None else gen_cfg.batch_size
    return make_teacher(gen_cfg.teacher, budget=budget, rps=getattr(gen_cfg, "rps", None), batch_size=batch,
                        **gen_cfg.teacher_options)


def where(out: Path, report: Path) -> str:
    cur, tr = out / STAGES["curate"].folder, out / STAGES["train"].folder
    lines = ["", "Done. Where things are:",
             f"  dataset (curated)      {cur / STAGES['curate'].output}",
             f"  dropped, with reasons  {cur / 'rejected.jsonl'}"]
    if tr.exists():
        lines += [f"  adapter                {tr / 'adapter'}",
                  f"  before/after metrics   {tr / 'metrics.json'}",
                  f"  before/after answers   {tr / 'eval.jsonl'}"]
    lines += [f"  report                 {report}",
              f"  export for a trainer   gen export {cur} --format messages --out train.jsonl"]
    return "\n".join(lines)
