"""Trainer benchmark (issue 5), run by hand: `python benchmarks/trainer.py [--steps 3] [--rounds 3] [--threads 1]`.

1. Overhead of our `gen train` path against a minimal trl SFTTrainer + peft script with the same settings, on
   the embedded student (SmolLM2-135M-Instruct) and a fixed exported set (the 175 Self-Instruct seed tasks of
   ../shared/data, exported as `messages` JSONL): training tokens/s (target >= 0.95 of the script's) and peak
   RSS (target <= 1.05 of the script's). Each side runs in its own process (peak RSS from wait4), in rotating
   order, `--rounds` times; the medians are compared. Both train on the same examples in the same order. Our side runs the whole command (preflight, held-out loss before
   and after, adapter save); its tokens/s is over the training loop, like the script's.
2. Peak memory of nf4 vs none (plain LoRA) on the embedded student, and the per-step time of each on CPU
   (`gen train --quantization nf4`, the same runs as in 1 otherwise).
3. Only when CUDA is available (nothing here measures a GPU otherwise): a 0.66B Llama-shaped model (random
   weights, built from a config; speed and memory do not depend on the values) trained with nf4 (QLoRA) and with
   bf16 LoRA: peak GPU memory and tokens/s.
The ratios compare runs made in the same invocation on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

# The settings both sides use: QLoRA's LoRA and optimizer defaults, a CPU-sized batch and sequence length.
SETTINGS = dict(batch_size=4, grad_accum=1, max_seq_length=256, lora_r=64, lora_alpha=16, lora_dropout=0.1,
                learning_rate=2e-4, lr_scheduler="constant_with_warmup", warmup_ratio=0.03, max_grad_norm=0.3,
                seed=42)


def export_set(folder: Path) -> Path:
    """The fixed training set: Self-Instruct's 175 seed tasks as messages JSONL (one line per instance)."""
    from instructgen.examples import iter_examples
    from instructgen.records import read_seed_tasks

    out = folder / "seeds.messages.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        for e in iter_examples(read_seed_tasks(SHARED / "self_instruct_seed_tasks.jsonl")):
            f.write(json.dumps({"id": e["id"], "messages": e["messages"]}, ensure_ascii=False) + "\n")
    return out


def baseline_set(data: Path, folder: Path) -> tuple[Path, int]:
    """The script's data: exactly the examples our side trains on (its held-out split removed, examples with no
    response token after truncation dropped), in the same order, so both samplers draw the same batches."""
    from instructgen.trainer.config import TrainConfig
    from instructgen.trainer.data import encode, load_examples, split_heldout
    from instructgen.trainer.loop import load_tokenizer

    cfg = TrainConfig(**SETTINGS)
    train, _ = split_heldout(load_examples(data), cfg.heldout_share, cfg.min_heldout, cfg.seed)
    tok, _ = load_tokenizer(cfg)
    keep = [e for e in train if any(x != -100 for x in encode(tok, e["messages"], cfg.max_seq_length)["labels"])]
    out = folder / "train_split.messages.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        for e in keep:
            f.write(json.dumps({"id": e["id"], "messages": e["messages"]}, ensure_ascii=False) + "\n")
    return out, len(keep)


def run_measured(cmd: list[str]) -> tuple[int, float, str]:
    """Run a command in its own process; returns (its peak RSS in bytes, wall seconds, stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, text=True,
                                env=dict(os.environ, HF_HUB_OFFLINE="1"))
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the max over all children
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd[:5])} ... failed:\n{err.read()[-3000:]}")
        return usage.ru_maxrss * 1024, wall, out.read()


def ours(data: Path, out: Path, steps: int, quantization: str = "none", student: str | None = None,
         extra: dict | None = None) -> dict:
    s = dict(SETTINGS, **(extra or {}))
    cmd = [sys.executable, "-m", "instructgen", "train", str(data), "--out", str(out), "--quiet",
           "--max-steps", str(steps), "--cpu-max-steps", "0", "--eval-generations", "0", "--quantization",
           quantization, "--save-steps", str(steps)]
    cfg = out.with_suffix(".yaml")
    cfg.write_text("".join(f"{k}: {v}\n" for k, v in s.items()) + (f"student: {student}\n" if student else ""))
    rss, wall, _ = run_measured(cmd + ["--config", str(cfg)])
    m = json.loads((out / "metrics.json").read_text())["train"]
    return {"tokens_per_s": m["tokens_per_s"], "peak_rss": rss, "wall_s": wall, "train_s": m["seconds"],
            "tokens": m["tokens_seen"], "weights_bytes": m["weights_bytes"], "peak_memory": m["peak_memory_bytes"]}


def script(data: Path, out: Path, steps: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--baseline", str(data), str(out), str(steps)]
    rss, wall, stdout = run_measured(cmd)
    r = json.loads(stdout.strip().splitlines()[-1])
    return dict(r, peak_rss=rss, wall_s=wall)


def minimal_trl_script(data: str, out: str, steps: int) -> None:
    """The baseline: trl's documented SFT recipe, prompt-completion data (completion-only loss), peft LoRA."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from instructgen.models import resolve

    path, _ = resolve("smollm2-135m")
    config = AutoConfig.from_pretrained(path)
    del config.quantization_config  # the cached conversion keeps the GGUF's tag; the weights are plain fp32
    model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(path)
    ds = load_dataset("json", data_files=data, split="train")
    ds = ds.map(lambda e: {"prompt": e["messages"][:1], "completion": e["messages"][1:]},
                remove_columns=ds.column_names)
    s = SETTINGS
    args = SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=s["batch_size"],
                     gradient_accumulation_steps=s["grad_accum"], max_length=s["max_seq_length"],
                     learning_rate=s["learning_rate"], lr_scheduler_type=s["lr_scheduler"],
                     warmup_steps=s["warmup_ratio"], max_grad_norm=s["max_grad_norm"], optim="adamw_torch",
                     seed=s["seed"], use_cpu=True, bf16=False, activation_checkpointing=False, logging_steps=1,
                     save_strategy="no", report_to="none", disable_tqdm=True,
                     include_num_input_tokens_seen="non_padding")
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         peft_config=LoraConfig(r=s["lora_r"], lora_alpha=s["lora_alpha"],
                                                lora_dropout=s["lora_dropout"], target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    result = trainer.train()
    seconds = result.metrics["train_runtime"]
    print(json.dumps({"tokens_per_s": trainer.state.num_input_tokens_seen / seconds, "train_s": seconds,
                      "tokens": trainer.state.num_input_tokens_seen}))


def tiny_llama_folder(folder: Path) -> Path:
    """A 0.66B Llama-shaped model with random bf16 weights and the embedded student's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from instructgen.models import resolve

    tok = AutoTokenizer.from_pretrained(resolve("smollm2-135m")[0])
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=1536, intermediate_size=4096, num_hidden_layers=24,
                      num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=4096,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per measured run")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each side, in rotating order")
    ap.add_argument("--skip-nf4", action="store_true", help="skip the nf4 run (slow on CPU)")
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS for every run (default: torch's); 1 is steadier "
                                                "on a machine shared with other jobs")
    ap.add_argument("--baseline", nargs=3, metavar=("DATA", "OUT", "STEPS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.baseline:
        minimal_trl_script(a.baseline[0], a.baseline[1], int(a.baseline[2]))
        return
    if a.threads:
        os.environ["OMP_NUM_THREADS"] = str(a.threads)  # inherited by every measured process
    if not (SHARED / "self_instruct_seed_tasks.jsonl").exists():
        raise SystemExit(f"{SHARED} is absent: this benchmark needs the real seed tasks")
    import torch

    from instructgen.models import resolve
    from instructgen.progress import table
    resolve("smollm2-135m")  # convert the embedded student once, outside the timings

    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        tmp = Path(tmp)
        data = export_set(tmp)
        n = sum(1 for _ in open(data))
        same, n_train = baseline_set(data, tmp)
        print(f"data: {n} examples (Self-Instruct seed tasks as messages JSONL), {n_train} trained on by both sides "
              f"in the same order; settings: {SETTINGS}; {a.steps} steps per run, {a.rounds} rounds; CPU threads "
              f"{os.environ.get('OMP_NUM_THREADS') or torch.get_num_threads()}", flush=True)
        sides = ["script", "ours"] + ([] if a.skip_nf4 else ["nf4"])
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        for r in range(a.rounds):
            for side in sides[r % len(sides):] + sides[:r % len(sides)]:  # rotate the order every round
                res = (script(same, tmp / f"script{r}", a.steps) if side == "script" else
                       ours(data, tmp / f"{side}{r}", a.steps, quantization="nf4" if side == "nf4" else "none"))
                runs[side].append(res)
                print(f"  round {r + 1} {side:6s}: {res['tokens_per_s']:7.1f} tok/s, peak RSS "
                      f"{res['peak_rss'] / 2**20:7.0f} MiB, train {res['train_s']:.1f} s, wall {res['wall_s']:.1f} s",
                      flush=True)
        med = {side: {k: statistics.median(r[k] for r in rs) for k in ("tokens_per_s", "peak_rss", "train_s")}
               for side, rs in runs.items()}
        low = {side: min(r["peak_rss"] for r in rs) for side, rs in runs.items()}
        tps = med["ours"]["tokens_per_s"] / med["script"]["tokens_per_s"]
        rss = med["ours"]["peak_rss"] / med["script"]["peak_rss"]
        print("\n1. gen train vs minimal trl SFTTrainer + peft script (embedded student, CPU, medians)")
        print(table([["tokens/s", med["ours"]["tokens_per_s"], med["script"]["tokens_per_s"], tps, ">= 0.95",
                      "ok" if tps >= 0.95 else "MISS"],
                     ["peak RSS MiB", med["ours"]["peak_rss"] / 2**20, med["script"]["peak_rss"] / 2**20, rss,
                      "<= 1.05", "ok" if rss <= 1.05 else "MISS"],
                     ["lowest peak RSS MiB", low["ours"] / 2**20, low["script"] / 2**20, low["ours"] / low["script"],
                      "", ""]],
                    header=["", "gen train", "script", "ratio", "target", ""]))

        if not a.skip_nf4:
            w = {q: runs[side][0]["weights_bytes"] for q, side in (("none", "ours"), ("nf4", "nf4"))}
            print("\n2. nf4 vs none on the embedded student (CPU; gen train; medians; peak RSS of the whole command)")
            print(table([[q, w[q] / 2**20, med[side]["peak_rss"] / 2**20, med[side]["train_s"] / a.steps,
                          med[side]["tokens_per_s"]] for q, side in (("none", "ours"), ("nf4", "nf4"))],
                        header=["quantization", "weights MiB", "peak RSS MiB", "s/step", "tokens/s"]))
            print(f"   nf4/none: weights {w['nf4'] / w['none']:.2f}, peak RSS "
                  f"{med['nf4']['peak_rss'] / med['ours']['peak_rss']:.2f}, step time "
                  f"{med['nf4']['train_s'] / med['ours']['train_s']:.2f}x")

        if torch.cuda.is_available():
            folder = tiny_llama_folder(tmp / "llama-0.66b")
            gpu = {"bf16 LoRA": ours(data, tmp / "gpu-none", 20, "none", str(folder), dict(grad_accum=4, max_seq_length=512)),
                   "nf4 QLoRA": ours(data, tmp / "gpu-nf4", 20, "nf4", str(folder), dict(grad_accum=4, max_seq_length=512))}
            print(f"\n3. GPU ({torch.cuda.get_device_name(0)}): 0.66B Llama-shaped model, 20 steps of 4 x 4, gen train")
            print(table([[k, v["peak_memory"] / 2**30, v["tokens_per_s"]] for k, v in gpu.items()],
                        header=["", "peak GPU memory GiB", "tokens/s"]))
        else:
            print("\n3. GPU: no CUDA device here; nothing measured (the script measures it where one exists)")


if __name__ == "__main__":
    main()
