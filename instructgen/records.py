"""The one record type every stage passes around, and its readers and writers.

A `Task` is an instruction with its instances, where it came from (provenance), what every filter scored it
(scores) and whether it was kept (verdict). Generation, curation, export and training all read and write it.

Readers accept, unchanged: our own JSONL, the Self-Instruct seed-file format (the same shape), Alpaca JSON
(a list of {instruction, input, output}) or JSONL, prompt/completion JSONL, chat `messages` JSONL, a plain text
file with one instruction per line, Parquet, and a folder saved by `datasets.Dataset.save_to_disk`.
A malformed record raises `RecordError` naming file:line and the field at fault.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

SOURCES = ("seed", "generated", "imported")


class RecordError(ValueError):
    """A record that cannot be read; the message names file:line and the field."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line = str(path), line


@dataclass
class Instance:
    input: str = ""
    output: str = ""


@dataclass
class Verdict:
    kept: bool = True
    reason: str | None = None  # short and countable: "too_short", "blacklist:image", "rouge_l>0.70"
    filter: str | None = None  # the filter or stage that decided
    duplicate_of: str | None = None  # id of the kept record this one duplicates


@dataclass
class Task:
    id: str
    instruction: str
    instances: list[Instance] = field(default_factory=list)
    is_classification: bool | None = None
    source: str = "generated"
    provenance: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    verdict: Verdict = field(default_factory=Verdict)
    meta: dict[str, Any] = field(default_factory=dict)  # anything else: seed name, most similar, ...

    def drop(self, reason: str, filter: str | None = None, duplicate_of: str | None = None) -> "Task":
        """Mark the record dropped, with the reason a report will count."""
        self.verdict = Verdict(kept=False, reason=reason, filter=filter, duplicate_of=duplicate_of)
        return self

    @property
    def kept(self) -> bool:
        return self.verdict.kept

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Task":
        d = dict(d)
        instances = [Instance(**_pick(i, ("input", "output"))) for i in d.pop("instances", []) or []]
        verdict = Verdict(**_pick(d.pop("verdict", None) or {}, ("kept", "reason", "filter", "duplicate_of")))
        known = {f: d.pop(f) for f in ("id", "instruction", "is_classification", "source", "provenance",
                                        "scores", "meta") if f in d}
        meta = dict(known.pop("meta", {}) or {})
        meta.update(d)  # unknown top-level fields (e.g. the seed file's `name`) are kept, not lost
        return cls(instances=instances, verdict=verdict, meta=meta, **known)


def _pick(d: dict, keys: tuple[str, ...]) -> dict:
    return {k: d[k] for k in keys if k in d}


def text_hash(*parts: str) -> str:
    """Stable short hash used for ids, caches and prompt hashes."""
    h = hashlib.sha1("\x1f".join(parts).encode("utf-8"))
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------- writing

def write_jsonl(path: str | os.PathLike, tasks: Iterable[Task], append: bool = False) -> int:
    """Write tasks one JSON object per line; returns the count. Each line is flushed whole."""
    n = 0
    with open(path, "a" if append else "w", encoding="utf-8") as f:
        for t in tasks:
            f.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    return n


class JsonlAppender:
    """Append-only JSONL writer for run folders: one whole line per record, flushed and fsynced per batch,
    so a kill -9 leaves at most a torn last line, which `iter_jsonl(..., tolerate_torn_tail=True)` skips."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, tasks: Iterable[Task]) -> None:
        data = "".join(json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in tasks)
        if data:
            self._f.write(data)
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def repair_torn_tail(path: str | os.PathLike) -> int:
    """Cut an incomplete last line left by a crash mid-write; returns the bytes removed."""
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return 0
    data = p.read_bytes()
    if data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(p, "r+b") as f:
        f.truncate(keep)
    return len(data) - keep


# ----------------------------------------------------------------------------------------------- reading

def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; a bad line raises RecordError with file:line."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(path, lineno, f"not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise RecordError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _require_str(obj: dict, key: str, path, line, allow_empty: bool = False) -> str:
    if key not in obj:
        raise RecordError(path, line, f"missing field '{key}'")
    v = obj[key]
    if v is None and allow_empty:
        return ""
    if not isinstance(v, str):
        raise RecordError(path, line, f"field '{key}' must be a string, got {type(v).__name__}")
    if not allow_empty and not v.strip():
        raise RecordError(path, line, f"field '{key}' is empty")
    return v


def detect_format(obj: dict) -> str:
    """Name the record format of one JSON object."""
    if "messages" in obj and "instruction" not in obj:  # our jsonl/parquet exports carry both
        return "messages"
    if "conversations" in obj:
        return "sharegpt"
    if "instruction" in obj and "instances" in obj:
        return "task"  # ours and the Self-Instruct seed file
    if "instruction" in obj:
        return "alpaca"
    if "prompt" in obj and "completion" in obj:
        return "prompt_completion"
    return "unknown"


def task_from_obj(obj: dict, path, line, index: int, source: str = "imported") -> Task:
    """Convert one object of any accepted format to a Task; errors name path:line and the field."""
    fmt = detect_format(obj)
    if fmt == "task":
        dropped = isinstance(obj.get("verdict"), dict) and obj["verdict"].get("kept") is False
        _require_str(obj, "instruction", path, line, allow_empty=dropped)  # an unparseable completion may be empty
        if not isinstance(obj["instances"], list):
            raise RecordError(path, line, "field 'instances' must be a list of {input, output}")
        for j, inst in enumerate(obj["instances"]):
            if not isinstance(inst, dict):
                raise RecordError(path, line, f"field 'instances[{j}]' must be an object with input and output")
            for k in ("input", "output"):
                if k in inst and inst[k] is not None and not isinstance(inst[k], str):
                    raise RecordError(path, line, f"field 'instances[{j}].{k}' must be a string")
        ic = obj.get("is_classification")
        if ic is not None and not isinstance(ic, bool):
            raise RecordError(path, line, "field 'is_classification' must be true, false or null")
        d = dict(obj)
        d.setdefault("id", f"{Path(path).stem}_{index}")
        d["id"] = str(d["id"])
        if "source" not in d:
            d["source"] = "seed" if "verdict" not in obj else "generated"
        try:
            return Task.from_dict(d)
        except TypeError as e:
            raise RecordError(path, line, f"unexpected field shape: {e}") from None
    if fmt == "alpaca":
        instr = _require_str(obj, "instruction", path, line)
        inp = _require_str(obj, "input", path, line, allow_empty=True) if "input" in obj else ""
        out = _require_str(obj, "output", path, line, allow_empty=True) if "output" in obj else ""
        instances = [Instance(inp, out)] if (inp or out) else []
        return Task(id=str(obj.get("id", f"{Path(path).stem}_{index}")), instruction=instr, instances=instances,
                    source=source)
    if fmt == "prompt_completion":
        prompt = _require_str(obj, "prompt", path, line)
        comp = _require_str(obj, "completion", path, line, allow_empty=True)
        meta = {k: v for k, v in obj.items() if k not in ("id", "prompt", "completion")}
        return Task(id=str(obj.get("id", f"{Path(path).stem}_{index}")), instruction=prompt,
                    instances=[Instance("", comp)], source=source, meta=meta)
    if fmt in ("messages", "sharegpt"):
        key, role_key, text_key = (("messages", "role", "content") if fmt == "messages"
                                   else ("conversations", "from", "value"))
        turns = obj[key]
        if not isinstance(turns, list):
            raise RecordError(path, line, f"field '{key}' must be a list of turns")
        user = [t for t in turns if isinstance(t, dict) and t.get(role_key) in ("user", "human")]
        asst = [t for t in turns if isinstance(t, dict) and t.get(role_key) in ("assistant", "gpt")]
        if not user:
            raise RecordError(path, line, f"field '{key}' has no user turn")
        instr = user[0].get(text_key)
        if not isinstance(instr, str):
            raise RecordError(path, line, f"field '{key}[0].{text_key}' must be a string")
        out = asst[0].get(text_key, "") if asst else ""
        return Task(id=str(obj.get("id", f"{Path(path).stem}_{index}")), instruction=instr,
                    instances=[Instance("", out or "")] if out else [], source=source)
    raise RecordError(path, line, "unrecognised record: expected 'instruction' (task or Alpaca), "
                                  "'prompt'+'completion', or 'messages'")


def read_tasks(path: str | os.PathLike, source: str = "imported") -> list[Task]:
    """Read task records from any accepted file or folder (see module docstring)."""
    p = Path(path)
    if not p.exists():
        raise RecordError(p, None, "no such file or folder")
    if p.is_dir():
        if (p / "dataset_info.json").exists() or (p / "state.json").exists():
            return _read_hf_dataset(p, source)
        raise RecordError(p, None, "a folder must be a run folder or a saved HF dataset")
    suffix = "".join(p.suffixes[-2:]) if p.name.endswith(".gz") else p.suffix
    if suffix in (".parquet",):
        return _read_rows(p, _parquet_rows(p), source)
    if suffix == ".txt":
        out = []
        with open(p, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    out.append(Task(id=f"{p.stem}_{len(out)}", instruction=line.strip(), source=source))
        return out
    if suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise RecordError(p, e.lineno, f"not valid JSON ({e.msg})") from None
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            raise RecordError(p, None, "expected a JSON list of records")
        return _read_rows(p, ((None, d) for d in data), source, index_as_line=True)
    # anything else is read as JSON Lines (.jsonl, .ndjson, .jsonl.gz, or no suffix)
    rows = _iter_gz_jsonl(p) if suffix == ".jsonl.gz" else iter_jsonl(p)
    return _read_rows(p, rows, source)


def _iter_gz_jsonl(p: Path) -> Iterator[tuple[int, dict]]:
    import gzip
    with gzip.open(p, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as e:
                    raise RecordError(p, lineno, f"not valid JSON ({e.msg} at column {e.colno})") from None


def _read_rows(p, rows, source, index_as_line: bool = False) -> list[Task]:
    out, seen = [], set()
    for i, (line, obj) in enumerate(rows):
        line = (i + 1) if index_as_line and line is None else line
        if not isinstance(obj, dict):
            raise RecordError(p, line, f"expected a JSON object, got {type(obj).__name__}")
        t = task_from_obj(obj, p, line, i, source)
        if t.id in seen:
            raise RecordError(p, line, f"duplicate id '{t.id}'")
        seen.add(t.id)
        out.append(t)
    return out


def _parquet_rows(p: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq
    for i, row in enumerate(pq.read_table(p).to_pylist()):
        yield i + 1, row


def _read_hf_dataset(p: Path, source: str) -> list[Task]:
    import datasets
    ds = datasets.load_from_disk(str(p))
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    return _read_rows(p, ((i + 1, row) for i, row in enumerate(ds)), source)


def read_seed_tasks(path: str | os.PathLike) -> list[Task]:
    """Read a seed file (Self-Instruct format, our records or Alpaca); every task is marked `source="seed"`.

    Fails on an empty file: bootstrapping needs at least one seed."""
    tasks = read_tasks(path, source="seed")
    if not tasks:
        raise RecordError(path, None, "the seed file holds no tasks")
    for t in tasks:
        t.source = "seed"
        t.verdict = Verdict()
    return tasks


# A stage folder's final records, most processed first: gen curate, gen instances, gen instructions.
STAGE_OUTPUTS = ("kept.jsonl", "tasks.jsonl", "instructions.jsonl")


def read_records(path: str | os.PathLike) -> list[Task]:
    """Records from a file of any accepted format, or from a stage folder (its final output file).

    A stage folder must be complete (its `completed` marker written); its outputs are looked up in the order
    of STAGE_OUTPUTS."""
    p = Path(path)
    if p.is_dir() and (p / "config.json").exists():
        if not (p / "completed").exists():
            raise RecordError(p, None, "this run folder is not complete; re-run its command to finish it first")
        for name in STAGE_OUTPUTS:
            if (p / name).exists():
                return read_tasks(p / name)
        raise RecordError(p, None, f"run folder holds none of {', '.join(STAGE_OUTPUTS)}")
    return read_tasks(p)
