"""Rule filters from the Self-Instruct and Alpaca generation scripts (Wang et al. 2023; Taori et al. 2023):
word-count bounds, a keyword blacklist, the first character, and a forbidden prefix. Pure and cheap."""

from __future__ import annotations

import re
import string
from typing import Sequence

from ..records import Task
from .base import Filter, field_texts

# Self-Instruct: tasks a text-only model cannot do.
SELF_INSTRUCT_BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
                           "map", "maps", "draw", "plot", "go to")
# Alpaca adds media words.
ALPACA_BLACKLIST = SELF_INSTRUCT_BLACKLIST + ("video", "audio", "music", "flowchart", "diagram")


class LengthFilter(Filter):
    """Drop a field with fewer than `min_words` or more than `max_words` words (whitespace split).
    Self-Instruct rejects 3 words or fewer and more than 150: min_words=4, max_words=150."""

    name = "length"

    def __init__(self, min_words: int = 4, max_words: int = 150, fields: Sequence[str] = ("instruction",)):
        self.min_words, self.max_words, self.fields = min_words, max_words, tuple(fields)

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


class BlacklistFilter(Filter):
    """Drop a record containing a blacklisted word or phrase (word boundary, case-insensitive)."""

    name = "blacklist"

    def __init__(self, words: Sequence[str] = SELF_INSTRUCT_BLACKLIST, fields: Sequence[str] = ("instruction",)):
        self.words, self.fields = tuple(words), tuple(fields)
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


class FirstCharFilter(Filter):
    """Drop a field whose first character is punctuation or not ASCII (Self-Instruct)."""

    name = "first_char"

    def __init__(self, punctuation: bool = True, non_ascii: bool = True, fields: Sequence[str] = ("instruction",)):
        self.punctuation, self.non_ascii, self.fields = punctuation, non_ascii, tuple(fields)

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


class PrefixFilter(Filter):
    """Drop an instruction starting with a forbidden prefix ("Write a program", Self-Instruct)."""

    name = "prefix"

    def __init__(self, prefixes: Sequence[str] = ("Write a program",), fields: Sequence[str] = ("instruction",)):
        self.prefixes, self.fields = tuple(prefixes), tuple(fields)

    def check(self, task: Task) -> str | None:
        for f in self.fields:
            for text in field_texts(task, f):
                for p in self.prefixes:
                    if text.startswith(p):
                        return "prefix:" + p.lower().replace(" ", "_")
        return None
