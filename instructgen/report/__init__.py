"""`gen report`: one self-contained HTML page that shows what a run did (see `write_report`).

collect.py reads the run folder, digest.py makes one pass over each stage's records (counts, score columns,
seeded samples), figures.py turns that into figures (svg.py draws them with matplotlib as static SVG), page.py
lays out the page. `gen publish` reuses the same figures as files for the dataset card.
"""

from __future__ import annotations

import os
from pathlib import Path

from .collect import RunData, load_run
from .figures import Figure, build_figures
from .page import MARKER, render

__all__ = ["write_report", "write_figures", "load_run", "RunData", "Figure", "build_figures"]


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, run: RunData | None = None,
                 figures: tuple[list[Figure], list[str]] | None = None, reproduce: list[str] | None = None) -> Path:
    """Write the HTML report of a run folder (or one stage folder) to `out` (default RUN_DIR/report.html) and
    return its path. Replaces an earlier report; refuses to replace any other file. `run` and `figures`
    (from `build_figures`) may be passed in when the caller already has them; `reproduce` is the page's
    reproduce block (default `reproduce_block(run)`; `gen publish` passes its card's)."""
    run = run or load_run(run_dir, records=False)  # records streamed, never all in memory
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    _check_replaceable(out)
    figs, notes = figures or build_figures(run)
    html = render(run, figs, notes, reproduce)
    from ..rundir import atomic_path
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return out


def write_figures(figures: list[Figure], folder: Path) -> list[tuple[str, Figure]]:
    """Write every figure as a standalone `folder/<id>.svg`; returns (file name, figure) pairs in page order."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for f in figures:
        name = f"{f.id}.svg"
        (folder / name).write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + f.svg + "\n", encoding="utf-8")
        out.append((name, f))
    return out


def _check_replaceable(out: Path) -> None:
    if out.is_dir():
        raise FileExistsError(f"--out {out} is a folder; give a file name such as {out / 'report.html'}")
    if out.exists() and not out.is_file():  # a device or pipe (`--out /dev/stdout`): reading it would wait
        raise FileExistsError(f"--out {out} is not a regular file (a device, pipe or socket); give a file name "
                              f"such as report.html (nothing was written)")
    if out.exists():
        with open(out, encoding="utf-8", errors="replace") as f:
            first = f.readline().strip()
        if first != MARKER:
            raise FileExistsError(f"--out {out} exists and is not an instructgen report; "
                                  "choose another file (nothing was written)")
