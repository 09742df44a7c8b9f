"""Rule filters from the Self-Instruct and Alpaca generation scripts (Wang et al. 2023; Taori et al. 2023):
word-count bounds, a keyword blacklist, the first character, and a forbidden prefix. Pure and cheap."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Sequence

from ..records import Task
from .base import FIELDS, Filter, doc, field_texts


def check_fields(fields: Sequence[str], name: str) -> tuple[str, ...]:
    """Validate a filter's `fields` option; the error names the filter and the allowed fields."""
    fields = tuple(fields)
    bad = [f for f in fields if f not in FIELDS]
    if bad or not fields:
        raise ValueError(f"fields: {', '.join(bad) or '(empty)'} - filter '{name}' reads one or more of "
                         f"{', '.join(FIELDS)}")
    return fields

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


class LengthFilter(Filter):
    """Drop a field with fewer than `min_words` or more than `max_words` words (whitespace split).
    Self-Instruct rejects 3 words or fewer and more than 150: min_words=4, max_words=150."""

    name = "length"
    Params = LengthParams

    def __init__(self, min_words: int = 4, max_words: int = 150, fields: Sequence[str] = ("instruction",)):
        if not 0 <= min_words <= max_words:
            raise ValueError(f"min_words ({min_words}) must be >= 0 and <= max_words ({max_words})")
        self.min_words, self.max_words, self.fields = min_words, max_words, check_fields(fields, self.name)

    def params(self) -> dict:
        return {"min_words": self.min_words, "max_words": self.max_words, "fields": list(self.fields)}

    def check(self, task: Task) -> str | None:
        for f in self.fields:
            for text in field_texts(task, f):
                n = len(text.split())
                task.scores[f"words_{f}"] = float(n)
                if n < self.min_words:
                    return f"too_short:{f}"
                if n > self.max_words:
                    return f"too_long:{f}"
        return None


@dataclass
class BlacklistParams:
    words: list[str] = doc("words or phrases that drop a record (word boundary, any case); Self-Instruct's 13 "
                           "by default, Alpaca adds video, audio, music, flowchart, diagram",
                           default_factory=lambda: list(SELF_INSTRUCT_BLACKLIST))
    fields: list[str] = doc("fields searched", default_factory=lambda: ["instruction"])


class BlacklistFilter(Filter):
    """Drop a record containing a blacklisted word or phrase (word boundary, case-insensitive)."""

    name = "blacklist"
    Params = BlacklistParams

    def __init__(self, words: Sequence[str] = SELF_INSTRUCT_BLACKLIST, fields: Sequence[str] = ("instruction",)):
        self.words, self.fields = tuple(words), check_fields(fields, self.name)
        self._re = re.compile(r"\b(" + "|".join(re.escape(w) for w in self.words) + r")\b", re.IGNORECASE) \
            if self.words else None

    def check(self, task: Task) -> str | None:
        if self._re is None:
            return None
        for f in self.fields:
            for text in field_texts(task, f):
                m = self._re.search(text)
                if m:
                    return f"blacklist:{m.group(1).lower()}"
        return None

    def params(self) -> dict:
        return {"words": list(self.words), "fields": list(self.fields)}


@dataclass
class FirstCharParams:
    punctuation: bool = doc("drop a field starting with ASCII punctuation (Self-Instruct)", default=True)
    non_ascii: bool = doc("drop a field starting with a non-ASCII character (Self-Instruct)", default=True)
    fields: list[str] = doc("fields checked", default_factory=lambda: ["instruction"])


class FirstCharFilter(Filter):
    """Drop a field whose first character is punctuation or not ASCII (Self-Instruct)."""

    name = "first_char"
    Params = FirstCharParams

    def __init__(self, punctuation: bool = True, non_ascii: bool = True, fields: Sequence[str] = ("instruction",)):
        self.punctuation, self.non_ascii = punctuation, non_ascii
        self.fields = check_fields(fields, self.name)

    def params(self) -> dict:
        return {"punctuation": self.punctuation, "non_ascii": self.non_ascii, "fields": list(self.fields)}

    def check(self, task: Task) -> str | None:
        for f in self.fields:
            for text in field_texts(task, f):
                if not text:
                    continue
                if self.punctuation and text[0] in string.punctuation:
                    return "starts_with_punctuation"
                if self.non_ascii and not text[0].isascii():
                    return "starts_non_ascii"
        return None


@dataclass
class PrefixParams:
    prefixes: list[str] = doc("a field starting with one of these (case-sensitive) is dropped; Self-Instruct: "
                              "'Write a program'", default_factory=lambda: ["Write a program"])
    fields: list[str] = doc("fields checked", default_factory=lambda: ["instruction"])


class PrefixFilter(Filter):
    """Drop an instruction starting with a forbidden prefix ("Write a program", Self-Instruct)."""

    name = "prefix"
    Params = PrefixParams

    def __init__(self, prefixes: Sequence[str] = ("Write a program",), fields: Sequence[str] = ("instruction",)):
        self.prefixes, self.fields = tuple(prefixes), check_fields(fields, self.name)

    def params(self) -> dict:
        return {"prefixes": list(self.prefixes), "fields": list(self.fields)}

    def check(self, task: Task) -> str | None:
        for f in self.fields:
            for text in field_texts(task, f):
                for p in self.prefixes:
                    if text.startswith(p):
                        return "prefix:" + p.lower().replace(" ", "_")
        return None
