"""`gen export`: task records to the files trainers read, one example per instance.

Formats: `alpaca` (a JSON list of {instruction, input, output}), `messages` (JSONL of {"messages": [user,
assistant]}, what trl's SFTTrainer reads), `sharegpt` (JSONL of {"conversations": [human, gpt]}), `jsonl`
(JSONL of {id, instruction, input, output, messages}) and `parquet` (the `jsonl` columns, written by `datasets`).
How the instruction and input become the user turn is the template file `templates/user_turn.jinja2` (or
`--user-template FILE`), shared with training through `instructgen.examples.iter_examples`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterable

from .config import ConfigError
from .examples import iter_examples
from .records import RecordError, Task
from .rundir import atomic_path


def _alpaca(rows: list[dict], f) -> None:
    json.dump([{k: r[k] for k in ("instruction", "input", "output")} for r in rows], f, ensure_ascii=False,
              indent=1)
    f.write("\n")


def _jsonl(shape: Callable[[dict], dict]) -> Callable[[list[dict], object], None]:
    def write(rows: list[dict], f) -> None:
        for r in rows:
            f.write(json.dumps(shape(r), ensure_ascii=False) + "\n")
    return write


def _sharegpt(r: dict) -> dict:
    user, assistant = r["messages"]
    return {"conversations": [{"from": "human", "value": user["content"]},
                              {"from": "gpt", "value": assistant["content"]}]}


def _parquet(rows: list[dict], path: Path) -> None:
    import datasets
    datasets.Dataset.from_list(rows).to_parquet(str(path))


# name -> (writer of an open text file, or of a path for binary formats; what it is)
FORMATS: dict[str, tuple[Callable, str]] = {
    "alpaca": (_alpaca, "a JSON list of {instruction, input, output} (Stanford Alpaca's alpaca_data.json)"),
    "messages": (_jsonl(lambda r: {"messages": r["messages"]}),
                 'JSONL, one {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]} per line (trl)'),
    "sharegpt": (_jsonl(_sharegpt), 'JSONL, one {"conversations": [{"from": "human", ...}, {"from": "gpt", ...}]}'),
    "jsonl": (_jsonl(lambda r: r), "JSONL, one {id, instruction, input, output, messages} per line"),
    "parquet": (_parquet, "Parquet with the jsonl columns, written by datasets"),
}
BINARY = {"parquet"}


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


def export_tasks(tasks: Iterable[Task], fmt: str, out: str | os.PathLike, user_template: str = "user_turn",
                 overwrite: bool = False, source: str | os.PathLike = "input") -> int:
    """Write one example per instance (with a non-empty output) of every kept task to `out` in `fmt`; returns
    the number of examples. Refuses to replace an existing file unless `overwrite`; writes atomically through
    a temporary file of its own in the same folder (never a fixed name a crashed run may have left)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise FileExistsError(f"{out} is a folder; --out must be a file path")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    tasks = list(tasks)
    rows = list(iter_examples(tasks, user_template))
    if not rows:
        raise RecordError(source, None, f"no examples to export: none of its {len(tasks)} tasks is kept with an "
                                        "instance that has an output (run `gen instances` on it first)")
    renamed = unique_ids(rows)
    if renamed:
        old, new = renamed[0]
        more = f" and {len(renamed) - 1} more" if len(renamed) > 1 else ""
        print(f"note: example id '{old}' was taken by another example; exported as '{new}'{more}", file=sys.stderr)
    writer = FORMATS[fmt][0]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:  # a temp file of its own, renamed onto OUT, removed on failure
            if fmt in BINARY:
                writer(rows, tmp)
            else:
                with open(tmp, "w", encoding="utf-8") as f:
                    writer(rows, f)
                    f.flush()
                    os.fsync(f.fileno())
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write: {e.strerror or e}") from None
    return len(rows)


def export(input_path: str | os.PathLike, fmt: str, out: str | os.PathLike, user_template: str = "user_turn",
           overwrite: bool = False) -> int:
    """`gen export`: read a stage folder or records file (`read_records`) and export it; returns the count.
    `--out` may be neither the input nor inside an input folder (a run folder holds only what its stage wrote)."""
    from .records import read_records
    from .templates import load_template
    src, dst = Path(input_path).resolve(), Path(out).resolve()
    if dst == src or src in dst.parents:
        where = "is the input itself" if dst == src else f"is inside the input folder {input_path}"
        raise ConfigError(f"--out {out} {where}; write the export somewhere else")
    load_template(user_template)  # a bad template fails before reading anything big
    return export_tasks(read_records(input_path), fmt, out, user_template, overwrite, source=input_path)
