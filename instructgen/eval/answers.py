"""The student's answers to a suite: greedy, through its chat template, batched, cached, resumable.

A MODEL spec is anything `instructgen.models.resolve` accepts (an embedded name, an HF folder, a .gguf file, a
cached hub id), a merged folder (`gen merge`), or a `gen train` output folder, which means its base student
plus its `adapter/`. `--adapter DIR` adds a LoRA adapter to any base. The tokenizer (and so the chat template)
is the adapter's when it saved one (training does, with the template it trained with), else the model's; a
model without a chat template gets the default one training uses. The adapter is applied to the base in full
precision (float32 on CPU, bfloat16 on CUDA where supported), as `gen merge` does.

Answers are greedy (no sampling), stop at EOS or `max_new_tokens`, and are generated in left-padded batches of
prompts sorted by token length, longest first (padding is small and the memory peak shows at once).

Cache: one JSONL file per (model hash, adapter hash, settings) in `$INSTRUCTGEN_CACHE/answers` (or
`--cache-dir`), one line per answer keyed by the hash of the rendered prompt; lines are appended whole and
fsynced per batch, so a killed run keeps its answers and any later run (a resume, --overwrite, another OUT, a
suite that shares prompts) regenerates none of them. Settings are decoding (greedy), max_new_tokens, device
type and dtype; the batch size is not one: left padding with an attention mask gives the same greedy tokens up
to float rounding, and we accept that rare difference to reuse answers across batch sizes and subsets.
Hashes are of file contents (every top-level file of the model and adapter folders), memoized by path, size
and mtime in `$INSTRUCTGEN_CACHE/hashes.json`, so a 270 MB model is read once.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..config import ConfigError
from ..models import ModelSpecError, cache_dir, resolve
from ..records import text_hash

HASH_CHUNK = 1 << 20


@dataclass
class StudentSpec:
    """A resolved MODEL [--adapter]: what to load and the content hashes that identify it."""

    spec: str
    name: str  # for folder names: "smollm2-135m", "demo-train"
    base_path: str
    adapter_path: str | None
    tokenizer_path: str
    model_hash: str
    adapter_hash: str | None
    base_spec: str  # the student a `gen train` folder was trained from, else `spec`

    def describe(self) -> dict:
        return {"spec": self.spec, "base": self.base_spec, "base_path": self.base_path, "model_hash": self.model_hash,
                "adapter": self.adapter_path, "adapter_hash": self.adapter_hash}


def _train_folder(p: Path) -> dict | None:
    """config.json of a `gen train` output folder, else None."""
    try:
        meta = json.loads((p / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("stage") == "train" else None


def _display_name(p: Path) -> str:
    p = p.resolve()
    return f"{p.parent.name}-{p.name}" if p.name in ("train", "merged", "adapter", "out") else p.name


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def resolve_student(spec: str, adapter: str | None = None, what: str = "MODEL") -> StudentSpec:
    """Resolve MODEL [--adapter DIR] to folders and hashes; raises ModelSpecError naming the flag."""
    p = Path(spec).expanduser()
    base_spec, name = spec, spec
    if p.is_dir() and (train := _train_folder(p)) is not None:
        if adapter:
            raise ModelSpecError(f"{what} {spec} is a gen train folder, which brings its own adapter/; drop the "
                                 f"adapter flag or give the base model as {what}")
        if not (p / "completed").exists() or not (p / "adapter" / "adapter_config.json").exists():
            raise ModelSpecError(f"{what} {spec} is a gen train folder that is not complete (no adapter/ yet); "
                                 f"finish it with gen train first")
        tcfg = train.get("config")
        base_spec = str(tcfg.get("student") or "") if isinstance(tcfg, dict) else ""
        if not base_spec:
            raise ModelSpecError(f"{what} {spec}: its config.json names no student")
        adapter, name = str(p / "adapter"), _display_name(p)
    elif p.exists():
        name = _display_name(p) if p.is_dir() else p.stem
    try:
        base_path, _ = resolve(base_spec)
    except ModelSpecError as e:
        raise ModelSpecError(f"{what} {spec}: {e}") from None
    adapter_path = None
    if adapter:
        a = Path(adapter).expanduser()
        if not (a / "adapter_config.json").is_file():
            flag = "--adapter" if what == "MODEL" else f"{what}-adapter"
            raise ModelSpecError(f"{flag} {adapter}: no adapter_config.json there; give a LoRA adapter folder "
                                 f"(gen train writes one in OUT/adapter)")
        try:
            acfg = json.loads((a / "adapter_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            acfg = None
        flag = "--adapter" if what == "MODEL" else f"{what}-adapter"
        if not isinstance(acfg, dict) or str(acfg.get("peft_type", "")).upper() != "LORA":
            raise ModelSpecError(f"{flag} {adapter}: adapter_config.json is not a LoRA adapter's (peft_type LORA)")
        if not any((a / w).is_file() for w in ("adapter_model.safetensors", "adapter_model.bin")):
            raise ModelSpecError(f"{flag} {adapter}: no adapter_model.safetensors (or .bin) there")
        adapter_path = str(a.resolve())
        if a.resolve().parent != p.resolve():
            name = f"{name}-{_display_name(a)}"
    tok_path = adapter_path if adapter_path and (Path(adapter_path) / "tokenizer_config.json").exists() else base_path
    if Path(tok_path).is_dir() and not any((Path(tok_path) / f).is_file() for f in TOKENIZER_FILES):
        raise ModelSpecError(f"{what} {spec}: {tok_path} holds no tokenizer ({', '.join(TOKENIZER_FILES)})")
    return StudentSpec(spec, name.replace("/", "_"), base_path, adapter_path, tok_path, folder_hash(base_path),
                       folder_hash(adapter_path) if adapter_path else None, base_spec)


# ----------------------------------------------------------------------------------------------- hashes

def _hash_memo_path() -> Path:
    return cache_dir() / "hashes.json"


def file_hash(path: Path, memo: dict) -> str:
    """sha1 of a file's bytes, memoized by real path, size and mtime."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = f"{real}\x1f{st.st_size}\x1f{st.st_mtime_ns}"
    if key not in memo:
        h = hashlib.sha1()
        with open(real, "rb") as f:
            while chunk := f.read(HASH_CHUNK):
                h.update(chunk)
        memo[key] = h.hexdigest()
    return memo[key]


def folder_hash(folder: str | os.PathLike) -> str:
    """A hash of the names and contents of a model folder's top-level files (hidden files left out)."""
    from ..rundir import write_json
    memo_path = _hash_memo_path()
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        memo = memo if isinstance(memo, dict) else {}
    except (OSError, ValueError):
        memo = {}
    before = len(memo)
    h = hashlib.sha1()
    for f in sorted(Path(folder).iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        h.update(f"{f.name}\x1f{file_hash(f, memo)}\x1d".encode())
    if len(memo) != before:
        memo = {k: v for k, v in memo.items() if os.path.exists(k.split("\x1f")[0])}  # forget deleted files
        try:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            write_json(memo_path, memo)
        except OSError:
            pass  # a read-only cache only costs hashing again next time
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------- model

class Student:
    """A loaded model that answers user turns greedily."""

    def __init__(self, s: StudentSpec, device: str | None = None, chat_template: str | None = None):
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        import transformers

        from ..trainer.data import set_chat_template
        transformers.logging.set_verbosity_error()  # our bar and summary replace its loading chatter
        transformers.logging.disable_progress_bar()
        self.spec = s
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda":
            self.dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            self.dtype = "float32"
        tok = AutoTokenizer.from_pretrained(s.tokenizer_path)
        self.template = set_chat_template(tok, chat_template)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if tok.eos_token_id is None:
            raise ModelSpecError(f"{s.spec}: the tokenizer has no EOS token, so answers could not stop")
        config = AutoConfig.from_pretrained(s.base_path)
        qc = getattr(config, "quantization_config", None)
        if isinstance(qc, dict) and qc.get("quant_method") == "gguf":  # a de-quantized GGUF conversion
            del config.quantization_config
        model = AutoModelForCausalLM.from_pretrained(s.base_path, config=config, dtype=getattr(torch, self.dtype))
        if s.adapter_path:
            from peft import PeftModel
            try:
                model = PeftModel.from_pretrained(model, s.adapter_path)
            except (OSError, ValueError, KeyError, RuntimeError) as e:  # missing or mismatched adapter weights
                raise ModelSpecError(f"--adapter {s.adapter_path}: not a LoRA adapter for {s.base_spec} "
                                     f"({str(e).strip().splitlines()[0][:160]})") from None
        self.model = model.to(self.device).eval()
        self.tok = tok

    @property
    def settings(self) -> dict:
        return {"decoding": "greedy", "device": self.device, "dtype": self.dtype}

    def render(self, user_text: str) -> str:
        from ..trainer.data import render_prompt
        return render_prompt(self.tok, [{"role": "user", "content": user_text}])

    def n_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def generate_batch(self, prompts: Sequence[str], max_new_tokens: int) -> list[tuple[str, int, str]]:
        """(answer, new tokens, "stop" | "length") for each rendered prompt, in one left-padded batch."""
        import torch
        tok = self.tok
        side, tok.padding_side = tok.padding_side, "left"
        try:
            enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        finally:
            tok.padding_side = side
        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        rows = []
        for ids in out[:, enc["input_ids"].shape[1]:].tolist():
            n = ids.index(tok.eos_token_id) + 1 if tok.eos_token_id in ids else len(ids)
            finish = "stop" if tok.eos_token_id in ids or n < max_new_tokens else "length"
            rows.append((tok.decode(ids[:n], skip_special_tokens=True).strip(), n, finish))
        return rows


# ----------------------------------------------------------------------------------------------- cache

class AnswerCache:
    """Answers of one (model, adapter, settings): `get(prompt)` and `put(rows)`, appended whole per batch."""

    def __init__(self, folder: str | os.PathLike, s: StudentSpec, settings: dict):
        self.folder = Path(folder)
        if self.folder.is_symlink() or (self.folder.exists() and not self.folder.is_dir()):
            raise ConfigError(f"--cache-dir {folder} is not a folder; give a folder (it is created when missing)")
        self.settings = json.dumps(settings, sort_keys=True)
        self.path = self.folder / f"{s.model_hash}-{s.adapter_hash or 'none'}-{text_hash(self.settings)}.jsonl"
        self.answers: dict[str, dict] = {}
        if self.path.exists():
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                        self.answers[row["key"]] = row
                    except (ValueError, KeyError, TypeError):
                        continue  # a line torn by a kill, or two writers at once: that answer is redone

    def key(self, prompt: str) -> str:
        return text_hash(self.settings, prompt)

    def get(self, prompt: str) -> dict | None:
        return self.answers.get(self.key(prompt))

    def put(self, rows: list[dict]) -> None:
        """rows: {"prompt", "answer", "new_tokens", "finish", "seconds"}; one fsynced write per batch."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for r in rows:
            entry = {"key": self.key(r["prompt"]), **{k: r[k] for k in ("answer", "new_tokens", "finish", "seconds")}}
            self.answers[entry["key"]] = entry
            lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
        with open(self.path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:  # never glue a line onto a torn tail
                f.seek(-1, os.SEEK_END)
                lead = b"" if f.read(1) == b"\n" else b"\n"
            else:
                lead = b""
            f.write(lead + "".join(lines).encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())


def default_cache_dir() -> Path:
    return cache_dir() / "answers"


# ----------------------------------------------------------------------------------------------- answering

def answer_all(student: Student, items: Sequence[dict], cache: AnswerCache, max_new_tokens: int, batch_size: int,
               done: dict[str, dict], on_batch: Callable[[list[dict]], None], quiet: bool = False,
               desc: str = "answers") -> dict:
    """Answer every item not in `done` (id -> row): from the cache, else generated. `on_batch(rows)` gets each
    batch's rows ({"id", "prompt", "answer", "new_tokens", "finish", "seconds", "cached"}) to write. Returns
    counts: {"resumed", "from_cache", "generated", "generate_seconds"}."""
    from ..progress import Rate, bar
    todo = [it for it in items if it["id"] not in done]
    rendered = {it["id"]: student.render(it["prompt"]) for it in todo}
    hits, missing = [], []
    for it in todo:
        c = cache.get(rendered[it["id"]])
        if c is not None:
            hits.append(_row(it, c, cached=True))
        else:
            missing.append(it)
    if hits:
        on_batch(hits)
    lengths = {it["id"]: student.n_tokens(rendered[it["id"]]) for it in missing}
    missing.sort(key=lambda it: -lengths[it["id"]])
    pbar = bar(len(items), desc, initial=len(items) - len(missing), unit="ans", disable=True if quiet else None)
    rate, seconds = Rate(), 0.0
    try:
        for b in range(0, len(missing), batch_size):
            batch = missing[b:b + batch_size]
            t0 = time.perf_counter()
            out = student.generate_batch([rendered[it["id"]] for it in batch], max_new_tokens)
            dt = time.perf_counter() - t0
            seconds += dt
            rows = [{"id": it["id"], "prompt": it["prompt"], "answer": a, "new_tokens": n, "finish": fin,
                     "seconds": round(dt / len(batch), 4), "cached": False} for it, (a, n, fin) in zip(batch, out)]
            cache.put([dict(r, prompt=rendered[r["id"]]) for r in rows])
            on_batch(rows)
            rate.add(len(rows))
            pbar.update(len(rows))
            pbar.set_postfix(ans_s=f"{rate.per_s:.2f}")
    finally:
        pbar.close()
    if not quiet and missing:
        print(f"{desc}: {len(missing)} generated in {seconds:.1f} s ({seconds / len(missing):.2f} s per answer), "
              f"{len(hits)} from the cache, {len(items) - len(todo)} resumed", file=sys.stderr)
    return {"resumed": len(items) - len(todo), "from_cache": len(hits), "generated": len(missing),
            "generate_seconds": round(seconds, 3)}


def _row(it: dict, c: dict, cached: bool) -> dict:
    return {"id": it["id"], "prompt": it["prompt"], "answer": c["answer"], "new_tokens": c["new_tokens"],
            "finish": c["finish"], "seconds": c["seconds"], "cached": cached}
