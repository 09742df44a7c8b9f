"""gen merge: merge a trained adapter into its base model, reloaded unquantized."""

from __future__ import annotations

import argparse

HELP = "merge a gen train adapter into its base model (full precision, never into 4-bit weights)"
DESCRIPTION = HELP + """

DIR is a completed `gen train` output folder. The base model named in DIR/config.json is reloaded without
quantization, the adapter is merged into it, and the result (model, tokenizer with the training chat template)
is written to DIR/merged or --out; it loads with transformers alone."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="a completed gen train output folder")
    p.add_argument("--out", help="where to write the merged model (default DIR/merged)")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="weights dtype of the merged model (auto: the base checkpoint's own)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing merged model folder")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    from ..trainer.merge import merge_adapter
    out = merge_adapter(args.dir, out=args.out, dtype=args.dtype, overwrite=args.overwrite, quiet=args.quiet)
    if args.quiet:
        return 0
    print(out)
    return 0
