"""`gen export`: task records to the files trainers read, one example per instance.

Each format is written for a named consumer, and beside it go the LLaMA-Factory `dataset_info.json` entry and
the axolotl `datasets:` snippet that load it (`OUT.dataset_info.json`, `OUT.axolotl.yaml`), where that
consumer reads the format. What each trainer trains on per format is the README's export table.

- `messages` / `jsonl` / `parquet` / `save-to-disk`: role/content turns; trl trains on every token of them
  (prompt included), LLaMA-Factory and axolotl on the assistant turn.
- `prompt-completion`: trl's conversational prompt/completion; trl masks the prompt (what `gen train` does).
- `prompt-completion-text` and `text`: pre-rendered with the chat template `gen train` uses for `--model`
  (`trainer/data.py render_prompt`); trl masks the prompt of the first and trains on all of `text`.
- `sharegpt`: `from`/`value` turns with ShareGPT's roles `human`/`gpt`, for LLaMA-Factory and axolotl (both
  map the roles); trl keeps the roles literally, so it must read `messages` or `prompt-completion` instead.
- `alpaca`: Stanford Alpaca's list of {instruction, input, output} (+ `system` when there is one).
Parquet and saved-dataset folders are written with a plain Arrow schema and no `datasets` feature metadata:
datasets 3.x cannot parse the `List` feature type that 4.x writes, and every major infers the same types
from the schema. A system prompt comes from `--system` or from each record's own (`meta["system"]`); how the
instruction and input become the user turn is `templates/user_turn.jinja2` (or `--user-template FILE`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from .config import ConfigError
from .examples import iter_examples
from .records import RecordError, Task, read_records, stage_outputs, text_hash
from .rundir import atomic_path
from .stage import PIPELINE, STAGES


def examples(tasks: Iterable[Task], user_template: str = "user_turn", system: str | None = None) -> list[dict]:
    """{id, instruction, input, output, system, messages} per instance with an output of every kept task
    (`iter_examples`), the system prompt first in `messages` when there is one: `system` (`--system`) when
    given, else the record's own (`meta["system"]`, read from a `system` field or a leading system turn)."""
    current: list[Task] = []

    def feed():  # iter_examples pulls the next task only after yielding the last one's rows
        for t in tasks:
            current[:] = [t]
            yield t

    rows = []
    for r in iter_examples(feed(), user_template):
        s = system_of(current[0], system)
        r["system"] = s
        if s:
            r["messages"].insert(0, {"role": "system", "content": s})
        rows.append(r)
    return rows


def system_of(t: Task, system: str | None = None) -> str:
    """The system prompt of task `t`'s examples: `system` (`--system`) when given, else the record's own
    (`meta["system"]`), else "". The one rule `gen export`, `gen train` and `gen publish` read it by."""
    if system is not None:
        return system
    own = t.meta.get("system")
    return own if isinstance(own, str) else ""


# ----------------------------------------------------------------------------------------------- shapes

def _alpaca(rows: list[dict]) -> list[dict]:
    with_system = any(r["system"] for r in rows)  # LLaMA-Factory's Alpaca `system` column
    return [{k: r[k] for k in ("instruction", "input", "output") + (("system",) if with_system else ())}
            for r in rows]


def _sharegpt(r: dict) -> dict:
    roles = {"system": "system", "user": "human", "assistant": "gpt"}
    return {"conversations": [{"from": roles[m["role"]], "value": m["content"]} for m in r["messages"]]}


def _prompt_completion(r: dict) -> dict:
    return {"id": r["id"], "prompt": r["messages"][:-1], "completion": r["messages"][-1:]}


def _columns(r: dict) -> dict:
    return {k: r[k] for k in ("id", "instruction", "input", "output", "system", "messages")}


# name -> (row shape, or None for the whole-list Alpaca file; how it is written: json | jsonl | parquet | folder;
#          what it is)
FORMATS: dict[str, tuple[Callable | None, str, str]] = {
    "alpaca": (None, "json", "a JSON list of {instruction, input, output[, system]} (Stanford Alpaca)"),
    "messages": (lambda r: {"messages": r["messages"]}, "jsonl",
                 'JSONL {"messages": [system?, user, assistant]} (role/content turns)'),
    "sharegpt": (_sharegpt, "jsonl", 'JSONL {"conversations": [{"from": "human" | "gpt" | "system", "value"}]}'),
    "prompt-completion": (_prompt_completion, "jsonl",
                          'JSONL {"id", "prompt": [system?, user], "completion": [assistant]} (trl, masked)'),
    "prompt-completion-text": (lambda r: {"id": r["id"], "prompt": r["prompt_text"],
                                          "completion": r["completion_text"], "rendered_for": r["rendered_for"]},
                               "jsonl", "JSONL {id, prompt, completion} strings rendered with --model's chat "
                                        "template (trl, masked)"),
    "text": (lambda r: {"id": r["id"], "text": r["prompt_text"] + r["completion_text"],
                        "rendered_for": r["rendered_for"]}, "jsonl",
             "JSONL {id, text}: the whole example rendered with --model's chat template"),
    "jsonl": (_columns, "jsonl", "JSONL {id, instruction, input, output, system, messages}"),
    "parquet": (_columns, "parquet", "the jsonl columns as Parquet (plain Arrow schema: datasets 3.x-5.x)"),
    "save-to-disk": (_columns, "folder", "the jsonl columns as a datasets.save_to_disk folder (load_from_disk)"),
}
RENDERED = {"prompt-completion-text", "text"}  # need --model
SUFFIXES = {"json": (".json",), "jsonl": (".jsonl",), "parquet": (".parquet",)}  # what the readers expect


# ----------------------------------------------------------------------------------------------- consumers

def consumers(fmt: str, name: str, system: bool = False) -> tuple[dict | None, str | None]:
    """(LLaMA-Factory `dataset_info.json` entry, axolotl `datasets:` YAML snippet) that load export `name` in
    `fmt`, None where that consumer does not read the format; `system`: an Alpaca export has a system column. Paths are the export's file name: LLaMA-Factory
    resolves it against `dataset_dir`, axolotl against where it runs."""
    role_tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "system_tag": "system"}
    # LLaMA-Factory reads a saved folder's Arrow shard (its loader refuses a folder of mixed file types);
    # axolotl gives a folder to load_from_disk
    lf_name = f"{name}/data-00000-of-00001.arrow" if fmt == "save-to-disk" else name
    lf = {
        "alpaca": {"file_name": lf_name, "formatting": "alpaca",
                   "columns": {"prompt": "instruction", "query": "input", "response": "output",
                               **({"system": "system"} if system else {})}},
        "sharegpt": {"file_name": lf_name, "formatting": "sharegpt", "columns": {"messages": "conversations"},
                     "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                              "assistant_tag": "gpt", "system_tag": "system"}},
        "text": {"file_name": lf_name, "columns": {"prompt": "text"}},  # stage: pt (trains on every token)
    }.get(fmt)
    if fmt in ("messages", "jsonl", "parquet", "save-to-disk"):
        lf = {"file_name": lf_name, "formatting": "sharegpt", "columns": {"messages": "messages"},
              "tags": role_tags}
    head = f"  - path: {name}\n" + ("" if fmt == "save-to-disk" else
                                    f"    ds_type: {'parquet' if fmt == 'parquet' else 'json'}\n")
    chat = "    type: chat_template\n    roles_to_train: [assistant]\n    train_on_eos: turn\n"
    ax = {
        "alpaca": head + "    type: alpaca\n",
        "sharegpt": head + chat + "    field_messages: conversations\n"
                   "    message_property_mappings:\n      role: from\n      content: value\n"
                   "    roles:\n      user: [human]\n      assistant: [gpt]\n      system: [system]\n",
        "text": head + "    type: completion\n    field: text\n",
    }.get(fmt)
    if fmt in ("messages", "jsonl", "parquet", "save-to-disk"):
        ax = head + chat + "    field_messages: messages\n"
    return lf, (None if ax is None else "datasets:\n" + ax)


# ----------------------------------------------------------------------------------------------- writing

def _write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows), path)  # no `huggingface` schema metadata: see the docstring


def _write_saved_dataset(rows: list[dict], folder: Path) -> None:
    """What `Dataset.save_to_disk` writes (one Arrow stream shard, state.json, dataset_info.json), with a plain
    Arrow schema and no features in dataset_info.json, so `load_from_disk` of datasets 3.x to 5.x infers them."""
    import pyarrow as pa
    table = pa.Table.from_pylist(rows)
    shard = "data-00000-of-00001.arrow"
    with pa.OSFile(str(folder / shard), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    state = {"_data_files": [{"filename": shard}], "_fingerprint": text_hash(json.dumps(rows, sort_keys=True)),
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
             "_split": None}
    (folder / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps({"citation": "", "description": "", "homepage": "",
                                                          "license": ""}, indent=2) + "\n", encoding="utf-8")


def _write(fmt: str, rows: list[dict], path: Path) -> None:
    shape, kind, _ = FORMATS[fmt]
    if kind == "parquet":
        return _write_parquet([shape(r) for r in rows], path)
    if kind == "folder":
        return _write_saved_dataset([shape(r) for r in rows], path)
    with open(path, "w", encoding="utf-8") as f:
        if kind == "json":
            json.dump(_alpaca(rows), f, ensure_ascii=False, indent=1)
            f.write("\n")
        else:
            for r in rows:
                f.write(json.dumps(shape(r), ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _replace_folder(tmp: Path, out: Path) -> None:
    """Move the finished folder `tmp` onto `out`, replacing an earlier saved dataset there."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        os.replace(out, old / "old")
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


def render(rows: list[dict], model: str, chat_template: str | None = None) -> None:
    """Add `prompt_text` and `completion_text` to each row, rendered with the chat template `gen train` uses for
    student `model` (its own, `chat_template`, or the default for a model without one), in place."""
    from transformers import AutoTokenizer

    from .models import resolve
    from .trainer.data import render_example, set_chat_template
    path, gguf = resolve(model)
    tok = AutoTokenizer.from_pretrained(path, gguf_file=gguf)
    set_chat_template(tok, chat_template)
    name = Path(model).name if Path(model).exists() else model  # a local folder's name, never its absolute path
    for r in rows:
        r["prompt_text"], r["completion_text"] = render_example(tok, r["messages"])
        r["rendered_for"] = name


def export_tasks(tasks: Iterable[Task], fmt: str, out: str | os.PathLike, user_template: str = "user_turn",
                 overwrite: bool = False, source: str | os.PathLike = "input", system: str | None = None,
                 model: str | None = None, chat_template: str | None = None) -> int:
    """Write one example per instance (with a non-empty output) of every kept task to `out` in `fmt`, and
    beside it the consumer snippets (`consumers`); returns the number of examples. Refuses to replace an
    existing output unless `overwrite`; each file is written through a temp file of its own and renamed."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if fmt in RENDERED and not model:
        raise ConfigError(f"--format {fmt} is rendered with a student's chat template: pass --model (the "
                          "`student` gen train will use)")
    out = Path(out)
    kind = FORMATS[fmt][1]
    lf, ax = consumers(fmt, out.name)
    side = [p for p, v in ((Path(f"{out}.dataset_info.json"), lf), (Path(f"{out}.axolotl.yaml"), ax)) if v]
    if out.is_dir() and kind != "folder":
        raise FileExistsError(f"{out} is a folder; --out must be a file path for --format {fmt}")
    if kind == "folder" and out.exists() and not (out / "state.json").exists():
        raise FileExistsError(f"{out} exists and is not a saved dataset; give --out a new folder path")
    for p in [out] + side:
        if p.exists() and not p.is_file() and not (p == out and kind == "folder" and p.is_dir()):
            # a device or pipe (`--out /dev/stdout`): the export is renamed into place, which would replace it
            raise ConfigError(f"--out {out}: {p} is not a regular file (a device, pipe or socket); give a file "
                              f"path and read the export from there")
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p} exists; pass --overwrite to replace it")
    tasks = list(tasks)
    rows = examples(tasks, user_template, system)
    if not rows:
        raise RecordError(source, None, f"no examples to export: none of its {len(tasks)} tasks is kept with an "
                                        "instance that has an output (run `gen instances` on it first)")
    renamed = unique_ids(rows)
    if renamed:
        old, new = renamed[0]
        more = f" and {len(renamed) - 1} more" if len(renamed) > 1 else ""
        print(f"note: example id '{old}' was taken by another example; exported as '{new}'{more}", file=sys.stderr)
    if fmt in RENDERED:
        render(rows, model, chat_template)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if kind == "folder":
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
            try:
                _write(fmt, rows, tmp)
                _replace_folder(tmp, out)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        else:
            with atomic_path(out) as tmp:  # a temp file of its own, renamed onto OUT, removed on failure
                _write(fmt, rows, tmp)
        lf, ax = consumers(fmt, out.name, system=any(r["system"] for r in rows))
        key = Path(out.name).stem.lstrip(".") or out.name  # `my.data.v2.json` -> my.data.v2, never ""
        texts = {"json": lf and json.dumps({key: lf}, indent=2) + "\n", "yaml": ax}
        for p in side:
            with atomic_path(p) as tmp:
                tmp.write_text(texts[p.suffix[1:]], encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write: {e.strerror or e}") from None
    if kind != "folder" and out.suffix not in SUFFIXES[kind]:  # said once written: an error stays one line
        # LLaMA-Factory picks its loader by the extension and refuses any other; our reader (gen train, gen
        # export) reads an unknown one as JSON Lines, which an Alpaca JSON list is not
        print(f"note: --out {out.name}: LLaMA-Factory and `gen train` read this format from a file named "
              f"{' or '.join('*' + x for x in SUFFIXES[kind])}; the snippets beside it name it as given",
              file=sys.stderr)
    return len(rows)


def unique_ids(rows: list[dict]) -> list[tuple[str, str]]:
    """Make the examples' ids distinct, in place, deterministically: the first row with an id keeps it, a later
    one becomes `ID-dupN` (the smallest N no row uses). Needed because a task `a` with two instances gives
    `a-0` and `a-1`, which a task literally named `a-1` repeats, and our reader refuses a repeated id.
    Returns (old, new) for each renamed row."""
    taken = {r["id"] for r in rows}
    seen: set[str] = set()
    renamed = []
    for r in rows:
        if r["id"] in seen:
            n = 2
            while f"{r['id']}-dup{n}" in taken:
                n += 1
            new = f"{r['id']}-dup{n}"
            taken.add(new)
            renamed.append((r["id"], new))
            r["id"] = new
        seen.add(r["id"])
    return renamed


# ----------------------------------------------------------------------------------------------- reading

# the stages that carry a folder's records further (curate, instances), most processed first
_DOWNSTREAM = tuple(n for n in reversed(PIPELINE[1:]) if STAGES[n].records)


def _stage_children(folder: Path) -> list[tuple[Path, str, bool]]:
    """(path, stage, completed) of the run folders of a record stage directly inside `folder`."""
    out = []
    for child in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            stage = json.loads((child / ".instructgen").read_text(encoding="utf-8")).get("stage")
        except (OSError, ValueError, AttributeError):
            stage = None
        if stage in _DOWNSTREAM and (child / "config.json").exists():
            out.append((child, stage, (child / "completed").exists()))
    return out


def downstream(folder: str | os.PathLike) -> Path | None:
    """The finished stage inside run folder `folder` that carries its records further (`gen instances RUN`
    writes RUN/instances, `gen curate RUN/instances` RUN/instances/curate, `gen run` RUN/curated), followed
    to its most processed end; None when there is none. An unfinished or ambiguous one is a RecordError
    that names it."""
    p = Path(folder)
    found = None
    while True:
        children = _stage_children(p)
        for stage in _DOWNSTREAM:
            mine = [c for c in children if c[1] == stage]
            if not mine:
                continue
            done = [c for c in mine if c[2]]
            if not done:
                raise RecordError(mine[0][0], None, f"this `gen {stage}` folder inside {folder} is not complete; "
                                                    f"re-run `gen {stage}` to finish it, or export it by name")
            if len(done) > 1:
                names = ", ".join(str(c[0]) for c in done)
                raise RecordError(folder, None, f"holds no examples itself and several finished `gen {stage}` "
                                                f"folders: {names}; export one of them by name")
            p = found = done[0][0]
            break
        else:
            return found


def read_examples(input_path: str | os.PathLike, user_template: str = "user_turn",
                  system: str | None = None) -> tuple[list[dict], list[Task], Path]:
    """(examples, tasks, where they were read) of a stage folder or records file, as `gen export` and
    `gen train` read them: a run folder with no examples itself (a `gen instructions` folder) is followed to
    its finished downstream stage (`downstream`), with a note on stderr; so is a `gen run` folder, which holds
    only stage folders."""
    src = Path(input_path)
    outputs = stage_outputs()
    if src.is_dir() and (src / "config.json").exists() and not any((src / n).exists() for n in outputs):
        nxt = downstream(src)  # a `gen run` folder holds its stage folders and no records of its own
        if nxt is None:
            raise RecordError(src, None, f"holds none of {', '.join(outputs)} and no finished `gen "
                                         "instances` or `gen curate` folder; export a stage folder by name")
        print(f"note: {src} holds no records itself; reading its finished stage {nxt}", file=sys.stderr)
        src = nxt
    tasks = read_records(src)
    rows = examples(tasks, user_template, system)
    if not rows and src.is_dir() and (src / "config.json").exists():
        nxt = downstream(src)
        if nxt is not None:
            print(f"note: {src} holds no examples; reading its finished stage {nxt}", file=sys.stderr)
            src, tasks = nxt, read_records(nxt)
            rows = examples(tasks, user_template, system)
    return rows, tasks, src


def export(input_path: str | os.PathLike, fmt: str, out: str | os.PathLike, user_template: str = "user_turn",
           overwrite: bool = False, system: str | None = None, model: str | None = None,
           chat_template: str | None = None) -> int:
    """`gen export`: read a stage folder or records file (`read_examples`) and export it; returns the count.
    `--out` may be neither the input nor inside an input folder (a run folder holds only what its stage wrote)."""
    from .templates import load_template
    src, dst = Path(input_path).resolve(), Path(out).resolve()
    if dst == src or src in dst.parents:
        where = "is the input itself" if dst == src else f"is inside the input folder {input_path}"
        raise ConfigError(f"--out {out} {where}; write the export somewhere else")
    load_template(user_template)  # a bad template fails before reading anything big
    _, tasks, used = read_examples(input_path, user_template, system)
    return export_tasks(tasks, fmt, out, user_template, overwrite, source=used, system=system, model=model,
                        chat_template=chat_template)

