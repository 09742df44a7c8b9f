"""Exact duplicates after normalisation: the cheapest dedup, run before the near-duplicate filters."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from ..records import Task, text_hash
from .base import Decision, GlobalStep, Rows, doc, joined_text

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
    input order is kept and named in `duplicate_of`. Its features: the 64-bit `text_hash` of the normalised
    text (8 bytes a record), the key `check` compares too."""

    name = "exact_dedup"
    Params = ExactDedupParams
    per_field = False

    def setup(self) -> None:
        self._seen: dict[str, str] = {}

    def _key(self, task: Task) -> str:
        return text_hash(normalize(joined_text(task, self.fields)))

    def check(self, task: Task) -> tuple[str, str] | None:
        key = self._key(task)
        first = self._seen.get(key)
        if first is not None:
            return "exact_duplicate", first
        self._seen[key] = task.id
        return None

    def features(self, tasks: list[Task]) -> dict:
        return {"hash": np.array([int(self._key(t), 16) for t in tasks], dtype=np.uint64)}

    def decide_rows(self, rows: Rows) -> list[Decision]:
        h = rows.feats["hash"]
        _, first, inv = np.unique(h, return_index=True, return_inverse=True)
        first_row = first[inv.reshape(-1)]  # np.unique's first index: the earliest row of each hash
        return [None if j == i else ("exact_duplicate", rows.ids[j]) for i, j in enumerate(first_row.tolist())]
