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
from pathlib import Path
from typing import Callable, Iterable

from .examples import iter_examples
from .records import RecordError, Task


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


def export_tasks(tasks: Iterable[Task], fmt: str, out: str | os.PathLike, user_template: str = "user_turn",
                 overwrite: bool = False, source: str | os.PathLike = "input") -> int:
    """Write one example per instance (with a non-empty output) of every kept task to `out` in `fmt`; returns
    the number of examples. Refuses to replace an existing file unless `overwrite`; writes atomically."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if out.is_dir():
        raise FileExistsError(f"{out} is a folder; --out must be a file")
    tasks = list(tasks)
    rows = list(iter_examples(tasks, user_template))
    if not rows:
        raise RecordError(source, None, f"no examples to export: none of its {len(tasks)} tasks is kept with an "
                                        "instance that has an output (run `gen instances` on it first)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    writer = FORMATS[fmt][0]
    try:
        if fmt in BINARY:
            writer(rows, tmp)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                writer(rows, f)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return len(rows)


def export(input_path: str | os.PathLike, fmt: str, out: str | os.PathLike, user_template: str = "user_turn",
           overwrite: bool = False) -> int:
    """`gen export`: read a stage folder or records file (`read_records`) and export it; returns the count."""
    from .records import read_records
    from .templates import load_template
    load_template(user_template)  # a bad template fails before reading anything big
    return export_tasks(read_records(input_path), fmt, out, user_template, overwrite, source=input_path)
