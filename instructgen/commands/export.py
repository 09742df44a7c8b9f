"""gen export: write a run's examples in the format a trainer reads."""

from __future__ import annotations

import argparse

HELP = "export examples as alpaca JSON, messages/sharegpt/jsonl JSONL or parquet"
DESCRIPTION = HELP + """

INPUT is any completed stage folder (gen instances, gen curate, an Alpaca-preset gen instructions folder) or a
records file. One example per instance; the user turn joins instruction and input through a template file
(templates/user_turn.jinja2 unless --user-template). Formats:
  alpaca    JSON list of {instruction, input, output}
  messages  JSONL {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]} (trl SFTTrainer)
  sharegpt  JSONL {"conversations": [{"from": "human", ...}, {"from": "gpt", ...}]}
  jsonl     JSONL {id, instruction, input, output, messages}
  parquet   the jsonl columns as Parquet (datasets)
All load with datasets.load_dataset("json" | "parquet", data_files=FILE)."""

FORMAT_NAMES = ("alpaca", "messages", "sharegpt", "jsonl", "parquet")  # instructgen.export.FORMATS, kept light


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="stage folder or records file")
    p.add_argument("--format", required=True, choices=FORMAT_NAMES, help="output format")
    p.add_argument("--out", required=True, help="output file (refused when it exists, unless --overwrite)")
    p.add_argument("--user-template", default="user_turn",
                   help="Jinja2 file rendering the user turn from `instruction` and `input` (default: packaged)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args) -> int:
    import sys

    from ..export import export

    n = export(args.input, args.format, args.out, user_template=args.user_template, overwrite=args.overwrite)
    print(f"wrote {n} examples to {args.out} ({args.format})", file=sys.stderr)
    return 0
