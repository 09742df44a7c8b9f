"""Progress bars (tqdm, with tokens/s and ETA) and plain-text summary tables shared by every stage."""

from __future__ import annotations

import sys
import time
from typing import Sequence


def bar(total: int | None, desc: str, initial: int = 0, unit: str = "rec", disable: bool | None = None):
    """A tqdm bar on stderr; disabled automatically when stderr is not a terminal unless forced."""
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr,
                disable=disable, smoothing=0.1)


class Rate:
    """Tokens per second over the current session (resumed work is not counted as fast)."""

    def __init__(self):
        self.t0, self.tokens = time.perf_counter(), 0

    def add(self, n: int) -> None:
        self.tokens += n

    @property
    def per_s(self) -> float:
        dt = time.perf_counter() - self.t0
        return self.tokens / dt if dt > 0 else 0.0


def table(rows: Sequence[Sequence], header: Sequence[str] | None = None) -> str:
    """Render rows as an aligned plain-text table (numbers right-aligned)."""
    rows = [list(map(_fmt, r)) for r in rows]
    if header:
        rows = [list(header)] + rows
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(len(r) for r in rows))]
    lines = []
    for n, r in enumerate(rows):
        cells = [c.rjust(w) if _isnum(c) else c.ljust(w) for c, w in zip(r, widths)]
        lines.append("  ".join(cells).rstrip())
        if header and n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _isnum(s: str) -> bool:
    return s.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()
