"""gen publish: push a run's curated data to the Hugging Face Hub with a dataset card."""

from __future__ import annotations

import argparse

HELP = "publish a run's curated data to the Hugging Face Hub with a dataset card (or build it locally)"
DESCRIPTION = HELP + """

Publishes the most processed data of RUN_DIR (curated > instances > alpaca-preset instructions) as parquet
(id, instruction, input, output, messages, source, system, score_*), with a README card that records the teacher,
templates, seeds, preset and sampling values (or, for imported records, the file they came from and that no
model wrote them), the filter funnel with thresholds, library versions and the commands that reproduce it
(the command lines as run and runnable ones, paths relative to the run folder), plus the run's configs, stats
and report figures.
Needs a write token in HF_TOKEN (or the one `hf auth login` saved), checked before any work; the token is never printed or
written. The upload is one commit: if it fails nothing is published, and re-running the command finishes it.
--dry-run (into RUN_DIR/publish) or --local-dir DIR write exactly the files that would be uploaded, no token
needed; `datasets.load_dataset(DIR)` loads them. An existing DIR is replaced only when it is empty or an earlier
build holding nothing but the files its manifest lists; DIR may not be, hold or lie inside RUN_DIR.
No published file names a local path: paths in the run folder are made relative to it, other files are named
by their file name, packaged ones as <packaged>/..."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a complete run folder or stage folder")
    p.add_argument("--repo", required=True, help="OWNER/NAME of the dataset repository")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--split-test", type=float, default=0.0,
                   help="fraction of tasks held out as a test split (default 0: train only)")
    p.add_argument("--seed", type=int, default=42, help="seed of the test split (default 42)")
    p.add_argument("--license", default="apache-2.0", help="license in the card metadata (default apache-2.0)")
    p.add_argument("--language", default="en", help="language code in the card metadata (default en)")
    p.add_argument("--pretty-name", help="card title (default: the repository name)")
    p.add_argument("--source-dataset", action="append", default=[], metavar="ID",
                   help="Hub id of a data set the imported records came from, for the card's source_datasets "
                        "(repeatable; `original` is added when a model wrote records)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--dry-run", action="store_true", help="build into RUN_DIR/publish; upload nothing")
    where.add_argument("--local-dir", help="build into this folder; upload nothing")


def run(args) -> int:
    import sys

    from ..publish import PublishConfig, publish
    cfg = PublishConfig(repo=args.repo, private=args.private, split_test=args.split_test, seed=args.seed,
                        license=args.license, language=args.language, pretty_name=args.pretty_name,
                        source_datasets=args.source_dataset)
    folder, url, manifest = publish(args.run_dir, cfg, local_dir=args.local_dir, dry_run=args.dry_run)
    sizes = ", ".join(f"{k} {v:,}" for k, v in manifest["splits"].items())
    if url:
        print(f"published {cfg.repo} ({sizes} examples): {url}", file=sys.stderr)
    else:
        print(f"built {len(manifest['files'])} files for {cfg.repo} ({sizes} examples) in {folder}; nothing "
              f"was uploaded", file=sys.stderr)
    return 0
