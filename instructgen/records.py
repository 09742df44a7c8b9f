"""The one record type every stage passes around, and its readers and writers.

A `Task` is an instruction with its instances, where it came from (provenance), what every filter scored it
(scores) and whether it was kept (verdict). Generation, curation, export and training all read and write it.

Readers accept, unchanged: our own JSONL, the Self-Instruct seed-file format (the same shape), Alpaca JSON
(a list of {instruction, input, output[, system]}) or JSONL, prompt/completion JSONL (strings, or trl's
conversational lists), chat `messages` and ShareGPT `conversations` JSONL, a plain text file with one
instruction per line, Parquet, and a folder saved by `datasets.Dataset.save_to_disk`. A conversation must be one
exchange (an optional leading system turn, kept as `meta["system"]`, one user turn, at most one assistant turn):
a longer one is refused naming file:line and the field, never cut to its first exchange (`one_exchange`).
A malformed record raises `RecordError` naming file:line (the real line, also inside a JSON array) and the field
at fault: bytes that are not UTF-8, JSON nested past Python's recursion limit, a lone surrogate escape (it could
never be written back as UTF-8), a field of the wrong type, a corrupt or truncated .gz, .parquet or saved dataset.
Only the fields a stage reads are type-checked, so reading stays one pass over each line.

Longer than ~400 lines on purpose: each format's reader and its checks sit next to the record type they build,
so this one file answers "what does a bad input give".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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


def append_jsonl(path: str | os.PathLike, objs: Iterable[dict]) -> None:
    """Append JSON objects one whole line each, flushed and fsynced together (step records, answer rows), so a
    kill -9 leaves at most a torn last line, which `repair_torn_tail` cuts."""
    data = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs)
    if data:
        with open(path, "a", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


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

def utf8_text(data: bytes, path: str | os.PathLike, first_line: int = 1) -> str:
    """`data` decoded as UTF-8 (a leading BOM dropped); an invalid byte raises RecordError naming path:line,
    the byte and its column (1-based, in characters)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        start = data.rfind(b"\n", 0, e.start) + 1
        line = first_line + data.count(b"\n", 0, e.start)
        col = len(data[start:e.start].decode("utf-8", "replace")) + 1
        raise RecordError(path, line, f"not valid UTF-8 (byte 0x{data[e.start]:02x} at column {col})") from None
    return text[1:] if first_line == 1 and text.startswith("\ufeff") else text


_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _may_hold_surrogate(text: str) -> bool:
    """Cheap pre-check: a lone surrogate can only come from a `\\uD800`-`\\uDFFF` escape (strict UTF-8
    decoding rejects encoded ones), so only text with such an escape needs the walk. The `in` is a memchr."""
    return "\\" in text and _SURROGATE_ESCAPE.search(text) is not None


def _check_surrogates(obj: Any, path, line) -> None:
    """Refuse a string holding a lone surrogate (JSON allows the escape; UTF-8 cannot encode it, so the record
    would crash whatever writes it later). Walks iteratively: nesting depth is not bounded here."""
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            m = _SURROGATE.search(v)
            if m:
                raise RecordError(path, line, f"field '{where}' holds a lone surrogate (\\u{ord(m.group()):04x}), "
                                              "which cannot be written as UTF-8")
        elif isinstance(v, dict):
            for k in reversed(list(v)):
                if _SURROGATE.search(k):
                    raise RecordError(path, line, f"a key in '{where or '(top level)'}' holds a lone surrogate, "
                                                  "which cannot be written as UTF-8")
                stack.append((f"{where}.{k}" if where else k, v[k]))
        elif isinstance(v, list):
            stack.extend((f"{where}[{i}]", x) for i, x in reversed(list(enumerate(v))))


def _parse_line(raw: bytes | str, path, lineno: int) -> dict | None:
    """One JSON Lines line as an object (None when blank); every failure is a RecordError at path:lineno."""
    try:
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        line = utf8_text(raw, path, lineno)  # raises, naming the byte and its column
    if lineno == 1 and line.startswith("\ufeff"):
        line = line[1:]
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise RecordError(path, lineno, f"not valid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise RecordError(path, lineno, "JSON nested too deeply to read") from None
    if not isinstance(obj, dict):
        raise RecordError(path, lineno, f"expected a JSON object, got {_json_type(obj)}")
    if _may_hold_surrogate(line):
        _check_surrogates(obj, path, lineno)
    return obj


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; a bad line raises RecordError with file:line.

    The common line costs one json.loads; anything unusual (blank, not an object, a surrogate escape, a parse
    error) goes through `_parse_line`, which names the fault. Text is decoded in chunks (fast); a chunk that is
    not UTF-8 sends the lines not yet read to the byte-by-line reader, which names the line and the column."""
    lineno = 0
    with open(path, encoding="utf-8") as f:
        try:
            for lineno, line in enumerate(f, 1):
                try:
                    obj = json.loads(line)
                except (ValueError, RecursionError):
                    obj = None
                if type(obj) is not dict or _may_hold_surrogate(line):
                    obj = _parse_line(line, path, lineno)
                    if obj is None:
                        continue
                yield lineno, obj
            return
        except UnicodeDecodeError:
            pass
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if n > lineno:
                obj = _parse_line(raw, path, n)
                if obj is not None:
                    yield n, obj


def _json_type(v: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    return "a list" if isinstance(v, list) else "an object" if isinstance(v, dict) else type(v).__name__


def _require_str(obj: dict, key: str, path, line, allow_empty: bool = False, label: str | None = None) -> str:
    label = label or key
    if key not in obj:
        raise RecordError(path, line, f"missing field '{label}'")
    v = obj[key]
    if v is None and allow_empty:
        return ""
    if not isinstance(v, str):
        raise RecordError(path, line, f"field '{label}' must be a string, got {_json_type(v)}")
    if not allow_empty and not v.strip():
        raise RecordError(path, line, f"field '{label}' is empty")
    return v


def _record_id(obj: dict, path, line, default: str) -> str:
    """The record's own id (a string or an integer; null counts as absent), else `default`."""
    v = obj.get("id")
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise RecordError(path, line, f"field 'id' must be a string or an integer, got {_json_type(v)}")
    return str(v)


def _check_task_fields(obj: dict, path, line) -> None:
    """Type-check the fields a stage reads from our own records (no deeper walk: this runs on every line)."""
    for key in ("meta", "provenance", "scores"):
        v = obj.get(key)
        if v is not None and not isinstance(v, dict):
            raise RecordError(path, line, f"field '{key}' must be an object, got {_json_type(v)}")
    for k, v in (obj.get("scores") or {}).items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise RecordError(path, line, f"field 'scores.{k}' must be a number, got {_json_type(v)}")
    src = obj.get("source")
    if src is not None and not isinstance(src, str):
        raise RecordError(path, line, f"field 'source' must be a string, got {_json_type(src)}")
    verdict = obj.get("verdict")
    if verdict is None:
        return
    if not isinstance(verdict, dict):
        raise RecordError(path, line, f"field 'verdict' must be an object {{kept, reason, filter, duplicate_of}}, "
                                      f"got {_json_type(verdict)}")
    if not isinstance(verdict.get("kept", True), bool):
        raise RecordError(path, line, f"field 'verdict.kept' must be true or false, got {_json_type(verdict['kept'])}")
    for k in ("reason", "filter", "duplicate_of"):
        v = verdict.get(k)
        if v is not None and not isinstance(v, str):
            raise RecordError(path, line, f"field 'verdict.{k}' must be a string or null, got {_json_type(v)}")


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


ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
ONE_EXCHANGE = ("instructgen keeps one exchange per record (an optional leading system turn, one user turn, one "
                "assistant turn) and never cuts a conversation: split it into one record per exchange")


def one_exchange(turns: list, keys: list[str], role_key: str, text_key: str, path, line) -> tuple[str, str, str]:
    """(system, user, assistant) text of a conversation that is one exchange: an optional leading system turn,
    one user turn, at most one assistant turn after it. Anything longer (several exchanges, a system turn later
    on, a tool turn) is refused naming the field, never cut to its first exchange. `keys[j]` names the field
    turn j came from (`messages`, or `prompt` / `completion` for trl's conversational prompt-completion)."""
    texts: dict[str, str] = {}
    index: dict[str, int] = {}  # position within its own field, for messages
    for j, turn in enumerate(turns):
        k = keys[j]
        index[k] = index.get(k, -1) + 1
        at = f"{k}[{index[k]}]"
        if not isinstance(turn, dict):
            raise RecordError(path, line, f"field '{at}' must be an object with '{role_key}' and '{text_key}', "
                                          f"got {_json_type(turn)}")
        role = ROLES.get(turn.get(role_key)) if isinstance(turn.get(role_key), str) else None
        if role is None:
            raise RecordError(path, line, f"field '{at}.{role_key}' is {json.dumps(turn.get(role_key))}; expected "
                                          "one of system, user, assistant (ShareGPT: human, gpt)")
        text = _require_str(turn, text_key, path, line, allow_empty=role != "user", label=f"{at}.{text_key}")
        order = {"system": 0, "user": 1, "assistant": 2}
        if role in texts or any(order[r] > order[role] for r in texts):
            n_user = sum(1 for t in turns if isinstance(t, dict) and ROLES.get(t.get(role_key)) == "user")
            what = (f"a multi-turn conversation ({n_user} user turns)" if n_user > 1 else
                    f"out of order at {at} (role {role}; expected system?, user, assistant)")
            raise RecordError(path, line, f"field '{keys[0]}' is {what}; {ONE_EXCHANGE}")
        texts[role] = text
    if "user" not in texts:
        raise RecordError(path, line, f"field '{keys[0]}' has no user turn")
    return texts.get("system", ""), texts["user"], texts.get("assistant", "")


def _system_meta(obj: dict, path, line) -> dict:
    """{"system": TEXT} from a record's `system` field (LLaMA-Factory's Alpaca column), {} when absent or empty."""
    if obj.get("system") is None:
        return {}
    return {"system": s} if (s := _require_str(obj, "system", path, line, allow_empty=True)) else {}


def _conversational_pc(obj: dict, path, line, default_id: str, source: str) -> Task:
    """trl's conversational prompt-completion: {"prompt": [system?, user], "completion": [assistant]}."""
    comp = obj["completion"]
    if not isinstance(comp, list):
        raise RecordError(path, line, f"field 'completion' must be a list of turns like 'prompt', "
                                      f"got {_json_type(comp)}")
    turns = obj["prompt"] + comp
    keys = ["prompt"] * len(obj["prompt"]) + ["completion"] * len(comp)
    if any(isinstance(t, dict) and ROLES.get(t.get("role")) == "assistant" for t in obj["prompt"]):
        raise RecordError(path, line, f"field 'prompt' holds an assistant turn (a multi-turn conversation); "
                                      f"{ONE_EXCHANGE}")
    system, instr, out = one_exchange(turns, keys, "role", "content", path, line)
    meta = {k: v for k, v in obj.items() if k not in ("id", "prompt", "completion")}
    meta.update({"system": system} if system else {})
    return Task(id=_record_id(obj, path, line, default_id), instruction=instr,
                instances=[Instance("", out)] if out else [], source=source, meta=meta)


def task_from_obj(obj: dict, path, line, index: int, source: str = "imported") -> Task:
    """Convert one object of any accepted format to a Task; errors name path:line and the field."""
    fmt = detect_format(obj)
    default_id = f"{Path(path).stem}_{index}"
    if "rendered_for" in obj:  # our `text` / `prompt-completion-text` exports: one model's chat template baked in
        raise RecordError(path, line, f"this record was rendered with the chat template of "
                                      f"{obj['rendered_for']!r} (gen export --format text / prompt-completion-text), "
                                      "which cannot be undone; read the messages, jsonl or prompt-completion export")
    if fmt == "task":
        _check_task_fields(obj, path, line)
        dropped = isinstance(obj.get("verdict"), dict) and obj["verdict"].get("kept") is False
        # an unparseable completion may be empty
        instruction = _require_str(obj, "instruction", path, line, allow_empty=dropped)
        if not isinstance(obj["instances"], list):
            raise RecordError(path, line, "field 'instances' must be a list of {input, output}")
        instances = []
        for j, inst in enumerate(obj["instances"]):
            if not isinstance(inst, dict):
                raise RecordError(path, line, f"field 'instances[{j}]' must be an object with input and output, "
                                              f"got {_json_type(inst)}")
            for k in ("input", "output"):
                if k in inst and inst[k] is not None and not isinstance(inst[k], str):
                    raise RecordError(path, line, f"field 'instances[{j}].{k}' must be a string, "
                                                  f"got {_json_type(inst[k])}")
            instances.append({"input": inst.get("input") or "", "output": inst.get("output") or ""})
        ic = obj.get("is_classification")
        if ic is not None and not isinstance(ic, bool):
            raise RecordError(path, line, "field 'is_classification' must be true, false or null")
        _system_meta(obj, path, line)  # type-checked; kept as meta["system"] with the other unknown fields
        if isinstance(obj.get("meta"), dict) and obj["meta"].get("system") is not None:
            _require_str(obj["meta"], "system", path, line, allow_empty=True, label="meta.system")
        d = dict(obj, instruction=instruction, instances=instances)
        d["id"] = _record_id(obj, path, line, default_id)
        for key in ("provenance", "scores"):
            if key in d and d[key] is None:
                d[key] = {}
        if d.get("source") is None:
            d["source"] = "seed" if "verdict" not in obj else "generated"
        try:
            return Task.from_dict(d)
        except TypeError as e:
            raise RecordError(path, line, f"unexpected field shape: {e}") from None
    if fmt == "alpaca":
        instr = _require_str(obj, "instruction", path, line)
        inp = _require_str(obj, "input", path, line, allow_empty=True) if "input" in obj else ""
        out = _require_str(obj, "output", path, line, allow_empty=True) if "output" in obj else ""
        if obj.get("history"):  # LLaMA-Factory's Alpaca: earlier [query, response] pairs of a conversation
            raise RecordError(path, line, "field 'history' holds earlier turns of a multi-turn conversation; "
                                          f"{ONE_EXCHANGE}")
        instances = [Instance(inp, out)] if (inp or out) else []
        return Task(id=_record_id(obj, path, line, default_id), instruction=instr, instances=instances,
                    source=source, meta=_system_meta(obj, path, line))
    if fmt == "prompt_completion":
        if isinstance(obj["prompt"], list) and obj["prompt"] and all(isinstance(x, dict) for x in obj["prompt"]):
            return _conversational_pc(obj, path, line, default_id, source)  # trl's conversational form
        prompt = _require_str(obj, "prompt", path, line)
        comp = _require_str(obj, "completion", path, line, allow_empty=True)
        meta = {k: v for k, v in obj.items() if k not in ("id", "prompt", "completion")}
        meta.update(_system_meta(obj, path, line))
        return Task(id=_record_id(obj, path, line, default_id), instruction=prompt,
                    instances=[Instance("", comp)], source=source, meta=meta)
    if fmt in ("messages", "sharegpt"):
        key, role_key, text_key = (("messages", "role", "content") if fmt == "messages"
                                   else ("conversations", "from", "value"))
        turns = obj[key]
        if not isinstance(turns, list):
            raise RecordError(path, line, f"field '{key}' must be a list of turns, got {_json_type(turns)}")
        system, instr, out = one_exchange(turns, [key] * len(turns), role_key, text_key, path, line)
        return Task(id=_record_id(obj, path, line, default_id), instruction=instr,
                    instances=[Instance("", out)] if out else [], source=source,
                    meta={"system": system} if system else {})
    raise RecordError(path, line, "unrecognised record: expected 'instruction' (task or Alpaca), "
                                  "'prompt'+'completion', or 'messages'")


def read_tasks(path: str | os.PathLike, source: str = "imported") -> list[Task]:
    """Read task records from any accepted file or folder (see module docstring)."""
    return list(iter_tasks(path, source))


def iter_tasks(path: str | os.PathLike, source: str = "imported") -> Iterator[Task]:
    """`read_tasks`, one record at a time: a JSONL file (plain or gzip) is streamed in bounded memory; the same
    checks and errors (path:line, field, duplicate ids) as `read_tasks`."""
    p = Path(path)
    if not p.exists():
        raise RecordError(p, None, "no such file or folder")
    if p.is_dir():
        if (p / "dataset_info.json").exists() or (p / "state.json").exists():
            yield from _read_hf_dataset(p, source)
            return
        raise RecordError(p, None, "a folder must be a run folder or a saved HF dataset")
    suffix = "".join(p.suffixes[-2:]) if p.name.endswith(".gz") else p.suffix
    try:
        if suffix in (".parquet",):
            yield from _iter_rows(p, _parquet_rows(p), source)
        elif suffix == ".txt":
            yield from _read_txt(p, source)
        elif suffix == ".json":
            yield from _iter_rows(p, _json_rows(p), source)
        else:  # anything else is read as JSON Lines (.jsonl, .ndjson, .jsonl.gz, or no suffix)
            yield from _iter_rows(p, _iter_gz_jsonl(p) if suffix == ".jsonl.gz" else iter_jsonl(p), source)
    except OSError as e:  # unreadable: permissions, a device, an I/O error
        raise RecordError(p, None, f"cannot read: {e.strerror or e}") from None


def _read_txt(p: Path, source: str) -> list[Task]:
    out = []
    with open(p, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = utf8_text(raw, p, lineno).strip()
            if line:
                out.append(Task(id=f"{p.stem}_{len(out)}", instruction=line, source=source))
    return out


_WS = re.compile(r"[ \t\n\r]*")


def _json_rows(p: Path) -> Iterator[tuple[int, Any]]:
    """(line where it starts, element) for each element of a JSON file's top-level list (a lone object counts
    as a list of one). Decoded element by element so each error and each record gets its real line."""
    text = utf8_text(p.read_bytes(), p)
    surrogates = _may_hold_surrogate(text)
    dec = json.JSONDecoder()
    line, counted = 1, 0

    def line_at(pos: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, pos)
        counted = pos
        return line

    def decode(pos: int) -> tuple[Any, int]:
        try:
            return dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise RecordError(p, e.lineno, f"not valid JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise RecordError(p, line_at(pos), "JSON nested too deeply to read") from None

    def fail(pos: int, msg: str):
        col = pos - text.rfind("\n", 0, pos)
        raise RecordError(p, line_at(pos), f"not valid JSON ({msg} at column {col})")

    pos = _WS.match(text).end()
    if pos == len(text):
        return  # an empty file holds no records
    if text[pos] != "[":
        obj, end = decode(pos)
        if _WS.match(text, end).end() != len(text):
            fail(_WS.match(text, end).end(), "Extra data")
        if not isinstance(obj, dict):
            raise RecordError(p, line_at(pos), f"expected a JSON list of records, got {_json_type(obj)}")
        if surrogates:
            _check_surrogates(obj, p, line_at(pos))
        yield line_at(pos), obj
        return
    pos = _WS.match(text, pos + 1).end()
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            obj, end = decode(pos)
            if surrogates:
                _check_surrogates(obj, p, line_at(pos))
            yield line_at(pos), obj
            pos = _WS.match(text, end).end()
            if text.startswith("]", pos):
                pos += 1
                break
            if not text.startswith(",", pos):
                fail(pos, "Expecting ',' delimiter")
            pos = _WS.match(text, pos + 1).end()
    end = _WS.match(text, pos).end()
    if end != len(text):
        fail(end, "Extra data")


def _iter_gz_jsonl(p: Path) -> Iterator[tuple[int, dict]]:
    import gzip
    import zlib
    lineno = 0
    try:
        with gzip.open(p, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):
                    f.read(1)  # the last line: a truncated stream raises here, before a torn line is parsed
                obj = _parse_line(raw, p, lineno)
                if obj is not None:
                    yield lineno, obj
    except (OSError, EOFError, zlib.error) as e:
        after = f" after line {lineno}" if lineno else ""
        raise RecordError(p, None, f"corrupt or truncated gzip file{after} ({e})") from None


def _read_rows(p, rows, source) -> list[Task]:
    return list(_iter_rows(p, rows, source))


def _iter_rows(p, rows, source) -> Iterator[Task]:
    seen = set()
    for i, (line, obj) in enumerate(rows):
        if not isinstance(obj, dict):
            raise RecordError(p, line, f"expected a JSON object, got {_json_type(obj)}")
        t = task_from_obj(obj, p, line, i, source)
        if t.id in seen:
            raise RecordError(p, line, f"duplicate id '{t.id}'")
        seen.add(t.id)
        yield t


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _parquet_rows(p: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq
    try:
        rows = pq.read_table(p).to_pylist()
    except Exception as e:  # pyarrow raises a dozen types (ArrowInvalid, OSError, ...) on a corrupt file
        raise RecordError(p, None, f"not a readable Parquet file ({_first_line(e)})") from None
    for i, row in enumerate(rows):
        yield i + 1, row


def _read_hf_dataset(p: Path, source: str) -> list[Task]:
    import datasets
    try:
        ds = datasets.load_from_disk(str(p))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else next(iter(ds.values()))
        rows = ds.to_list()
    except Exception as e:  # a broken folder fails in json, pyarrow or datasets, with any of their types
        raise RecordError(p, None, f"not a readable saved dataset ({_first_line(e)})") from None
    return _read_rows(p, ((i + 1, row) for i, row in enumerate(rows)), source)


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


def stage_outputs() -> tuple[str, ...]:
    """A stage folder's final records files, most processed first (kept.jsonl, tasks.jsonl, instructions.jsonl):
    the `output` of each records stage of `gen run`, from the one registry (instructgen.stage.STAGES; imported
    here, since instructgen.stage builds on this module)."""
    from .stage import PIPELINE, STAGES
    return tuple(STAGES[s].output for s in reversed(PIPELINE) if STAGES[s].records and STAGES[s].output)


def read_records(path: str | os.PathLike) -> list[Task]:
    """Records from a file of any accepted format, or from a stage folder (its final output file).

    A stage folder must be complete (its `completed` marker written); its outputs are looked up in the order
    of `stage_outputs()`."""
    return list(iter_records(path))


def iter_records(path: str | os.PathLike) -> Iterator[Task]:
    """`read_records` one record at a time (JSONL streamed in bounded memory)."""
    p = Path(path)
    if p.is_dir() and (p / "config.json").exists():
        if not (p / "completed").exists():
            raise RecordError(p, None, "this run folder is not complete; re-run its command to finish it first")
        outputs = stage_outputs()
        for name in outputs:
            if (p / name).exists():
                return iter_tasks(p / name)
        raise RecordError(p, None, f"run folder holds none of {', '.join(outputs)}")
    return iter_tasks(p)
