"""`gen train --push-to-hub REPO`: upload the adapter folder with a model card, as one commit.

The Hub side is `gen publish`'s (instructgen.publish): the same token lookup (HF_TOKEN, HUGGING_FACE_HUB_TOKEN,
else the token `hf auth login` saved), checked before training starts and never printed or written, and the
same upload (`commit_folder`: one commit, transient failures retried, one-line errors with the token masked).
`gen` runs offline (HF_HUB_OFFLINE=1); the upload is the one step allowed to reach the Hub. What is uploaded
names no local path: the card and the adapter's small config files (a local student is recorded by its full
path) go through `portable`, in a staged copy of the folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..config import ConfigError
from ..publish import commit_folder
from ..publish import hub_token as _hub_token
from ..report.collect import benchmark_table, portable

# adapter files whose values may hold a local path (the student's); the rest (weights, tokenizer vocabulary,
# chat template) is data and is uploaded byte for byte
PATH_FILES = ("adapter_config.json", "training_info.json", "tokenizer_config.json", "special_tokens_map.json",
              "config.json", "generation_config.json")

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
# Hub ids of the embedded students, for the card's `base_model`.
EMBEDDED_HUB_IDS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}


class HubError(ConfigError):
    """The upload cannot go ahead or failed; one clear line, the token never in it."""


def check_repo(repo: str) -> None:
    if not REPO_ID.match(repo or ""):
        raise HubError(f"--push-to-hub {repo!r}: expected OWNER/NAME (letters, digits, '-', '_', '.')")


def hub_token() -> str:
    """The write token, found as `gen publish` finds it (environment, else `hf auth login`'s saved token)."""
    return _hub_token("--push-to-hub", "nothing was trained or uploaded", error=HubError)


def base_model_id(student: str) -> str | None:
    """A hub id for the card's base_model: known for embedded students and hub-id specs, else None."""
    if student in EMBEDDED_HUB_IDS:
        return EMBEDDED_HUB_IDS[student]
    if REPO_ID.match(student) and not Path(student).exists():
        return student
    return None


def model_card(run_dir: str | os.PathLike, repo: str) -> str:
    """README.md for the adapter: metadata, how it was trained, before/after held-out numbers and benchmark
    (the table `gen report` shows; or a line saying none was run), how to load it."""
    run = Path(run_dir)
    cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))["config"]
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    versions = json.loads((run / "versions.json").read_text(encoding="utf-8"))
    tr, b, a = metrics["train"], metrics["before"], metrics["after"]
    base = base_model_id(cfg["student"])
    meta = ["---", "library_name: peft", "pipeline_tag: text-generation",
            "tags:", "- instructgen", "- lora", "- sft", "- trl"] + (["- qlora"] if tr["quantization"] == "nf4" else [])
    if base:
        meta.append(f"base_model: {base}")
    meta.append("---")
    load_base = base or cfg["student"]
    bench = benchmark_table(metrics, run)
    suite = metrics.get("benchmark") if isinstance(metrics.get("benchmark"), dict) else {}
    bench_title = f": {suite.get('name') or 'benchmark'} before and after" if bench.present else ""
    body = f"""
# {repo.split('/')[-1]}

A LoRA adapter{' (QLoRA, 4-bit NF4 base)' if tr['quantization'] == 'nf4' else ''} for `{load_base}`, trained with
instructgen's `gen train` (trl SFTTrainer + peft) on {tr['examples']:,} instruction examples.
Loss was on the response tokens only; the response ends with the EOS token `{_eos(run)}`, which was trained.

## Held-out evaluation ({tr['heldout_examples']} examples)

| | loss | perplexity |
| --- | ---: | ---: |
| before (base) | {b['loss']:.4f} | {b['perplexity']:.2f} |
| after | {a['loss']:.4f} | {a['perplexity']:.2f} |

## Instruction following{bench_title}

{bench.markdown()}

## Training

| setting | value |
| --- | --- |
| LoRA | r {cfg['lora_r']}, alpha {cfg['lora_alpha']}, dropout {cfg['lora_dropout']}, {_modules(cfg['lora_target_modules'])} |
| optimizer | {tr['optim']}, lr {cfg['learning_rate']:g} ({cfg['lr_scheduler']}, warmup {cfg['warmup_ratio']:g}), max grad norm {cfg['max_grad_norm']:g} |
| batch | {cfg['batch_size']} x {cfg['grad_accum']} accumulation |
| steps | {tr['steps']} ({tr['epochs']} epochs), max sequence length {cfg['max_seq_length']} |
| base | {tr['quantization']}, compute {tr['compute_dtype']}, on {tr['device']} |
| libraries | transformers {versions.get('transformers', '?')}, trl {versions.get('trl', '?')}, peft {versions.get('peft', '?')}, torch {versions.get('torch', '?')} |

## Use

```python
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

model = AutoPeftModelForCausalLM.from_pretrained("{repo}")
tokenizer = AutoTokenizer.from_pretrained("{repo}")  # carries the chat template used in training
messages = [{{"role": "user", "content": "Give three tips for staying healthy."}}]
ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
print(tokenizer.decode(model.generate(ids, max_new_tokens=128)[0][ids.shape[1]:], skip_special_tokens=True))
```
"""
    return portable("\n".join(meta) + "\n" + body, run)


def _modules(target: str | list[str]) -> str:
    """lora_target_modules as the card shows it: `all-linear`, or a list as `q_proj, v_proj` (not its repr)."""
    return ", ".join(target) if isinstance(target, (list, tuple)) else str(target)


def _eos(run: Path) -> str:
    info = run / "adapter" / "training_info.json"
    return json.loads(info.read_text(encoding="utf-8")).get("eos_token", "?") if info.exists() else "?"


def upload_files(run_dir: str | os.PathLike, repo: str) -> Path:
    """Write the model card into the adapter folder; returns the adapter folder (what `stage_upload` copies)."""
    adapter = Path(run_dir) / "adapter"
    (adapter / "README.md").write_text(model_card(run_dir, repo), encoding="utf-8")
    return adapter


def stage_upload(adapter: Path, run_dir: Path, into: Path) -> Path:
    """A copy of the adapter folder as it is uploaded: the files of PATH_FILES with their local paths made
    portable, every other file linked (or copied) unchanged."""
    for src in sorted(adapter.rglob("*")):
        dst = into / src.relative_to(adapter)
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.name in PATH_FILES and not src.is_symlink():
            try:
                obj = json.loads(src.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                obj = None  # not a config of ours after all: uploaded as it is
            clean = portable(obj, run_dir)
            if clean != obj:
                dst.write_text(json.dumps(clean, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                continue
        try:
            os.link(src, dst)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(src, dst)
    return into


def push_adapter(run_dir: str | os.PathLike, repo: str, token: str, private: bool = False) -> str:
    """Upload the adapter (weights, tokenizer, chat template, card) as one commit through `gen publish`'s upload
    path (`commit_folder`, retried); returns the commit URL. The endpoint is HF_ENDPOINT when set."""
    check_repo(repo)
    folder = upload_files(run_dir, repo)
    with tempfile.TemporaryDirectory(prefix="instructgen-adapter-") as tmp:
        staged = stage_upload(folder, Path(run_dir), Path(tmp) / folder.name)
        return commit_folder(staged, repo, token, repo_type="model", private=private,
                             message="Upload LoRA adapter trained with instructgen", error=HubError,
                             hint=f"the adapter is in {folder}; re-run the same command to retry")
