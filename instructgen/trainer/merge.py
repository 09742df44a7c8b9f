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

from ..rundir import RunDirError, write_json

DTYPES = ("auto", "float32", "bfloat16", "float16")


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
    if target.exists() and any(target.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{target} exists and is not empty; pass --overwrite or choose another --out")
        if not (target / "completed").exists() and not (target / "config.json").exists():
            raise FileExistsError(f"{target} is not a merged model folder; refusing to delete it")

    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from ..models import resolve
    student = json.loads((run / "config.json").read_text(encoding="utf-8"))["config"]["student"]
    path, _ = resolve(student)
    config = AutoConfig.from_pretrained(path)
    qc = getattr(config, "quantization_config", None)
    if isinstance(qc, dict) and qc.get("quant_method") == "gguf":  # de-quantized conversion: plain weights
        del config.quantization_config
    t0 = time.perf_counter()
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    base = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch_dtype)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    merged.save_pretrained(str(tmp))
    AutoTokenizer.from_pretrained(str(adapter)).save_pretrained(str(tmp))  # the chat template used in training
    write_json(tmp / "merge_info.json", {"base": student, "base_path": path, "adapter": str(adapter.resolve()),
                                         "dtype": str(next(merged.parameters()).dtype).replace("torch.", "")})
    (tmp / "completed").write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    if not quiet:
        print(f"merged model ({time.perf_counter() - t0:.1f} s): {target}", file=sys.stderr)
    return target
