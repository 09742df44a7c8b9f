"""gen curate: an explainable filter chain with fast near-duplicate removal."""

from __future__ import annotations

import argparse

HELP = "filter a generated run or any instruction dataset: rules, readability, grammar, ROUGE-L, MinHash, embeddings"
DESCRIPTION = HELP + """

INPUT: a run folder (gen instructions / gen instances / gen curate), our JSONL records, Self-Instruct JSONL,
Alpaca JSON/JSONL, prompt/completion JSONL, chat `messages` JSONL, Parquet, or a saved HF dataset folder.
The chain is the packaged default (see --print-config) or --config FILE. Every dropped record keeps its reason,
its scores and, for duplicates, the id of the kept copy (`duplicate_of`; the first copy in input order is kept).
Every record reaching a scoring filter keeps that filter's score and rank (meta.rank), kept or dropped; its
`keep_top: N` or `keep_top: SHARE` option keeps only the best N (or share) by that score, after its threshold.

OUT: kept.jsonl, rejected.jsonl, stats.json (per filter: records in, dropped per reason, seconds), the resolved
config (config.json, curate.yaml). Re-running the same command resumes or does nothing; another config is
refused unless --overwrite. --set NAME.OPTION=VALUE changes one option of the entry named NAME (its `name:`,
else its filter), on top of the default or --config: --set minhash.threshold=0.8, --set embedding.enabled=false.
Executor: --executor local --workers N (processes here) or --executor ray [--ray-address URL] (a running Ray
cluster, else a local one); the kept and rejected sets are the same whatever the executor. Precedence: the
packaged default or --config < flags < --set. MinHash signatures and embeddings are cached by text hash in OUT/.cache (kept across
--overwrite), so a new threshold costs no hashing or encoding."""


TWEAKS = {"executor": {"choices": ["local", "ray"]}, "ray_address": {"metavar": "URL"},
          "languagetool_url": {"metavar": "URL"}, "cache_dir": {"metavar": "DIR"}}
FLAG_EXCLUSIONS: dict[str, str] = {}  # every CurateOptions option has a flag; the chain's: --config and --set


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli import add_config_flags, add_set_flag
    from ..config import CurateOptions
    p.add_argument("input", nargs="?", help="records file or folder to curate")
    p.add_argument("--out", help="output folder (created; resumed when it exists)")
    p.add_argument("--config", help="YAML filter chain (replaces the default; see --print-config)")
    add_set_flag(p, "minhash.threshold=0.8, --set embedding.enabled=false, --set workers=2; a filter's option "
                    "is ENTRY_NAME.OPTION")
    p.add_argument("--dry-run", action="store_true", help="run the chain and print the funnel; write nothing")
    p.add_argument("--overwrite", action="store_true", help="discard an existing output folder with another config")
    p.add_argument("--print-config", action="store_true", help="print the default chain (or --config's) as YAML")
    p.add_argument("--quiet", action="store_true", help="no progress bars or funnel")
    add_config_flags(p, CurateOptions, skip=tuple(FLAG_EXCLUSIONS), tweak=TWEAKS)


def resolve(args):
    """(the chain, CurateOptions): packaged default or --config < --set NAME.OPTION; defaults < flags < --set."""
    from ..cli import flag_values
    from ..config import (ConfigError, CurateOptions, blaming, build, curate_overrides, curate_sets, parse_sets,
                          validate_curate_options)
    from ..filters.chain import load_config
    sets = parse_sets(args.sets)
    try:
        entries, plain = curate_sets(sets)
    except ConfigError as e:
        raise ConfigError(f"{e}; a filter entry's option is --set NAME.OPTION (e.g. minhash.threshold)") from None
    chain = curate_overrides(load_config(args.config), entries)
    options = build(CurateOptions, [("flags", flag_values(args, CurateOptions)), ("--set", plain)])
    with blaming(sets):
        validate_curate_options(options)
    return chain, options


def run(args) -> int:
    from dataclasses import asdict

    from ..config import ConfigError
    chain, options = resolve(args)
    if args.print_config:
        if args.config or args.sets:
            import yaml
            print(yaml.safe_dump(chain.to_dict(), sort_keys=False, allow_unicode=True), end="")
        else:
            from ..filters.chain import DEFAULT_CONFIG
            print(DEFAULT_CONFIG.read_text(encoding="utf-8"), end="")
        return 0
    if not args.input:
        raise ConfigError("INPUT is required (a records file or folder)")
    if not args.out and not args.dry_run:
        raise ConfigError("--out DIR is required (or --dry-run)")
    from ..filters.stage import curate
    # a --config file stays the config argument (curate() guards it against --overwrite); --set needs the chain
    config = chain if args.sets else args.config
    curate(args.input, args.out, config=config, overwrite=args.overwrite, dry_run=args.dry_run, quiet=args.quiet,
           **asdict(options))
    return 0
