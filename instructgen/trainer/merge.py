"""`gen merge`: base model + trained LoRA adapter -> one full-precision model folder.

The base is reloaded unquantized from the student spec the run recorded, and the adapter is merged into those
weights (W + B·A·alpha/r). Merging into the 4-bit weights a QLoRA run trained on would re-quantize the sum and
lose most of the update, so it is never done. The result is written to a temporary folder, then renamed, and
ends with a `completed` marker; `from_pretrained(merged)` loads it with no peft.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from ..rundir import (MARKER, RunDirError, check_output_path, lock, refuse_overlap, releases_locks, temp_folder,
                      write_json)

DTYPES = ("auto", "float32", "bfloat16", "float16")


def _refuse_foreign_merge(target: Path) -> None:
    """`--overwrite` replaces only an earlier merge of ours that holds nothing but the files it wrote."""
    try:
        written = set(json.loads((target / MARKER).read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise FileExistsError(f"{target} is not a merged model folder written by gen merge; refusing to delete it "
                              f"(choose another --out)") from None
    foreign = sorted(e.name for e in target.iterdir() if e.name not in written)
    if foreign:
        raise FileExistsError(f"{target} holds files gen merge did not write ({', '.join(foreign[:5])}); move them "
                              f"out or choose another --out (nothing was removed)")


@releases_locks
def merge_adapter(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, dtype: str = "auto",
                  overwrite: bool = False, quiet: bool = False) -> Path:
    """Merge `run_dir/adapter` into its base model; writes `out` (default `run_dir/merged`) and returns it.

    dtype auto keeps the base checkpoint's own dtype (float32 for the embedded student)."""
    run = Path(run_dir)
    adapter = run / "adapter"
    if not (run / "completed").exists() or not (adapter / "adapter_config.json").exists():
        raise RunDirError(f"{run} is not a completed `gen train` folder with an adapter/; run gen train first")
    if dtype not in DTYPES:
        raise RunDirError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    target = Path(out) if out else run / "merged"
    check_output_path(target)
    refuse_overlap(target, [adapter])
    if target.exists() and any(target.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{target} exists and is not empty; pass --overwrite or choose another --out")
        _refuse_foreign_merge(target)
    lock(run)  # no merge while a `gen train` process writes this run (or another merge does)

    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..models import resolve
    student = json.loads((run / "config.json").read_text(encoding="utf-8"))["config"]["student"]
    path, _ = resolve(student)
    refuse_overlap(target, [path], what="--out")  # a merge must not replace the base model it loads
    config = AutoConfig.from_pretrained(path)
    qc = getattr(config, "quantization_config", None)
    if isinstance(qc, dict) and qc.get("quant_method") == "gguf":  # de-quantized conversion: plain weights
        del config.quantization_config
    t0 = time.perf_counter()
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    base = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch_dtype)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_folder(target)
    try:
        _write_merged(merged, adapter, student, path, tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if not quiet:
        print(f"merged model ({time.perf_counter() - t0:.1f} s): {target}", file=sys.stderr)
    return target


def _write_merged(merged, adapter: Path, student: str, path: str, tmp: Path) -> None:
    """The merged weights, the training tokenizer, merge_info.json, our marker listing the files, `completed`."""
    from transformers import AutoTokenizer
    merged.save_pretrained(str(tmp))
    AutoTokenizer.from_pretrained(str(adapter)).save_pretrained(str(tmp))  # the chat template used in training
    write_json(tmp / "merge_info.json", {"base": student, "base_path": path, "adapter": str(adapter.resolve()),
                                         "dtype": str(next(merged.parameters()).dtype).replace("torch.", "")})
    files = sorted(e.name for e in tmp.iterdir()) + [MARKER, "completed"]
    write_json(tmp / MARKER, {"tool": "instructgen", "stage": "merge", "files": files})
    (tmp / "completed").write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
