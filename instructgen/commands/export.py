"""gen export: write a run's examples in the format a trainer reads."""

from __future__ import annotations

import argparse

HELP = "export examples for trl, LLaMA-Factory, axolotl (alpaca, messages, sharegpt, prompt-completion, ...)"
DESCRIPTION = HELP + """

INPUT is any completed stage folder (gen instances, gen curate, an Alpaca-preset gen instructions folder; a
gen instructions folder is followed to the finished gen instances / gen curate folder inside it) or a records
file. One example per instance; the user turn joins instruction and input through a template file
(templates/user_turn.jinja2 unless --user-template); the system prompt is --system, else the record's own.
Formats, and who trains on what (README: "Which export for which trainer"):
  prompt-completion       JSONL {prompt: [system?, user], completion: [assistant]}: trl, loss on the answer
  prompt-completion-text  the same as strings rendered with --model's chat template: trl, loss on the answer
  messages                JSONL {"messages": [system?, user, assistant]}: LLaMA-Factory, axolotl (answer);
                          trl trains on every token of it, prompt included
  sharegpt                JSONL {"conversations": [{from: human|gpt|system, value}]}: LLaMA-Factory, axolotl;
                          not for trl (it keeps the roles human/gpt literally)
  alpaca                  JSON list of {instruction, input, output[, system]}: LLaMA-Factory, axolotl
  text                    JSONL {text} rendered with --model's chat template: every token is trained
  jsonl                   JSONL {id, instruction, input, output, system, messages}
  parquet                 the same columns as Parquet, read by datasets 3.x to 5.x
  save-to-disk            the same columns as a datasets.save_to_disk folder (load_from_disk)
Beside OUT go OUT.dataset_info.json (the LLaMA-Factory entry) and OUT.axolotl.yaml (the axolotl `datasets:`
entry) where that trainer reads the format."""

FORMAT_NAMES = ("alpaca", "messages", "sharegpt", "prompt-completion", "prompt-completion-text", "text", "jsonl",
                "parquet", "save-to-disk")  # instructgen.export.FORMATS, kept light


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="stage folder or records file")
    p.add_argument("--format", required=True, choices=FORMAT_NAMES, help="output format")
    p.add_argument("--out", required=True, help="output file, or folder for save-to-disk (refused when it "
                                                "exists, unless --overwrite)")
    p.add_argument("--user-template", default="user_turn",
                   help="Jinja2 file rendering the user turn from `instruction` and `input` (default: packaged)")
    p.add_argument("--system", metavar="TEXT",
                   help="system prompt of every example (default: each record's own `system`, if any)")
    p.add_argument("--model", help="text / prompt-completion-text: the student whose chat template renders "
                                   "them, as gen train's `student` (embedded name, folder, .gguf, hub id)")
    p.add_argument("--chat-template", metavar="FILE", help="with --model: a Jinja chat template file used "
                                                           "instead of the student's (as gen train's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def run(args) -> int:
    import sys

    from ..export import export

    n = export(args.input, args.format, args.out, user_template=args.user_template, overwrite=args.overwrite,
               system=args.system, model=args.model, chat_template=args.chat_template)
    args.json_counts = {"examples": n}  # the `--json` summary's counts (an export has no summary.json)
    print(f"wrote {n} example{'s' if n != 1 else ''} to {args.out} ({args.format})", file=sys.stderr)
    return 0
