"""Feed `gen export` files to their consumers' own loading code, in side venvs (their pins conflict with ours).

    python benchmarks/consumers.py setup [--venvs /tmp/venvs]   # a few minutes; needs PyPI
    python benchmarks/consumers.py check                        # runs tests/test_export_consumers.py on them

`setup` makes four venvs under --venvs: `ds3` (datasets 3.6.0), `ds4` (datasets 4.0.0), `lf/venv`
(LLaMA-Factory 0.9.5 on datasets 3.6.0, the oldest major its `datasets>=2.16,<=4.0.0` pin allows) and
`ax/venv` (axolotl 0.19.0 on datasets 4.8.4, its pin). Each installs only the consumer with `--no-deps` and sees
every other package from this project's venv through a `.pth` line, so it takes seconds, not a full resolve.
What is not the consumer's pinned version (said plainly, because it is what this check can and cannot show):
transformers / torch / trl come from our venv (transformers 5.24 against LLaMA-Factory's <=5.6 and axolotl's
==5.16.1); only the data loading and conversion code paths are exercised, never their training loops;
LLaMA-Factory imports `torchaudio` at module level for audio inputs, so `lf/stubs/torchaudio` is an empty
stand-in on PYTHONPATH (no audio is ever read); axolotl's small import-time packages (colorama, addict,
posthog, distro, numba, llvmlite, httpx) and LLaMA-Factory's omegaconf are installed with --no-deps, and
LLaMA-Factory runs with DISABLE_VERSION_CHECK=1 (its own switch) because of the transformers pin.

The other sub-commands run INSIDE a side venv on a folder of exports written by the test:
    datasets FOLDER       x.parquet and disk/ with load_dataset / load_from_disk
    llamafactory FOLDER   each *.dataset_info.json entry through LLaMA-Factory's parser, loader and converter
    axolotl FOLDER        each *.axolotl.yaml entry through axolotl's loader and chat_template strategy
Each prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENVS = {"ds3": ["datasets==3.6.0"], "ds4": ["datasets==4.0.0"],
         "lf/venv": ["llamafactory==0.9.5", "datasets==3.6.0", "omegaconf", "antlr4-python3-runtime==4.9.3"],
         "ax/venv": ["axolotl==0.19.0", "datasets==4.8.4", "colorama", "addict", "posthog", "distro", "numba",
                     "llvmlite", "httpx", "httpcore", "h11", "anyio"]}


def setup(root: Path) -> None:
    """Create the side venvs (idempotent: an existing one is kept)."""
    import site
    main_site = site.getsitepackages()[0]
    for name, pkgs in VENVS.items():
        venv = root / name
        sp = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        if (sp / "_main_venv.pth").exists():
            print(f"{venv}: exists")
            continue
        t = time.time()
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        (sp / "_main_venv.pth").write_text(main_site + "\n")  # after the venv's own site-packages on sys.path
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(sp), *pkgs],
                       check=True)
        print(f"{venv}: {' '.join(pkgs)} in {time.time() - t:.0f} s")
    stub = root / "lf" / "stubs" / "torchaudio"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text("# import-only stand-in for LLaMA-Factory's mm_plugin; audio is never read\n")


def check_datasets(folder: Path) -> dict:
    import datasets

    def summary(ds):
        return [{"id": r["id"], "system": r["system"], "n_turns": len(r["messages"])} for r in ds]
    pq = datasets.load_dataset("parquet", data_files=str(folder / "x.parquet"), split="train",
                               cache_dir=str(folder / "hf-cache"))
    return {"version": datasets.__version__, "parquet": summary(pq),
            "save-to-disk": summary(datasets.load_from_disk(str(folder / "disk")))}


def check_llamafactory(folder: Path) -> dict:
    """Merge the entries into FOLDER/dataset_info.json (LLaMA-Factory reads that name in dataset_dir) and load
    each through get_dataset_list -> _load_single_dataset (which converts with align_dataset)."""
    from types import SimpleNamespace

    from llamafactory.data.loader import _load_single_dataset
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments
    info = {}
    for p in sorted(folder.glob("*.dataset_info.json")):
        info.update(json.loads(p.read_text()))
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2))
    data_args = DataArguments(dataset_dir=str(folder), dataset=list(info))
    model_args = SimpleNamespace(cache_dir=str(folder / "hf-cache"), hf_hub_token=None)
    training_args = SimpleNamespace(local_process_index=0, dataloader_num_workers=0)
    out = {}
    for attr in get_dataset_list(list(info), str(folder)):
        ds = _load_single_dataset(attr, model_args, data_args, training_args)
        out[attr.dataset_name.split(".")[0].split("/")[0]] = [
            {"system": r["_system"], "prompt": [[m["role"], m["content"]] for m in r["_prompt"]],
             "response": [[m["role"], m["content"]] for m in r["_response"]]} for r in ds]
    return out


def check_axolotl(folder: Path) -> dict:
    """Load each snippet's dataset with axolotl's loader (paths relative to FOLDER, as axolotl runs there) and
    tokenize it with the prompt strategy its `type` names (get_dataset_wrapper: alpaca, completion,
    chat_template) and FOLDER/tokenizer; report the trained text per example."""
    import yaml
    from axolotl.utils.data.shared import load_dataset_with_config
    from axolotl.utils.data.wrappers import get_dataset_wrapper
    from axolotl.utils.dict import DictDefault
    from transformers import AutoTokenizer
    os.chdir(folder)
    tok = AutoTokenizer.from_pretrained("tokenizer")
    cfg = DictDefault({"sequence_len": 256, "train_on_inputs": False, "chat_template": "tokenizer_default",
                       "dataset_num_proc": 1})
    out = {}
    for p in sorted(folder.glob("*.axolotl.yaml")):
        entry = DictDefault(yaml.safe_load(p.read_text())["datasets"][0])
        ds = load_dataset_with_config(entry, use_auth_token=False)
        wrapped, _ = get_dataset_wrapper(entry, tok, cfg, entry.type.split(":")[0], ds)
        out[p.name.split(".")[0]] = [
            {"trained": tok.decode([i for i, lab in zip(r["input_ids"], r["labels"]) if lab != -100]),
             "text": tok.decode(r["input_ids"])} for r in wrapped]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["setup", "check", "datasets", "llamafactory", "axolotl"])
    ap.add_argument("folder", nargs="?")
    ap.add_argument("--venvs", default=os.environ.get("INSTRUCTGEN_CONSUMER_VENVS", "/tmp/venvs"))
    a = ap.parse_args()
    if a.what == "setup":
        return setup(Path(a.venvs))
    if a.what == "check":
        env = dict(os.environ, INSTRUCTGEN_CONSUMER_VENVS=a.venvs, HF_HUB_OFFLINE="1")
        sys.exit(subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                                 str(ROOT / "tests" / "test_export_consumers.py")], env=env).returncode)
    check = {"datasets": check_datasets, "llamafactory": check_llamafactory, "axolotl": check_axolotl}[a.what]
    print(json.dumps(check(Path(a.folder))))


if __name__ == "__main__":
    main()
