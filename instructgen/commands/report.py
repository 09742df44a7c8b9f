"""gen report: one self-contained HTML page that shows what a run did."""

from __future__ import annotations

import argparse

HELP = "write one self-contained HTML report of a run folder (funnel, distributions, verbs, training)"
DESCRIPTION = HELP + """

RUN_DIR is a `gen run` folder (instructions/, instances/, curated/, train/) or any single stage folder; the page
shows what exists and lists what is missing. Plots are static inline SVG drawn with matplotlib (no script): the
file opens offline and can be mailed. Records are streamed, figures binned and sample rows sampled, so the page
of a million-record run is as small as that of a small one. An earlier report at --out is replaced; any other
existing file is refused."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder or stage folder")
    p.add_argument("--out", help="HTML file to write (default RUN_DIR/report.html)")


def run(args) -> int:
    import sys

    from ..report import write_report
    path = write_report(args.run_dir, args.out)
    print(f"report: {path}", file=sys.stderr)
    return 0
