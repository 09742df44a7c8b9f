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
refused unless --overwrite. MinHash signatures and embeddings are cached by text hash in OUT/.cache (kept across
--overwrite), so a new threshold costs no hashing or encoding."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="?", help="records file or folder to curate")
    p.add_argument("--out", help="output folder (created; resumed when it exists)")
    p.add_argument("--config", help="YAML filter chain (replaces the default; see --print-config)")
    p.add_argument("--dry-run", action="store_true", help="run the chain and print the funnel; write nothing")
    p.add_argument("--overwrite", action="store_true", help="discard an existing output folder with another config")
    p.add_argument("--languagetool-url", help="LanguageTool server for the grammar filter (default $LANGUAGETOOL_URL)")
    p.add_argument("--cache-dir", help="signature/embedding cache folder (default OUT/.cache)")
    p.add_argument("--print-config", action="store_true", help="print the default chain (or --config's) as YAML")
    p.add_argument("--quiet", action="store_true", help="no progress bars or funnel")


def run(args) -> int:
    from ..config import ConfigError
    if args.print_config:
        from ..filters.chain import DEFAULT_CONFIG, load_config
        if args.config:
            import yaml
            print(yaml.safe_dump(load_config(args.config).to_dict(), sort_keys=False, allow_unicode=True), end="")
        else:
            print(DEFAULT_CONFIG.read_text(encoding="utf-8"), end="")
        return 0
    if not args.input:
        raise ConfigError("INPUT is required (a records file or folder)")
    if not args.out and not args.dry_run:
        raise ConfigError("--out DIR is required (or --dry-run)")
    from ..filters.stage import curate
    curate(args.input, args.out, config=args.config, overwrite=args.overwrite, dry_run=args.dry_run,
           quiet=args.quiet, languagetool_url=args.languagetool_url, cache_dir=args.cache_dir)
    return 0
