"""ROUGE-L novelty (Self-Instruct, Wang et al. 2023): reject a text whose highest ROUGE-L F-measure against
every text already in the pool is above 0.7 - with the same decisions as the exhaustive scan, much faster.

The exhaustive check runs rouge-score's LCS against every pool entry for every candidate, the known bottleneck
of the original. Three exact shortcuts, none of which changes a decision or a score:
- ROUGE-L F = 2*LCS/(len_a + len_b), and the LCS can never exceed the multiset overlap m of the two token lists,
  so 2*m/(len_a + len_b) bounds F from above. `RougeIndex` keeps an inverted index over (token, occurrence)
  features; only entries whose bound reaches the threshold get an LCS.
- Prefix filtering (Chaudhuri et al. 2006; Bayardo et al. 2007, "Scaling up all pairs similarity search"): F > t
  needs m >= t*len_a/(2-t) whatever the other length, so any len_a - that + 1 of the query's features must meet
  every such entry. We scan the postings of the rarest ones only, never those of "the" or "a".
- The LCS length is computed bit-parallel (Allison & Dix 1986; Hyyro 2004, "Bit-parallel LCS-length computation
  revisited"), one big-int step per token instead of a Python DP table; the F-measure is then formed with
  rouge-score's own arithmetic, so every score is the exact float `RougeScorer(["rougeL"])` gives.
`tests/filters/test_rouge.py` checks identical scores and decisions against rouge-score on real data.

(Over 400 lines on purpose: the incremental index, the prefix-filtered batch index and the filter share the LCS
kernel and the bound arithmetic, and their equivalence is easiest to audit side by side.)
"""

from __future__ import annotations

import itertools
import math
from array import array
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from rouge_score import tokenize as _rtok

from ..records import Task
from .base import Decision, GlobalStep, Rows, SelectParams, doc, joined_text

KEPT_FLOORS = (0.5, 0.3, 0.15, 0.05)  # exact_max's search floors: most kept records' max lies above one
_EPS = 1e-9  # slack so float rounding in the bound never hides a pair the exact score would reject


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's `rougeL` tokenization without stemming (lower-case, alphanumeric runs)."""
    return _rtok.tokenize(text, None)


def _masks(tokens: Sequence[str]) -> dict[str, int]:
    """Bit i of masks[tok] is set where tokens[i] == tok."""
    masks: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    return masks


def _lcs_masked(masks: dict[str, int], m: int, other: Sequence[str]) -> int:
    """LCS length of the m-token sequence behind `masks` and `other` (Hyyro's bit-vector recurrence)."""
    full = (1 << m) - 1
    v = full
    get = masks.get
    for tok in other:
        pm = get(tok)
        if pm:
            u = v & pm
            v = ((v + u) | (v - u)) & full
    return m - v.bit_count()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (exact, bit-parallel)."""
    if not a or not b:
        return 0
    if len(a) > len(b):
        a, b = b, a  # loop over the shorter one
    return _lcs_masked(_masks(b), len(b), a)


def _fmeasure(lcs: int, len_target: int, len_prediction: int) -> float:
    # rouge_score.rouge_scorer._score_lcs and scoring.fmeasure, operation for operation
    if not len_target or not len_prediction:
        return 0
    precision = lcs / len_prediction
    recall = lcs / len_target
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def rouge_l(a_tokens: Sequence[str], b_tokens: Sequence[str]) -> float:
    """Exact ROUGE-L F-measure, the float `RougeScorer(["rougeL"]).score(a, b)["rougeL"].fmeasure` gives."""
    return _fmeasure(lcs_length(a_tokens, b_tokens), len(a_tokens), len(b_tokens))


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


def _overlap_bounds(doc_features, lengths: np.ndarray, cand: np.ndarray, q_sorted: np.ndarray, la: int,
                    floor: float) -> tuple[np.ndarray, np.ndarray]:
    """The bound 2*m/(la + lb) with the exact multiset overlap m of the query (its sorted feature ids) and each
    candidate, in one pass over the candidates' feature lists; returns the candidates above `floor` and bounds."""
    feats_c = [doc_features[c] for c in cand]
    allf = np.concatenate(feats_c)
    owner = np.repeat(np.arange(len(cand)), [len(x) for x in feats_c])
    pos = np.minimum(np.searchsorted(q_sorted, allf), len(q_sorted) - 1)
    overlap = np.bincount(owner[q_sorted[pos] == allf], minlength=len(cand))
    ub = 2.0 * overlap / (la + lengths[cand])
    keep = ub > floor
    return cand[keep], ub[keep]


def _best_exact(tokens: Sequence[str], pool_tokens: list, cand: np.ndarray, ub: np.ndarray,
                threshold: float | None = None) -> tuple[float, int | None]:
    """Exact ROUGE-L over candidates in descending order of their upper bound, stopping once no later bound
    can beat the best score (or, with `threshold`, at the first score above it); returns (score, position)."""
    order = np.argsort(-ub, kind="stable")
    masks, la = _masks(tokens), len(tokens)
    best, best_i = 0.0, None
    for i, b in zip(cand[order], ub[order]):
        if b + _EPS < best:
            break  # sorted by bound: nothing later can beat the best exact score
        other = pool_tokens[i]
        s = _fmeasure(_lcs_masked(masks, la, other), la, len(other))
        if s > best or best_i is None:
            best, best_i = s, int(i)
        if threshold is not None and s > threshold:
            break
    return best, best_i


def pool_max_scores(tokens: Sequence[Sequence[str]], first: int, block: int = 256, top: int = 16) -> list[float]:
    """For each i >= first, the exact highest ROUGE-L F of tokens[i] against every tokens[j], j < i (0.0 when none
    shares a token): the batch filter's scores for its kept records against the pool they met.

    Bounds for whole blocks of rows at once: with (token, occurrence) features as 0/1 columns, the multiset
    overlap of two texts is the dot product of their rows, one sparse product per block. Then best-first by
    bound (the `top` highest bounds first, all of them only when needed), stopping once no bound can beat the
    best exact score: the same floats as `RougeIndex.max_score`."""
    import scipy.sparse as sp
    n = len(tokens)
    out: list[float] = []
    if n <= first:
        return out
    fid: dict = {}
    indptr, cols = [0], []
    for tk in tokens:
        cols.extend(fid.setdefault(f, len(fid)) for f in RougeIndex._features(tk))
        indptr.append(len(cols))
    x = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), np.array(cols, dtype=np.int64), np.array(indptr)),
                      shape=(n, max(1, len(fid))))
    lengths = np.diff(np.array(indptr)).astype(np.float64)
    for a in range(first, n, block):
        b = min(n, a + block)
        overlap = (x[a:b] @ x[:b].T).toarray()
        ub = 2.0 * overlap / (lengths[a:b, None] + lengths[None, :b] + 1e-12)
        for r in range(b - a):
            i = a + r
            row = ub[r, :i]
            if not len(row) or not tokens[i]:
                out.append(0.0)
                continue
            k = min(top, len(row))
            cand = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            cand = cand[row[cand] > 0]
            best, _ = _best_exact(tokens[i], tokens, cand, row[cand]) if len(cand) else (0.0, None)
            if k < len(row) and len(cand) == k and row[cand].min() + _EPS >= best:  # a bound left out may beat it
                rest = np.nonzero(row > 0)[0]
                best, _ = _best_exact(tokens[i], tokens, rest, row[rest])
            out.append(float(best))
    return out


class RougeIndex:
    """A growing pool of texts answering exact ROUGE-L queries: the max, a threshold test and the top k."""

    def __init__(self):
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.tokens: list[list[str]] = []
        self._lengths = _Growable()
        self._fid: dict[tuple[str, int], int] = {}  # (token, occurrence) -> feature id
        self._postings: list[list[int]] = []  # feature id -> pool positions holding it (appends are cheap)
        self._doc_features: list[np.ndarray] = []  # pool position -> its sorted feature ids

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
        fid, postings = self._fid, self._postings
        fids = []
        for f in self._features(tokens):
            i = fid.get(f)
            if i is None:
                i = fid[f] = len(postings)
                postings.append([doc])
            else:
                postings[i].append(doc)
            fids.append(i)
        self._doc_features.append(np.array(sorted(fids), dtype=np.int32))

    def extend(self, items: Iterable[tuple[str, str]]) -> None:
        for id, text in items:
            self.add(id, text)

    def bounds(self, tokens: Sequence[str]) -> np.ndarray:
        """Upper bound of ROUGE-L F against every pool entry (0 where no token is shared)."""
        n = len(self.ids)
        lists = [self._postings[i] for f in self._features(tokens) if (i := self._fid.get(f)) is not None]
        if not lists or not tokens:
            return np.zeros(n)
        overlap = np.bincount(np.fromiter((d for p in lists for d in p), dtype=np.int64), minlength=n)
        return 2.0 * overlap / (len(tokens) + self._lengths.view())

    def _candidates_above(self, tokens: Sequence[str], floor: float) -> tuple[np.ndarray, np.ndarray]:
        """Pool positions whose bound exceeds `floor` (> 0), with their bounds, found by prefix filtering."""
        la = len(tokens)
        feats = self._features(tokens)
        fids = [self._fid.get(f, -1) for f in feats]
        # a pool entry of length lb can only reach F > floor when overlap m > floor*(la+lb)/2 and m <= lb,
        # so m > floor*la/(2-floor) for every lb: it shares a feature with any la - need + 1 query features
        need = max(1, math.ceil(floor * la / (2.0 - floor) - 1e-6))
        k = la - need + 1
        if k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        sizes = [len(self._postings[i]) if i >= 0 else 0 for i in fids]
        chosen = np.argsort(np.array(sizes), kind="stable")[:k]
        hits = [d for j in chosen if fids[j] >= 0 for d in self._postings[fids[j]]]
        if not hits:
            return np.empty(0, dtype=np.int64), np.empty(0)
        cand = np.unique(np.array(hits, dtype=np.int64))
        lengths = self._lengths.view()[cand]
        # length filter: 2*min(la, lb)/(la + lb) must exceed floor
        cand = cand[2.0 * np.minimum(lengths, la) / (la + lengths) > floor]
        if not len(cand):
            return cand, np.empty(0)
        q = np.sort(np.array([i for i in fids if i >= 0], dtype=np.int32))
        return _overlap_bounds(self._doc_features, self._lengths.view(), cand, q, la, floor)

    def max_score(self, tokens: Sequence[str], threshold: float | None = None) -> tuple[float, int | None]:
        """Exact highest ROUGE-L F and its pool position. With `threshold`, stop at the first score above it
        (enough to decide rejection; the returned score is then that one, not necessarily the max, and when
        nothing is above it the result is the best among the entries whose bound reached it)."""
        if not self.ids or not tokens:
            return 0.0, None
        if threshold is not None and threshold - _EPS > 0:
            cand, ub = self._candidates_above(tokens, threshold - _EPS)
        else:
            ub_all = self.bounds(tokens)
            cand = np.nonzero(ub_all > 0)[0]
            ub = ub_all[cand]
        return _best_exact(tokens, self.tokens, cand, ub, threshold)

    def exact_max(self, tokens: Sequence[str], floors: Sequence[float] = KEPT_FLOORS,
                  fallback: bool = True) -> tuple[float, int | None] | None:
        """The exact highest ROUGE-L F and its pool position, like `max_score(tokens)` but cheaper: the entries
        whose bound exceeds a floor are found by prefix filtering, and when the best of them is above the floor
        it is the max (every entry above the floor is among them); else the next lower floor, then all (or None
        without `fallback`: the max is at most the last floor)."""
        if not self.ids or not tokens:
            return 0.0, None
        for floor in floors:
            cand, ub = self._candidates_above(tokens, floor - _EPS)
            if len(cand):
                s, i = _best_exact(tokens, self.tokens, cand, ub)
                if s > floor:
                    return s, i
        return self.max_score(tokens) if fallback else None

    def top_k(self, tokens: Sequence[str], k: int = 10) -> list[tuple[int, float]]:
        """The k pool entries with the highest exact ROUGE-L F (entries sharing no token score 0, left out)."""
        if not self.ids or not tokens:
            return []
        ub = self.bounds(tokens)
        cand = np.nonzero(ub > 0)[0]
        cand = cand[np.argsort(-ub[cand], kind="stable")]
        masks, la = _masks(tokens), len(tokens)
        scored: list[tuple[float, int]] = []
        for i in cand:
            if len(scored) >= k and ub[i] + _EPS < scored[k - 1][0]:
                break
            other = self.tokens[i]
            scored.append((_fmeasure(_lcs_masked(masks, la, other), la, len(other)), int(i)))
            scored.sort(key=lambda x: (-x[0], x[1]))
        return [(i, s) for s, i in scored[:k] if s > 0]

    def mean_score(self, tokens: Sequence[str]) -> float:
        """Exact mean ROUGE-L F against the whole pool (the original's `avg_similarity_score`). Costs one LCS
        per pool entry sharing a token, so it is only computed for kept records, and only when asked."""
        if not self.ids:
            return 0.0
        ub = self.bounds(tokens)
        return float(sum(rouge_l(tokens, self.tokens[i]) for i in np.nonzero(ub > 0)[0]) / len(self.ids))


class PrefixRougeIndex:
    """A pool answering only "is any entry's ROUGE-L F above t?", when every text's features are known up
    front (batch curation). Features get ids in ascending document frequency, and both the pool entries and
    the queries use only their rarest `len - need + 1` features (need = the overlap F > t requires), the
    two-sided prefix filter of Bayardo et al. 2007: exact, and the postings of common words are never built."""

    def __init__(self, threshold: float, feature_lists: Iterable[Sequence[tuple[str, int]]]):
        """`feature_lists`: `RougeIndex._features(tokens)` of every text that will be added or queried."""
        self.threshold, self.floor = threshold, threshold - _EPS
        df: Counter = Counter()
        for feats in feature_lists:
            df.update(feats)
        self._fid = {f: i for i, (f, _) in enumerate(sorted(df.items(), key=lambda x: x[1]))}
        self._postings: dict[int, list[int]] = {}
        self.ids: list[str] = []
        self.tokens: list[list[str]] = []
        self._lengths = _Growable()
        self._doc_features: list[np.ndarray] = []
        self._plen, self._last = _Growable(), _Growable()  # prefix length and its last feature id, per entry

    def __len__(self) -> int:
        return len(self.ids)

    def _ids(self, tokens: Sequence[str], feats: Sequence[tuple[str, int]] | None = None) -> np.ndarray:
        fid = self._fid
        out = []
        for f in (RougeIndex._features(tokens) if feats is None else feats):
            i = fid.get(f)
            if i is None:  # unseen when the index was built: ids stay fixed once given, so the order holds
                i = fid[f] = len(fid)
            out.append(i)
        out.sort()
        return np.array(out, dtype=np.int64)

    def _prefix(self, n: int) -> int:
        need = max(1, math.ceil(self.floor * n / (2.0 - self.floor) - 1e-6))
        return max(0, n - need + 1)

    def add(self, id: str, tokens: list[str], fids: np.ndarray | None = None) -> None:
        fids = self._ids(tokens) if fids is None else fids
        doc = len(self.ids)
        self.ids.append(id)
        self.tokens.append(tokens)
        self._lengths.append(len(tokens))
        self._doc_features.append(fids)
        pb = self._prefix(len(tokens))
        self._plen.append(pb)
        self._last.append(int(fids[pb - 1]) if pb else -1)
        for i in fids[:pb].tolist():
            p = self._postings.get(i)
            if p is None:
                self._postings[i] = [doc]
            else:
                p.append(doc)

    def query(self, tokens: Sequence[str], fids: np.ndarray | None = None) -> tuple[float, int | None]:
        """When some entry scores above the threshold: the exact highest score and its position (every such
        entry passes the filters, so the max over the survivors is the max over the pool), like
        `RougeIndex.max_score(tokens)`; else the best below it among the survivors."""
        if not self.ids or not tokens:
            return 0.0, None
        fids = self._ids(tokens) if fids is None else fids
        la, floor = len(tokens), self.floor
        get = self._postings.get
        pa = self._prefix(la)
        hits = [d for i in fids[:pa].tolist() if (p := get(i)) for d in p]
        if not hits:
            return 0.0, None
        cand, nhits = np.unique(np.array(hits, dtype=np.int64), return_counts=True)
        lengths = self._lengths.view()[cand]
        # length filter: F <= 2*min(la, lb)/(la + lb)
        ok = 2.0 * np.minimum(lengths, la) / (la + lengths) > floor
        # count filter: a shared feature outside both prefixes' overlap lies in the suffix of whichever text's
        # prefix ends at the lower rank (the order is global), so overlap <= hits + that suffix's size
        last_q = fids[pa - 1]
        last_d, suffix_d = self._last.view()[cand], lengths - self._plen.view()[cand]
        extra = np.where(last_q <= last_d, la - pa, suffix_d)
        ok &= 2.0 * (nhits + extra) / (la + lengths) > floor
        cand = cand[ok]
        if not len(cand):
            return 0.0, None
        cand, ub = _overlap_bounds(self._doc_features, self._lengths.view(), cand, fids, la, floor)
        return _best_exact(tokens, self.tokens, cand, ub)


@dataclass
class RougeParams(SelectParams):
    threshold: float = doc("drop when ROUGE-L F against the pool (reference texts + records kept so far) is "
                           "above this (Self-Instruct: 0.7)", default=0.7)
    fields: list[str] = doc("fields joined into the compared text", default_factory=lambda: ["instruction"])
    top_k: int = doc("store the k most similar pool texts on kept records (meta.most_similar; Self-Instruct: "
                     "10); 0 = none (faster on large sets)", default=0)
    mean_similarity: bool = doc("store the exact mean ROUGE-L vs the whole pool on kept records (one LCS per "
                                "pool entry sharing a token: slow on large sets)", default=False)
    reference: str | None = doc("records file whose instructions start the pool (e.g. the seed tasks); their "
                                "ids appear in duplicate_of", default=None)


class RougeNoveltyFilter(GlobalStep):
    """Drop a record whose text has ROUGE-L F above `threshold` against the pool: the seed/reference texts it
    starts with plus every record kept so far (Self-Instruct's 0.7 rule). Stores the exact `rouge_l_max` (the
    highest ROUGE-L F against the pool it met) on every record, kept or dropped, and with top_k > 0 the `top_k`
    most similar pool texts in `meta["most_similar"]`. The first of two similar records (in input order) is
    kept; `keep_top` keeps the most novel (lowest rouge_l_max). Its features: the compared text, tokenized for the
    batch path (see `features`); the reference pool is read in `setup`, wherever `decide` runs."""

    name = "rouge_l"
    writes = ("rouge_l_mean",)
    Params = RougeParams
    per_field = False
    score_key = "rouge_l_max"
    higher_is_better = False

    def setup(self) -> None:
        if not 0 < self.p.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.p.threshold}")
        if self.p.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.p.top_k}")
        self.threshold, self.k = self.p.threshold, self.p.top_k
        self._index = RougeIndex()
        self._pending: list[tuple[str, str]] = []  # kept by the batch path, not yet in the full index
        if self.p.reference:
            from ..records import read_records
            self.add_reference((t.id, t.instruction) for t in read_records(self.p.reference))

    @property
    def index(self) -> RougeIndex:
        """The pool (references + every record kept so far) as a full index. The batch path's kept records join
        it only when it is next used (a later `check`, top_k), so one large batch never builds it for nothing."""
        if self._pending:
            pending, self._pending = self._pending, []
            self._index.extend(pending)
        return self._index

    def add_reference(self, items: Iterable[tuple[str, str]]) -> None:
        """Start the pool with these (id, text) pairs (seed tasks: `gen instructions`, `reference:`)."""
        self.index.extend(items)
        self.details["reference_texts"] = len(self.index)

    def _text(self, task: Task) -> str:
        if len(self.fields) == 1 and self.fields[0] == "instruction":
            return task.instruction
        if len(self.fields) == 1:
            return "\n".join(getattr(i, self.fields[0]) for i in task.instances)
        return joined_text(task, self.fields)

    def features(self, tasks: list[Task]) -> dict:
        """The compared text; for the batch path (no top_k, no mean) already tokenized, as one space-joined string
        of rouge-score tokens (they hold no space, so `split()` gives them back exactly): the tokenizer runs in
        the workers, once, and the stored text is shorter."""
        if self.k or self.p.mean_similarity:
            return {"text": [self._text(t) for t in tasks]}
        return {"tokens": [" ".join(rouge_tokens(self._text(t))) for t in tasks]}

    def decide_rows(self, rows: Rows) -> list[Decision]:
        """Batch form: when no similar-text list or mean is asked, every text is known up front, so the
        two-sided prefix index answers the same threshold test as `check`, without building the postings of
        common words; the kept records' exact maxima then come from blocked sparse bounds (`pool_max_scores`).
        Otherwise records are checked one by one against the growing full index, as `check` does."""
        max_col = rows.score_out("rouge_l_max")
        if self.k or self.p.mean_similarity:
            texts = rows.feats["text"]
            mean_col = rows.score_out("rouge_l_mean") if self.p.mean_similarity else None
            similar: list = [None] * len(rows)
            out = []
            for i, (id, text) in enumerate(zip(rows.ids, texts)):
                d, max_col[i], mean, similar[i] = self._judge(id, text)
                if mean is not None:
                    mean_col[i] = mean
                out.append(d)
                self.tick(1)
            if self.k:
                rows.set_meta["most_similar"] = similar
            return out
        # tokens as int ids (a bijection: the same LCS, scores and feature order), split once to count the
        # features and again when queried, so only the kept records' tokens are ever held, 4 bytes each
        joined = rows.feats["tokens"]
        vocab: dict[str, int] = {}
        intern = vocab.setdefault

        def ids(tokens: Iterable[str]) -> array:
            return array("i", [intern(t, len(vocab)) for t in tokens])

        pool = self.index
        ref = [ids(tk) for tk in pool.tokens]
        feature_lists = itertools.chain((RougeIndex._features(tk) for tk in ref),
                                        (RougeIndex._features(ids(x.split())) for x in joined))
        index = PrefixRougeIndex(self.threshold, feature_lists)
        for id, tk in zip(pool.ids, ref):
            index.add(id, tk)
        out: list[Decision] = []
        kept: list[int] = []
        for i, (id, text) in enumerate(zip(rows.ids, joined)):
            tk = ids(text.split())
            fids = index._ids(tk)
            score, pos = index.query(tk, fids)
            if score > self.threshold:
                max_col[i] = score
                out.append((f"rouge_l>{self.threshold:.2f}", index.ids[pos]))
            else:
                index.add(id, tk, fids.astype(np.int32))
                kept.append(i)
                out.append(None)
            self.tick(1)
        # kept records: the exact max against the pool each one met (references + the kept before it)
        scores = pool_max_scores(index.tokens, len(ref))
        del index
        for i, score in zip(kept, scores):
            max_col[i] = score
        # the full index gets the tokenized text: the same tokens; its texts are only shown by top_k, which this
        # filter (top_k 0) never runs
        self._pending.extend((rows.ids[i], joined[i]) for i in kept)
        return out

    def _judge(self, id: str, text: str) -> tuple[Decision, float, float | None, dict | None]:
        """One text against the growing pool: (decision, rouge_l_max, rouge_l_mean or None, the top_k most
        similar pool texts or None); a kept text joins the pool."""
        tokens = rouge_tokens(text)
        above = self.index.exact_max(tokens, (self.threshold,), fallback=False)  # one search decides and explains
        if above is not None and above[0] > self.threshold:
            return (f"rouge_l>{self.threshold:.2f}", self.index.ids[above[1]]), above[0], None, None
        similar = None
        if self.k:
            top = self.index.top_k(tokens, self.k)
            score = top[0][1] if top else 0.0
            similar = {self.index.texts[i]: s for i, s in top}
        else:
            score = self.index.exact_max(tokens, [x for x in KEPT_FLOORS if x < self.threshold])[0]
        mean = self.index.mean_score(tokens) if self.p.mean_similarity else None
        self.index.add(id, text, tokens)
        return None, score, mean, similar

    def check(self, task: Task) -> Decision:
        d, task.scores["rouge_l_max"], mean, similar = self._judge(task.id, self._text(task))
        if mean is not None:
            task.scores["rouge_l_mean"] = mean
        if similar is not None:
            task.meta["most_similar"] = similar
        return d
