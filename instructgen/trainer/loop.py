"""`gen train`: QLoRA (Dettmers et al. 2023) or plain LoRA on task records, with trl's SFTTrainer and peft.

The training path is `_train`, one screen: load, quantize, add LoRA, build data, train, save (merge and push
are separate steps in merge.py and hub.py). Everything around it is glue: the run folder (resume or refuse,
`completed` last), the preflight report, the before/after evaluation, the training log and progress bar.

Output folder:
  config.json, versions.json   the resolved TrainConfig (plus the data path and fingerprint), library versions
  preflight.txt                the report printed before training
  checkpoints/checkpoint-N/    every `save_steps` optimizer steps and at the last; a re-run resumes from the last
  train_log.jsonl              one {"step", "loss", "learning_rate", "tokens_per_s"} per logging step, plus
                               {"step", "eval_loss"} rows before and after training
  eval_before.json             the base model's held-out loss and answers (computed once)
  adapter/                     the LoRA adapter, the tokenizer with the chat template used, training_info.json
  eval.jsonl                   {"id", "instruction", "input", "reference", "before", "after"} per held-out answer
  metrics.json                 {"before": {loss, perplexity}, "after": {...}, "train": {steps, train_loss, ...}}
  summary.json, completed      written last
  merged/                      with --merge or `gen merge`: base + adapter in full precision
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Importing transformers' trainer imports bitsandbytes, whose CPU backend then warns that it could not download
# an optional kernel (nothing is downloaded at run time here; its built-in fallback is used): silence that line.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
from transformers import TrainerCallback  # noqa: E402 - this module is imported only to train

from ..config import to_dict
from ..records import iter_jsonl, repair_torn_tail
from ..rundir import RunDir, releases_locks, write_json
from ..stage import Lifecycle, Outcome, Stage
from ..stage import fingerprint as stage_fingerprint
from .config import Plan, TrainConfig, plan, validate
from .data import Encoded, encode_all, fingerprint, load_examples, set_chat_template, split_heldout
from .evaluate import cached_before, eval_rows, evaluate
from .preflight import check, estimate_memory, report

TRAIN_LOG = "train_log.jsonl"


@releases_locks
def train(cfg: TrainConfig, data: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False,
          quiet: bool = False, merge: bool = False, push_to_hub: str | None = None, private: bool = False) -> dict:
    """Train a LoRA adapter on `data` (a stage folder or a records file) into `out`; returns metrics.json.

    A finished `out` with the same config is a no-op, an interrupted one resumes from its last checkpoint, one
    with another config is refused unless `overwrite`. Everything that can be wrong with the input (options,
    data, student spec, templates, the preflight checks) fails before `out` is written. `merge` then writes
    `out/merged`; `push_to_hub` uploads the adapter with a model card (HF_TOKEN, or the token `hf auth login` saved)."""
    validate(cfg)
    from .hub import check_repo, hub_token
    token = None
    if push_to_hub:
        check_repo(push_to_hub)
        token = hub_token()
    stage = Stage("train", Path(out), inputs=[data, cfg.chat_template], result="metrics.json",
                  show=lambda _: f"metrics: {Path(out) / 'metrics.json'}")
    lc = Lifecycle(stage, overwrite, quiet)
    lc.check_path()
    examples = load_examples(data, cfg.user_template, cfg.system)
    stage.identity = dict(to_dict(cfg), data=str(Path(data).resolve()), data_fingerprint=fingerprint(examples))
    if cfg.chat_template and Path(cfg.chat_template).is_file():
        stage.identity["chat_template_fingerprint"] = stage_fingerprint(files=[cfg.chat_template])
    metrics = lc.finished()
    if metrics is None:
        prepared = prepare(cfg, examples)  # tokenizer and preflight: a refusal here writes nothing
        run = lc.open().dir
        metrics = _train(cfg, prepared, run, quiet)  # the trainer and its model are freed when it returns
        metrics["benchmark"] = benchmark(cfg, run, quiet)
        lc.finish(Outcome({"before": metrics["before"], "after": metrics["after"],
                           "steps": metrics["train"]["steps"], "examples": metrics["train"]["examples"],
                           "benchmark": metrics["benchmark"]}, files={"metrics.json": metrics}, result=metrics))
    run = lc.dir
    if merge and not (run.path / "merged" / "completed").exists():
        from .merge import merge_adapter
        merge_adapter(run.path, quiet=quiet)
    if push_to_hub:
        from .hub import push_adapter
        url = push_adapter(run.path, push_to_hub, token, private=private)
        _say(f"adapter uploaded: {url}", quiet)
    return metrics


@dataclass
class Prepared:
    """The tokenizer and the encoded examples, checked by the preflight."""

    tok: Any
    model_path: str
    template: str  # where the chat template came from: "student", "default" or the file given
    heldout: list[dict]
    train_enc: Encoded
    held_enc: Encoded


def prepare(cfg: TrainConfig, examples: list[dict]) -> Prepared:
    """Tokenizer, held-out split, encoded examples and the preflight checks: everything before the model loads."""
    _quiet_libraries()
    tok, model_path, template = load_tokenizer(cfg)
    train_ex, held_ex = split_heldout(examples, cfg.heldout_share, cfg.min_heldout, cfg.seed)
    train_enc = encode_all(tok, train_ex, cfg.max_seq_length)
    held_enc = encode_all(tok, held_ex, cfg.max_seq_length)
    check(train_enc, held_enc, cfg.max_seq_length, cfg.max_truncated_share)
    return Prepared(tok, model_path, template, held_ex, train_enc, held_enc)


def _train(cfg: TrainConfig, d: Prepared, run: RunDir, quiet: bool) -> dict:
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTTrainer

    p = plan(cfg)
    model = load_model(d.model_path, p, cfg)                                       # load + quantize
    log = TrainLog(run.file(TRAIN_LOG), quiet)
    trainer = SFTTrainer(model=model, args=sft_args(cfg, p, run.path), processing_class=d.tok,
                         train_dataset=Dataset.from_list(d.train_enc.rows),        # data: prepare()
                         peft_config=lora_config(cfg), callbacks=[log])            # add LoRA
    trainer.remove_callback(PrinterCallback)
    steps = planned_steps(len(d.train_enc.rows), cfg, p)
    mem = _preflight(trainer, d, cfg, p, steps, run, quiet)
    held_ds, gen_ex = Dataset.from_list(d.held_enc.rows), d.heldout[:cfg.eval_generations]
    before = cached_before(run.file("eval_before.json"), lambda: evaluate(
        trainer, d.tok, held_ds, gen_ex, cfg.eval_max_new_tokens, cfg.eval_batch_size, adapter=False))
    ckpt = resume_point(run.path / "checkpoints", run.file(TRAIN_LOG), before["loss"])
    _say(f"resuming from {ckpt}" if ckpt else f"training: {steps} steps on {p.device}", quiet)
    trainer.train(resume_from_checkpoint=ckpt)                                     # train
    save_adapter(trainer, d, run.path / "adapter", cfg, p)                         # save
    after = evaluate(trainer, d.tok, held_ds, gen_ex, cfg.eval_max_new_tokens, cfg.eval_batch_size, adapter=True)
    return _finish(run, trainer, log, before, after, gen_ex, d, p, ckpt, mem, quiet)


# ------------------------------------------------------------------------------------------------ pieces

def load_tokenizer(cfg: TrainConfig):
    """(tokenizer with the chat template training uses and a pad token, model folder, template source)."""
    from transformers import AutoTokenizer

    from ..models import resolve
    path, gguf = resolve(cfg.student)
    tok = AutoTokenizer.from_pretrained(path, gguf_file=gguf)
    template = set_chat_template(tok, cfg.chat_template)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, path, template


def load_model(path: str, p: Plan, cfg: TrainConfig):
    """Load the base model, quantized to 4-bit NF4 with double quantization when the plan says so."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig

    dtype = getattr(torch, p.compute_dtype)
    config = AutoConfig.from_pretrained(path)
    qc = getattr(config, "quantization_config", None)
    if isinstance(qc, dict) and qc.get("quant_method") == "gguf":  # a de-quantized GGUF conversion: plain weights
        del config.quantization_config
    kw: dict = {}
    if p.quantization == "nf4":
        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=cfg.double_quant,
            bnb_4bit_compute_dtype=dtype)  # QLoRA section 3: NF4 storage, bf16 compute
        kw["device_map"] = {"": torch.cuda.current_device()} if p.device == "cuda" else None
    model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=dtype, **kw)
    if p.quantization == "nf4" and p.device == "cpu":
        # bitsandbytes 0.50 repacks NF4 weights for a CPU inference kernel on the first eval-mode forward and
        # keeps them repacked; that kernel has no backward, so training after the "before" evaluation would get
        # wrong gradients (tests/trainer/test_loop.py::test_nf4_cpu_gradients_survive_evaluation).
        for m in model.modules():
            if hasattr(m, "support_avx512bf16_for_cpu"):
                m.support_avx512bf16_for_cpu = False
    return model


def lora_config(cfg: TrainConfig):
    from peft import LoraConfig
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_target_modules, bias="none", task_type="CAUSAL_LM")


def sft_args(cfg: TrainConfig, p: Plan, out: Path):
    from trl import SFTConfig
    cuda = p.device == "cuda"
    return SFTConfig(
        output_dir=str(out / "checkpoints"), seed=cfg.seed, data_seed=cfg.seed,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        per_device_eval_batch_size=cfg.eval_batch_size, num_train_epochs=cfg.epochs, max_steps=p.max_steps,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio,
        max_grad_norm=cfg.max_grad_norm, weight_decay=cfg.weight_decay, adam_beta2=cfg.adam_beta2,
        optim=p.optim, activation_checkpointing=p.gradient_checkpointing,
        bf16=cuda and p.compute_dtype == "bfloat16", fp16=cuda and p.compute_dtype == "float16", use_cpu=not cuda,
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, report_to="none", disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        max_length=None)  # examples arrive tokenized and truncated (data.encode), labels included


def planned_steps(n_train: int, cfg: TrainConfig, p: Plan) -> int:
    if p.max_steps > 0:
        return p.max_steps
    per_epoch = max(1, math.ceil(math.ceil(n_train / cfg.batch_size) / cfg.grad_accum))
    return math.ceil(cfg.epochs * per_epoch)


def resume_point(checkpoints: Path, log: Path, before_loss: float | None) -> str | None:
    """The last whole checkpoint (trainer_state.json is written last), with the training log cut back to it;
    half-written checkpoints from a kill are removed."""
    done = []
    repair_torn_tail(log)  # a kill mid-write leaves half a line
    for d in sorted(checkpoints.glob("checkpoint-*")) if checkpoints.exists() else []:
        if (d / "trainer_state.json").exists():
            done.append((int(d.name.split("-")[-1]), d))
        else:
            shutil.rmtree(d)
    step, last = max(done) if done else (0, None)
    rows = [r for _, r in iter_jsonl(log) if r.get("step", 0) <= step and "eval_loss" not in r] if log.exists() else []
    rows.insert(0, {"step": 0, "eval_loss": before_loss})
    tmp = log.with_name(log.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, log)
    return str(last) if last else None


def save_adapter(trainer, d: Prepared, target: Path, cfg: TrainConfig, p: Plan) -> None:
    """Adapter, tokenizer (its chat template included) and what inference needs to know, written atomically."""
    tok, tmp = d.tok, target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    trainer.model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    write_json(tmp / "training_info.json", {
        "student": cfg.student, "quantization": p.quantization, "compute_dtype": p.compute_dtype,
        "chat_template": {"default": "default (### Instruction / ### Response)"}.get(d.template, d.template),
        "eos_token": tok.eos_token, "eos_token_id": tok.eos_token_id, "user_template": cfg.user_template})
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def _preflight(trainer, d: Prepared, cfg, p, steps, run, quiet):
    model, train_enc = trainer.model, d.train_enc
    trainable = sum(x.numel() for x in model.parameters() if x.requires_grad)
    total = sum(x.numel() for x in model.parameters())
    seq = min(cfg.max_seq_length, max(train_enc.lengths))
    mem = estimate_memory(model, trainable, p.optim, cfg.batch_size, seq, p.gradient_checkpointing,
                          2 if p.compute_dtype != "float32" else 4)
    text = report(train_enc, d.held_enc, trainable, total, mem, p, steps, cfg.batch_size, cfg.grad_accum)
    run.file("preflight.txt").write_text(text + "\n", encoding="utf-8")
    _say(text, quiet)
    return mem


def _finish(run, trainer, log, before, after, gen_ex, d: Prepared, p, ckpt, mem, quiet) -> dict:
    state, train_enc, held_enc = trainer.state, d.train_enc, d.held_enc
    with open(run.file(TRAIN_LOG), "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": state.global_step, "eval_loss": after["loss"]}) + "\n")
    rows = [r for _, r in iter_jsonl(run.file(TRAIN_LOG)) if "loss" in r]
    losses = [r["loss"] for r in rows]
    session_tps = log.tokens / log.seconds if log.seconds > 0 and log.tokens else None
    metrics = {
        "before": {k: before[k] for k in ("loss", "perplexity")},
        "after": {k: after[k] for k in ("loss", "perplexity")},
        "train": {
            "steps": state.global_step, "train_loss": round(sum(losses) / len(losses), 6) if losses else None,
            "final_loss": losses[-1] if losses else None,
            "tokens_per_s": round(session_tps or (sum(r["tokens_per_s"] for r in rows) / max(1, len(rows))), 2),
            "seconds": round(log.seconds, 1), "tokens_seen": int(state.num_input_tokens_seen or 0),
            "epochs": round(float(state.epoch or 0), 3), "examples": len(train_enc.rows),
            "heldout_examples": len(held_enc.rows), "truncated_examples": train_enc.truncated,
            "trained_token_share": round(train_enc.trained_tokens / max(1, train_enc.total_tokens), 4),
            "quantization": p.quantization, "device": p.device, "compute_dtype": p.compute_dtype,
            "optim": p.optim, "gradient_checkpointing": p.gradient_checkpointing,
            "resumed_from": Path(ckpt).name if ckpt else None, "weights_bytes": mem.weights,
            "estimated_peak_bytes": mem.total, "peak_memory_bytes": peak_memory(p.device),
        },
    }
    with open(run.file("eval.jsonl.tmp"), "w", encoding="utf-8") as f:
        for r in eval_rows(gen_ex, before["answers"], after["answers"]):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(run.file("eval.jsonl.tmp"), run.file("eval.jsonl"))
    b, a = metrics["before"], metrics["after"]
    _say(f"held-out loss {b['loss']:.4f} -> {a['loss']:.4f}, perplexity {b['perplexity']:.2f} -> "
         f"{a['perplexity']:.2f}; adapter: {run.path / 'adapter'}; answers: {run.file('eval.jsonl')}", quiet)
    return metrics


# headline() keys of `gen eval` -> the names metrics.json, the report and the cards use
BENCH_KEYS = {"prompt_strict": "prompt_level_strict", "prompt_loose": "prompt_level_loose",
              "instruction_strict": "inst_level_strict", "instruction_loose": "inst_level_loose"}
BENCH_NAMES = {"ifbench": "IFBench", "ifeval": "IFEval", "reference": "reference outputs"}


def benchmark(cfg: TrainConfig, run: RunDir, quiet: bool) -> dict | None:
    """The student on a real benchmark (`gen eval`'s suite `cfg.benchmark`) before training and with the trained
    adapter, in OUT/benchmark_before and OUT/benchmark_after (resumable; answers cached). None when skipped."""
    if not cfg.benchmark or cfg.benchmark.lower() == "none":
        return None
    from ..eval import EvalConfig, headline, run_eval
    # the same chat template on both sides: training's file, else the student's own (or the default one, which
    # the adapter's saved tokenizer carries too)
    common = dict(model=cfg.student, suite=cfg.benchmark, max_new_tokens=cfg.benchmark_max_new_tokens,
                  batch_size=cfg.eval_batch_size, chat_template=cfg.chat_template)
    _say(f"benchmark {cfg.benchmark}: the student before and after training", quiet)
    # overwrite: these folders are ours, inside this run; a re-saved adapter is a new "after"
    before = headline(run_eval(EvalConfig(**common), run.path / "benchmark_before", overwrite=True, quiet=quiet))
    after = headline(run_eval(EvalConfig(**common, adapter=str(run.path / "adapter")), run.path / "benchmark_after",
                              overwrite=True, quiet=quiet))
    keys = {"rouge_l": "rouge_l"} if before.get("kind") == "reference" else BENCH_KEYS
    n, scored = before.get("n_prompts"), before.get("n_scored")
    out = {"suite": cfg.benchmark, "name": BENCH_NAMES.get(before.get("kind"), before.get("kind")),
           "version": before.get("suite_version"), "prompts": n,
           "unscored": (n - scored) if isinstance(n, int) and isinstance(scored, int) else 0,
           "max_new_tokens": cfg.benchmark_max_new_tokens,
           "before": {k: before.get(v) for k, v in keys.items()}, "after": {k: after.get(v) for k, v in keys.items()},
           "floor": {k: (before.get("floor") or {}).get(v) for k, v in keys.items()},
           "floor_answer": before.get("floor_answer")}
    first = next(iter(keys))
    _say(f"benchmark {out['name']} ({n} prompts), {first}: {out['before'][first]} -> {out['after'][first]} "
         f"(floor {out['floor'][first]})", quiet)
    return out


def peak_memory(device: str) -> int:
    """Peak GPU memory allocated on CUDA, else this process's peak RSS, in bytes."""
    if device == "cuda":
        import torch
        return int(torch.cuda.max_memory_allocated())
    import resource
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def _quiet_libraries() -> None:
    """Our preflight, bar and summary replace the libraries' own progress output and deprecation chatter."""
    import warnings

    import datasets
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", message=r".*deprecated and will be removed in v6", category=FutureWarning)


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


class TrainLog(TrainerCallback):
    """Writes train_log.jsonl rows and drives the progress bar (loss, tokens/s, ETA)."""

    def __init__(self, path: Path, quiet: bool):
        self.path, self.quiet, self.bar = path, quiet, None
        self.tokens, self.seconds = 0, 0.0

    def on_train_begin(self, args, state, control, **kw):
        from ..progress import bar
        self.t0 = self.t = time.perf_counter()
        self.tok0 = self.tok = state.num_input_tokens_seen or 0
        self.bar = bar(state.max_steps, "train", initial=state.global_step, unit="step",
                       disable=True if self.quiet else None)

    def on_step_end(self, args, state, control, **kw):
        self.bar.update(1)
        if state.global_step >= state.max_steps:
            control.should_save = True  # a checkpoint at the end: a crash during evaluation never retrains

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs or "loss" not in logs:
            return
        now, seen = time.perf_counter(), state.num_input_tokens_seen or 0
        tps = (seen - self.tok) / (now - self.t) if now > self.t else 0.0
        self.t, self.tok = now, seen
        row = {"step": state.global_step, "loss": round(float(logs["loss"]), 6),
               "learning_rate": float(logs.get("learning_rate", 0.0)), "tokens_per_s": round(tps, 2)}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        self.bar.set_postfix(loss=f"{row['loss']:.4f}", tok_s=f"{tps:.0f}")

    def on_train_end(self, args, state, control, **kw):
        self.seconds = time.perf_counter() - self.t0
        self.tokens = (state.num_input_tokens_seen or 0) - self.tok0
        self.bar.close()
