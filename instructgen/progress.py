"""Progress bars (tqdm, with tokens/s and ETA), progress lines for logs, and plain-text summary tables shared by
every stage.

`Progress` is what a generation stage reports to: on a terminal a tqdm bar whose postfix moves within a teacher
call (tokens and tokens/s, fed by the teacher's `on_tokens`); when stderr is not a terminal (CI, Slurm, nohup) a
plain line every `INSTRUCTGEN_PROGRESS_SECONDS` seconds (default 30) from a timer thread, so a log shows counts,
tokens/s, ETA and cost even while one long call runs.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Sequence

PROGRESS_SECONDS = 30.0  # a line every 30 s: readable in a Slurm log, frequent enough to see a stall


def bar(total: int | None, desc: str, initial: int = 0, unit: str = "rec", disable: bool | None = None, file=None):
    """A tqdm bar on stderr (or `file`); disabled automatically when it is not a terminal unless forced."""
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=file or sys.stderr,
                disable=disable, smoothing=0.1)


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """Counts, tokens/s, ETA and running cost of one stage, shown as a bar (terminal) or as lines (a log).

    `update(n)` counts finished units, `on_tokens(n)` generated tokens (thread-safe: HTTP teachers call it from
    their workers), `set(**fields)` the extra fields (kept=, rejected=, cost=). `log=None` picks by whether
    stderr is a terminal; `interval` is the seconds between log lines."""

    def __init__(self, total: int | None, desc: str, initial: int = 0, unit: str = "rec", quiet: bool = False,
                 log: bool | None = None, interval: float | None = None, stream=None):
        self.total, self.desc, self.unit, self.quiet = total, desc, unit, quiet
        self.stream = stream or sys.stderr
        self.n, self.initial, self.tokens = initial, initial, 0
        self.fields: dict[str, object] = {}
        self.t0 = time.perf_counter()
        self._lock = threading.Lock()
        self._last_postfix = 0.0
        self.log = (not _isatty(self.stream)) if log is None else log
        self.interval = interval if interval is not None else float(os.environ.get("INSTRUCTGEN_PROGRESS_SECONDS",
                                                                                    PROGRESS_SECONDS))
        self._bar = None
        self._stop = threading.Event()
        self._thread = None
        if quiet:
            return
        if self.log:
            self._thread = threading.Thread(target=self._tick, name=f"progress-{desc}", daemon=True)
            self._thread.start()
        else:
            self._bar = bar(total, desc, initial=initial, unit=unit, disable=False, file=self.stream)

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.n += n
        if self._bar is not None:
            self._bar.update(n)

    def on_tokens(self, n: int) -> None:
        with self._lock:
            self.tokens += n
        if self._bar is not None and time.perf_counter() - self._last_postfix > 0.5:  # tqdm redraws are not free
            self._postfix()

    def set(self, **fields) -> None:
        with self._lock:
            self.fields.update(fields)
        if self._bar is not None:
            self._postfix()

    @property
    def tokens_per_s(self) -> float:
        dt = time.perf_counter() - self.t0
        return self.tokens / dt if dt > 0 else 0.0

    def line(self) -> str:
        """The log line: `desc: n/total unit (pct), tokens, tok/s, elapsed, ETA, fields`."""
        with self._lock:
            n, tokens, fields = self.n, self.tokens, dict(self.fields)
        elapsed = time.perf_counter() - self.t0
        done_now = n - self.initial
        parts = [f"{self.desc}: {n}/{self.total} {self.unit}" if self.total else f"{self.desc}: {n} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * n / self.total:.0f}%)"
        parts.append(f"{tokens} tokens, {self.tokens_per_s:.1f} tok/s")
        parts.append(f"elapsed {_duration(elapsed)}")
        if self.total and done_now > 0 and n < self.total:
            parts.append(f"ETA {_duration(elapsed / done_now * (self.total - n))}")
        elif self.total and n < self.total:
            parts.append("ETA ?")
        parts += [f"{k} {_fmt_field(v)}" for k, v in fields.items()]
        return ", ".join(parts)

    def emit(self) -> None:
        if not self.quiet and self.log:
            print(self.line(), file=self.stream, flush=True)

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self.emit()

    def _postfix(self) -> None:
        self._last_postfix = time.perf_counter()
        with self._lock:
            fields = {k: _fmt_field(v) for k, v in self.fields.items()}
        self._bar.set_postfix(tokens=self.tokens, tok_s=f"{self.tokens_per_s:.1f}", **fields)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self.emit()  # the last line: where it ended
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _fmt_field(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def cost_of(prompt_tokens: int, completion_tokens: int, price_in_per_m: float, price_out_per_m: float) -> float:
    """Money for these tokens at prices per million prompt / completion tokens."""
    return (prompt_tokens * price_in_per_m + completion_tokens * price_out_per_m) / 1e6


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
