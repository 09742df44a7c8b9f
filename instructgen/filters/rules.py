"""Rule filters from the Self-Instruct and Alpaca generation scripts (Wang et al. 2023; Taori et al. 2023):
word-count bounds, a keyword blacklist, the first character, and a forbidden prefix. Pure and cheap."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from ..records import Task
from .base import Decision, RecordFilter, doc, field_texts

# Self-Instruct: tasks a text-only model cannot do.
SELF_INSTRUCT_BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
                           "map", "maps", "draw", "plot", "go to")
# Alpaca adds media words.
ALPACA_BLACKLIST = SELF_INSTRUCT_BLACKLIST + ("video", "audio", "music", "flowchart", "diagram")


@dataclass
class LengthParams:
    min_words: int = doc("drop a field with fewer words (whitespace split; Self-Instruct: 4)", default=4)
    max_words: int = doc("drop a field with more words (Self-Instruct: 150)", default=150)
    fields: list[str] = doc("fields checked, each on its own: instruction, input, output",
                            default_factory=lambda: ["instruction"])


class LengthFilter(RecordFilter):
    """Drop a field with fewer than `min_words` or more than `max_words` words (whitespace split).
    Self-Instruct rejects 3 words or fewer and more than 150: min_words=4, max_words=150. Stores
    `words_<field>` for every field read (the offending instance's count, else the shortest one's)."""

    name = "length"
    Params = LengthParams
    writes = ("words_{f}",)

    def setup(self) -> None:
        if not 0 <= self.p.min_words <= self.p.max_words:
            raise ValueError(f"min_words ({self.p.min_words}) must be >= 0 and <= max_words ({self.p.max_words})")

    def score_batch(self, tasks: list[Task]) -> list[Decision]:
        return [self._one(t) for t in tasks]

    def _one(self, task: Task) -> str | None:
        reason = None
        for f in self.fields:
            counts = [len(text.split()) for text in field_texts(task, f)]
            if not counts:
                continue
            worst = min(counts)
            for n in counts:
                if reason is None and not self.p.min_words <= n <= self.p.max_words:
                    reason, worst = f"too_short:{f}" if n < self.p.min_words else f"too_long:{f}", n
            task.scores[f"words_{f}"] = float(worst)
        return reason


@dataclass
class BlacklistParams:
    words: list[str] = doc("words or phrases that drop a record (word boundary, any case); Self-Instruct's 13 "
                           "by default, Alpaca adds video, audio, music, flowchart, diagram",
                           default_factory=lambda: list(SELF_INSTRUCT_BLACKLIST))
    fields: list[str] = doc("fields searched", default_factory=lambda: ["instruction"])


class BlacklistFilter(RecordFilter):
    """Drop a record containing a blacklisted word or phrase (word boundary, case-insensitive)."""

    name = "blacklist"
    Params = BlacklistParams

    def setup(self) -> None:
        words = tuple(self.p.words)
        self._re = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE) \
            if words else None

    def score_batch(self, tasks: list[Task]) -> list[Decision]:
        return [self._one(t) for t in tasks]

    def _one(self, task: Task) -> str | None:
        if self._re is None:
            return None
        for f in self.fields:
            for text in field_texts(task, f):
                m = self._re.search(text)
                if m:
                    return f"blacklist:{m.group(1).lower()}"
        return None


@dataclass
class FirstCharParams:
    punctuation: bool = doc("drop a field starting with ASCII punctuation (Self-Instruct)", default=True)
    non_ascii: bool = doc("drop a field starting with a non-ASCII character (Self-Instruct)", default=True)
    fields: list[str] = doc("fields checked", default_factory=lambda: ["instruction"])


class FirstCharFilter(RecordFilter):
    """Drop a field whose first character is punctuation or not ASCII (Self-Instruct)."""

    name = "first_char"
    Params = FirstCharParams

    def score_batch(self, tasks: list[Task]) -> list[Decision]:
        return [self._one(t) for t in tasks]

    def _one(self, task: Task) -> str | None:
        for f in self.fields:
            for text in field_texts(task, f):
                if not text:
                    continue
                if self.p.punctuation and text[0] in string.punctuation:
                    return "starts_with_punctuation"
                if self.p.non_ascii and not text[0].isascii():
                    return "starts_non_ascii"
        return None


@dataclass
class PrefixParams:
    prefixes: list[str] = doc("a field starting with one of these (case-sensitive) is dropped; Self-Instruct: "
                              "'Write a program'", default_factory=lambda: ["Write a program"])
    fields: list[str] = doc("fields checked", default_factory=lambda: ["instruction"])


class PrefixFilter(RecordFilter):
    """Drop an instruction starting with a forbidden prefix ("Write a program", Self-Instruct)."""

    name = "prefix"
    Params = PrefixParams

    def score_batch(self, tasks: list[Task]) -> list[Decision]:
        return [self._one(t) for t in tasks]

    def _one(self, task: Task) -> str | None:
        for f in self.fields:
            for text in field_texts(task, f):
                for p in self.p.prefixes:
                    if text.startswith(p):
                        return "prefix:" + p.lower().replace(" ", "_")
        return None
