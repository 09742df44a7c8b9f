"""Exact duplicates after normalisation: the cheapest dedup, run before the near-duplicate filters."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from ..records import Task, text_hash
from .base import Decision, GlobalStep, doc, joined_text

_WORD = re.compile(r"\w+")


def normalize(text: str) -> str:
    """NFKC, case-folded, only word characters kept, single spaces: "Hello,  World!" -> "hello world"
    (punctuation, symbols and layout are formatting, not content)."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


@dataclass
class ExactDedupParams:
    fields: list[str] = doc("fields joined into the compared text (instruction + input: the same question "
                            "asked twice, whatever the answers)", default_factory=lambda: ["instruction", "input"])


class ExactDedupFilter(GlobalStep):
    """Drop a record whose normalised text (see `normalize`) equals an earlier kept one's; the first copy in
    input order is kept and named in `duplicate_of`."""

    name = "exact_dedup"
    Params = ExactDedupParams
    per_field = False

    def setup(self) -> None:
        self._seen: dict[str, str] = {}

    def check(self, task: Task) -> tuple[str, str] | None:
        key = text_hash(normalize(joined_text(task, self.fields)))
        first = self._seen.get(key)
        if first is not None:
            return "exact_duplicate", first
        self._seen[key] = task.id
        return None

    def step(self, tasks: list[Task]) -> list[Decision]:
        self._seen = {}
        return [self.check(t) for t in tasks]
