"""ROUGE-L novelty (Self-Instruct, Wang et al. 2023): reject a text whose highest ROUGE-L F-measure against
every text already in the pool is above 0.7 - with the same decisions as the exhaustive scan, much faster.

The exhaustive check runs rouge-score's LCS against every pool entry for every candidate, the known bottleneck
of the original. ROUGE-L F = 2*LCS/(len_a + len_b), and the LCS can never exceed the multiset overlap m of the
two token lists (each common subsequence token is matched once). So 2*m/(len_a + len_b) bounds F from above.
`RougeIndex` keeps an inverted index over (token, occurrence) features, so one `bincount` over the candidate's
postings yields m against the whole pool; only entries whose bound reaches the threshold get the exact LCS,
computed by rouge-score's own function on rouge-score's own tokens, so every score we report is the exact
float the exhaustive scan would give. `tests/filters/test_rouge.py` checks identical decisions on real data.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import numpy as np
from rouge_score import tokenize as _rtok
from rouge_score.rouge_scorer import _score_lcs

from ..records import Task
from .base import Filter

_EPS = 1e-9  # slack so float rounding in the bound never hides a pair the exact score would reject


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's `rougeL` tokenization without stemming (lower-case, alphanumeric runs)."""
    return _rtok.tokenize(text, None)


def rouge_l(a_tokens: Sequence[str], b_tokens: Sequence[str]) -> float:
    """Exact ROUGE-L F-measure, the float `RougeScorer(["rougeL"]).score(a, b)["rougeL"].fmeasure` gives."""
    return _score_lcs(list(a_tokens), list(b_tokens)).fmeasure


class _Growable:
    __slots__ = ("a", "n")

    def __init__(self):
        self.a, self.n = np.empty(4, dtype=np.int32), 0

    def append(self, v: int):
        if self.n == len(self.a):
            self.a = np.resize(self.a, 2 * len(self.a))
        self.a[self.n] = v
        self.n += 1

    def view(self) -> np.ndarray:
        return self.a[: self.n]


class RougeIndex:
    """A growing pool of texts answering exact ROUGE-L queries: the max, a threshold test and the top k."""

    def __init__(self):
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.tokens: list[list[str]] = []
        self._lengths = _Growable()
        self._postings: dict[tuple[str, int], _Growable] = {}

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def _features(tokens: Sequence[str]) -> list[tuple[str, int]]:
        # the k-th occurrence of a token is its own feature, so shared features count the multiset overlap
        return [(tok, k) for tok, c in Counter(tokens).items() for k in range(c)]

    def add(self, id: str, text: str, tokens: list[str] | None = None) -> None:
        tokens = rouge_tokens(text) if tokens is None else tokens
        doc = len(self.ids)
        self.ids.append(id)
        self.texts.append(text)
        self.tokens.append(tokens)
        self._lengths.append(len(tokens))
        for f in self._features(tokens):
            p = self._postings.get(f)
            if p is None:
                p = self._postings[f] = _Growable()
            p.append(doc)

    def extend(self, items: Iterable[tuple[str, str]]) -> None:
        for id, text in items:
            self.add(id, text)

    def bounds(self, tokens: Sequence[str]) -> np.ndarray:
        """Upper bound of ROUGE-L F against every pool entry (0 where no token is shared)."""
        n = len(self.ids)
        lists = [p.view() for f in self._features(tokens) if (p := self._postings.get(f)) is not None]
        if not lists or not tokens:
            return np.zeros(n)
        overlap = np.bincount(np.concatenate(lists), minlength=n)
        return 2.0 * overlap / (len(tokens) + self._lengths.view())

    def max_score(self, tokens: Sequence[str], threshold: float | None = None) -> tuple[float, int | None]:
        """Exact highest ROUGE-L F and its pool position. With `threshold`, stop at the first score above it
        (enough to decide rejection; the returned score is then that one, not necessarily the max)."""
        if not self.ids or not tokens:
            return 0.0, None
        ub = self.bounds(tokens)
        floor = (threshold - _EPS) if threshold is not None else 0.0
        cand = np.nonzero(ub > floor)[0] if threshold is not None else np.nonzero(ub > 0)[0]
        cand = cand[np.argsort(-ub[cand], kind="stable")]
        best, best_i = 0.0, None
        for i in cand:
            if ub[i] + _EPS < best:
                break  # sorted by bound: nothing later can beat the best exact score
            s = rouge_l(tokens, self.tokens[i])
            if s > best or best_i is None:
                best, best_i = s, int(i)
            if threshold is not None and s > threshold:
                break
        return best, best_i

    def top_k(self, tokens: Sequence[str], k: int = 10) -> list[tuple[int, float]]:
        """The k pool entries with the highest exact ROUGE-L F (entries sharing no token score 0, left out)."""
        if not self.ids or not tokens:
            return []
        ub = self.bounds(tokens)
        cand = np.nonzero(ub > 0)[0]
        cand = cand[np.argsort(-ub[cand], kind="stable")]
        scored: list[tuple[float, int]] = []
        for i in cand:
            if len(scored) >= k and ub[i] + _EPS < scored[k - 1][0]:
                break
            scored.append((rouge_l(tokens, self.tokens[i]), int(i)))
            scored.sort(key=lambda x: (-x[0], x[1]))
        return [(i, s) for s, i in scored[:k] if s > 0]

    def mean_score(self, tokens: Sequence[str]) -> float:
        """Exact mean ROUGE-L F against the whole pool (the original's `avg_similarity_score`). Costs one LCS
        per pool entry sharing a token, so it is only computed for kept records, and only when asked."""
        if not self.ids:
            return 0.0
        ub = self.bounds(tokens)
        return float(sum(rouge_l(tokens, self.tokens[i]) for i in np.nonzero(ub > 0)[0]) / len(self.ids))


class RougeNoveltyFilter(Filter):
    """Drop a record whose text has ROUGE-L F above `threshold` against the pool: the seed/reference texts it
    starts with plus every record kept so far (Self-Instruct's 0.7 rule). Stores `rouge_l_max` on each record
    and, on kept ones, its `top_k` most similar pool texts in `meta["most_similar"]`."""

    name = "rouge_l"

    def __init__(self, threshold: float = 0.7, field: str = "instruction", top_k: int = 10,
                 reference: Iterable[tuple[str, str]] = (), mean_similarity: bool = False):
        self.threshold, self.field, self.k, self.mean_similarity = threshold, field, top_k, mean_similarity
        self.index = RougeIndex()
        self.index.extend(reference)

    def _text(self, task: Task) -> str:
        if self.field == "instruction":
            return task.instruction
        return "\n".join(getattr(i, self.field) for i in task.instances)

    def check(self, task: Task) -> str | None:
        tokens = rouge_tokens(self._text(task))
        score, pos = self.index.max_score(tokens, threshold=self.threshold)
        if score > self.threshold:
            task.scores["rouge_l_max"] = score
            return f"rouge_l>{self.threshold:.2f}", self.index.ids[pos]
        top = self.index.top_k(tokens, self.k) if self.k else []
        task.scores["rouge_l_max"] = top[0][1] if top else 0.0
        if self.k:
            task.meta["most_similar"] = {self.index.texts[i]: s for i, s in top}
        if self.mean_similarity:
            task.scores["rouge_l_mean"] = self.index.mean_score(tokens)
        self.index.add(task.id, self._text(task), tokens)
        return None
