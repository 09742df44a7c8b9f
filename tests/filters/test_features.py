"""Global steps decide from compact per-record data (issue 12): features computed shard by shard, in fresh filter
objects on copies of the records (as workers do), saved and loaded as .npy / JSONL, joined in order and decided
once give exactly what the in-memory step gives on all records at once: decisions, duplicate_of, scores, meta and
ranks, keep_top included. And `select`, the one ranking rule, against the rule as it was written for Task lists."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from instructgen.filters.base import Rows, _record, concat_features, score_column, select, write_back
from instructgen.filters.cache import VectorCache
from instructgen.filters.diversity import DiversityFilter
from instructgen.filters.embedding import EmbeddingDedupFilter
from instructgen.filters.exact import ExactDedupFilter
from instructgen.filters.minhash import MinHashFilter
from instructgen.filters.rouge import RougeNoveltyFilter
from instructgen.records import Instance, Task, write_jsonl

CUTS = (2, 7)  # three uneven shards: 2 records, 5, the rest


def save_and_load(feats: dict, folder) -> dict:
    """A shard's features through disk: arrays with np.save, lists as JSONL (one JSON value a line)."""
    folder.mkdir(parents=True)
    out = {}
    for key, v in feats.items():
        if isinstance(v, np.ndarray):
            np.save(folder / f"{key}.npy", v)
            out[key] = np.load(folder / f"{key}.npy", allow_pickle=False)
            assert out[key].dtype == v.dtype and out[key].shape == v.shape and np.array_equal(out[key], v)
        else:
            assert isinstance(v, list)
            (folder / f"{key}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in v), encoding="utf-8")
            out[key] = [json.loads(line) for line in (folder / f"{key}.jsonl").read_text("utf-8").splitlines()]
            assert out[key] == v
        assert len(out[key]) == len(next(iter(feats.values())))  # every value: one row per record
    return out


def sharded_apply(make, tasks: list[Task], tmp_path, ctx=None, cuts=CUTS) -> list[Task]:
    """What the sharded engine does: features per shard in workers, decide centrally, rank and budget with
    `select` on the score decide set, then the verdicts. Returns new records; `tasks` is left alone."""
    tasks = copy.deepcopy(tasks)
    todo = [t for t in tasks if t.kept]
    parts = []
    bounds = [0, *cuts, len(todo)]
    for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
        worker = make()
        worker.prepare(ctx or {})
        parts.append(save_and_load(worker.features(copy.deepcopy(todo[a:b])), tmp_path / f"shard-{k}"))
    central = make()
    central.prepare(ctx or {})
    scores = {k: score_column(todo, k) for k in central.reads_scores()}
    rows = Rows([t.id for t in todo], concat_features(parts), scores)
    out = central.decide(rows)
    assert len(out) == len(todo)
    write_back(central.name, todo, rows)
    if central.score_key is not None:
        ranks, newly, reason = select(rows.set_scores[central.score_key], np.array([bool(d) for d in out]),
                                      central.higher_is_better, central.keep_top, central.score_key)
        write_back(central.name, todo, Rows(rows.ids, {}, {}, ranks=ranks))
        out = [reason if newly[i] else d for i, d in enumerate(out)]
    for t, d in zip(todo, out):
        _record(central.name, t, d)
    sharded_apply.central = central
    return tasks


def in_memory(make, tasks: list[Task], ctx=None) -> list[Task]:
    tasks = copy.deepcopy(tasks)
    f = make()
    f.prepare(ctx or {})
    return f.apply(tasks)


def assert_same(got: list[Task], want: list[Task]) -> None:
    assert [t.to_dict() for t in got] == [t.to_dict() for t in want]


def texts_tasks(texts, **kw) -> list[Task]:
    return [Task(id=f"r{i}", instruction=x, **kw) for i, x in enumerate(texts)]


def test_exact_dedup_across_shards(tmp_path):
    tasks = texts_tasks(["Name a colour.", "Write a poem.", "name a colour", "Write a poem!", "List rivers.",
                         "NAME A COLOUR", "Write a haiku.", "write a  poem", "List rivers", "Count to ten."])
    tasks[4].drop("too_short", filter="length")  # dropped upstream: never reaches the step
    want = in_memory(ExactDedupFilter, tasks)
    got = sharded_apply(ExactDedupFilter, tasks, tmp_path)
    assert_same(got, want)
    assert [t.verdict.duplicate_of for t in got] == [None, None, "r0", "r1", None, "r0", None, "r1", None, None]
    assert sharded_apply.central.features(tasks[:1])["hash"].dtype == np.uint64  # 8 bytes a record


BORDER = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()


@pytest.mark.parametrize("keep_top", [None, 4])
def test_minhash_across_shards_with_borderline_pairs_and_keep_top(tmp_path, keep_top):
    passage = ("The Amazon rainforest covers much of the Amazon basin of South America and is home to an "
               "enormous number of species of plants and animals that live nowhere else on the planet")
    # r1/r4: exact Jaccard of the 3-gram sets 8/12 = 0.667, estimated 0.76 with seed 1: the exact value decides
    tasks = texts_tasks([passage + ". What covers it?", " ".join(BORDER + ["lambda", "mu"]), "",
                         "Write a haiku about autumn leaves falling slowly to the ground.",
                         " ".join(BORDER + ["nu", "xi"]), passage + ". What covers it now?", passage[::-1],
                         "Write a haiku about autumn leaves falling slowly to the ground!", "two words",
                         passage + ". What covers the basin of it?"])
    make = lambda: MinHashFilter.of(threshold=0.7, ngram=3, keep_top=keep_top)
    ctx = {"cache_dir": tmp_path / "cache"}
    want = in_memory(make, tasks)
    got = sharded_apply(make, tasks, tmp_path / "run", ctx)
    assert_same(got, want)
    assert sharded_apply.central.details["exact_checks"] >= 1
    assert got[4].scores["minhash_jaccard"] == pytest.approx(8 / 12) and "minhash_jaccard" not in got[2].scores
    assert not got[5].kept and got[5].verdict.duplicate_of == "r0" and not got[7].kept
    if keep_top:
        assert sum(t.verdict.reason == "below_top_4:minhash_jaccard" for t in got) >= 1
    again = sharded_apply(make, tasks, tmp_path / "again", ctx)  # workers read the signatures from one cache
    assert_same(again, want)


ROUGE_TEXTS = ["Write a short poem about the sea at night.", "Translate the sentence into French.",
               "Write a short poem about the sea at night!", "List three rivers in Africa.",
               "Give me three rivers in Africa.", "Translate this sentence into French please.",
               "Describe a sunset over the mountains.", "Name the largest planet in the solar system.",
               "Write a short poem about the sea in the morning.", "List three large rivers in Africa.",
               "Explain photosynthesis to a child."]


@pytest.mark.parametrize("kw", [dict(top_k=0), dict(top_k=0, keep_top=0.5), dict(top_k=2, mean_similarity=True),
                                dict(top_k=3, keep_top=5)])
def test_rouge_both_paths_across_shards_with_a_reference_pool(tmp_path, kw):
    ref = tmp_path / "seeds.jsonl"
    write_jsonl(ref, [Task(id="seed_1", instruction="Name the biggest planet of the solar system."),
                      Task(id="seed_2", instruction="Tell me a joke.")])
    tasks = texts_tasks(ROUGE_TEXTS)
    make = lambda: RougeNoveltyFilter.of(threshold=0.7, reference=str(ref), **kw)
    want = in_memory(make, tasks)
    got = sharded_apply(make, tasks, tmp_path / "run")
    assert_same(got, want)
    assert got[2].verdict.duplicate_of == "r0" and got[7].verdict.duplicate_of == "seed_1"
    assert all("rouge_l_max" in t.scores for t in got)
    if kw["top_k"]:
        assert all(("most_similar" in t.meta) == (t.verdict.filter != "rouge_l" or t.verdict.reason.startswith(
            "below_top")) for t in got)
    if kw.get("mean_similarity"):
        assert all(("rouge_l_mean" in t.scores) == t.kept for t in got)


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def crafted_cache(tmp_path, tasks, angles, **kw) -> dict:
    """Vectors at chosen angles, put in the embedding cache folder as an earlier run would leave them: the
    workers read them there (no model is loaded anywhere)."""
    ctx = {"cache_dir": tmp_path / "cache"}
    f = EmbeddingDedupFilter.of(**kw)
    f.prepare(ctx)
    texts = [t.instruction for t in tasks]
    f.cache.add([VectorCache.key(x) for x in texts], np.array([unit(a) for a in angles], dtype=np.float32))
    return ctx


@pytest.mark.parametrize("keep_top", [None, 4])
def test_embedding_across_shards_near_the_threshold(tmp_path, keep_top):
    # cos(18 deg) = 0.9511 and cos(18.5 deg) = 0.9483: on either side of 0.95
    angles = [0, 90, 18, 18.5, 180, 90.5, 45, 200, 18.2, 135]
    tasks = texts_tasks([f"text {i}" for i in range(len(angles))])
    ctx = crafted_cache(tmp_path, tasks, angles, fields=["instruction"])
    make = lambda: EmbeddingDedupFilter.of(threshold=0.95, fields=["instruction"], keep_top=keep_top)
    want = in_memory(make, tasks, ctx)
    got = sharded_apply(make, tasks, tmp_path / "run", ctx)
    assert_same(got, want)
    assert got[2].verdict.duplicate_of == "r0" and got[5].verdict.duplicate_of == "r1"
    assert got[3].verdict.duplicate_of is None and got[0].scores["embedding_cos_max"] == -1.0
    assert sharded_apply.central._st is None  # the central decide never needs the model


@pytest.mark.parametrize("kw", [dict(), dict(keep_top=3), dict(keep_top=0.5, score="ifd*q", higher_is_better=False)])
def test_diversity_walk_across_shards(tmp_path, kw):
    angles = [60, 95, 90, 30, 10, 0, 200, 31, 150]
    tasks = texts_tasks([f"task {i}" for i in range(len(angles))], instances=[Instance("", "x")])
    ifd = [None, 0.5, 0.6, 0.7, 0.8, 0.9, 0.7, True, 0.2]  # None: unscored, walked last; True is not a score
    for t, v in zip(tasks, ifd):
        if v is not None:
            t.scores["ifd"] = v
        t.scores["q"] = 2.0
    tasks[8].drop("too_short", filter="length")
    ctx = crafted_cache(tmp_path, tasks, angles)
    make = lambda: DiversityFilter.of(threshold=0.9, **kw)
    want = in_memory(make, tasks, ctx)
    got = sharded_apply(make, tasks, tmp_path / "run", ctx)
    assert_same(got, want)
    assert sharded_apply.central.reads_scores() == tuple(kw.get("score", "ifd").split("*"))
    ranks = [t.meta.get("rank", {}).get("diversity") for t in got]
    assert sorted(r for r in ranks if r) == list(range(1, 9)) and ranks[8] is None
    if not kw:  # walk 5, 4 (10 deg from 5: out), 3, 6, 2, 1 (5 deg from 2: out), 7 (True: unscored), 0
        assert [ranks[i] for i in (5, 4, 3, 6, 2, 1, 0, 7)] == [1, 2, 3, 4, 5, 6, 7, 8]
        assert got[4].verdict.duplicate_of == "r5" and got[1].verdict.duplicate_of == "r2"


def old_select(values, dropped, higher_is_better, keep_top, key):
    """Filter._select as it was written before `select` existed (Python sort over Task scores)."""
    from instructgen.filters.base import budget
    sign = -1.0 if higher_is_better else 1.0
    scored = [i for i, v in enumerate(values) if not math.isnan(v)]
    scored.sort(key=lambda i: (sign * values[i], i))
    ranks = [0] * len(values)
    for r, i in enumerate(scored, 1):
        ranks[i] = r
    n = budget(keep_top, len(values))
    if n is None:
        return ranks, [False] * len(values), None
    keep = set([i for i in scored if not dropped[i]][:n])
    return ranks, [not dropped[i] and i not in keep for i in range(len(values))], f"below_top_{n}:{key}"


@pytest.mark.parametrize("keep_top", [None, 1, 3, 50, 0.25, 0.5, 0.99])
@pytest.mark.parametrize("higher", [True, False])
def test_select_is_the_task_list_rule(keep_top, higher):
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(0, 30))
        values = rng.choice([0.1, 0.5, 0.5, 0.9, -2.0, math.inf, math.nan], size=n)  # ties and unscored
        dropped = rng.random(n) < 0.3
        ranks, newly, reason = select(values, dropped, higher, keep_top, "s")
        w_ranks, w_newly, w_reason = old_select(values.tolist(), dropped.tolist(), higher, keep_top, "s")
        assert ranks.tolist() == w_ranks and newly.tolist() == w_newly and reason == w_reason
        assert ranks.dtype == np.int64 and not (newly & dropped).any()


def test_filter_select_on_tasks_uses_select():
    tasks = [Task(id=f"t{i}", instruction="x") for i in range(6)]
    for t, v in zip(tasks, [0.3, None, 0.3, 0.9, True, 0.1]):
        if v is not None:
            t.scores["minhash_jaccard"] = v  # True is a bool, not a score: unranked like a missing one
    f = MinHashFilter.of(keep_top=2)
    out = f._select(tasks, [None, None, "minhash_jaccard>=0.70", None, None, None])
    assert [t.meta.get("rank", {}).get("minhash") for t in tasks] == [2, None, 3, 4, None, 1]  # lowest first
    assert out == ["below_top_2:minhash_jaccard" if i in (1, 3, 4) else d
                   for i, d in enumerate([None, None, "minhash_jaccard>=0.70", None, None, None])]


def test_empty_shards_and_concat():
    a = {"vector": np.zeros((0, 1), dtype=np.float32), "text": []}  # an empty shard's placeholder shape
    b = {"vector": np.ones((2, 3), dtype=np.float32), "text": ["x", "y"]}
    c = concat_features([a, b, a, b])
    assert c["vector"].shape == (4, 3) and c["text"] == ["x", "y", "x", "y"]
    assert ExactDedupFilter().decide(Rows([], ExactDedupFilter().features([]), {})) == []


def test_a_records_features_do_not_depend_on_the_other_records(tmp_path):
    """The engine computes a pass's features for every record alive at its start and keeps the rows still alive
    at the step: a record's features must be the same whatever else is in the shard."""
    tasks = texts_tasks(ROUGE_TEXTS)
    ctx = crafted_cache(tmp_path, tasks, [7 * i for i in range(len(tasks))], fields=["instruction"])
    subset = [1, 4, 5, 9]
    for f in [ExactDedupFilter(), MinHashFilter.of(ngram=2), RougeNoveltyFilter.of(), RougeNoveltyFilter.of(top_k=2),
              EmbeddingDedupFilter.of(fields=["instruction"]), DiversityFilter.of(fields=["instruction"])]:
        f.prepare(ctx)
        whole, part = f.features(tasks), f.features([tasks[i] for i in subset])
        assert whole.keys() == part.keys() and whole
        for key, v in whole.items():
            picked = v[subset] if isinstance(v, np.ndarray) else [v[i] for i in subset]
            same = np.array_equal(picked, part[key]) if isinstance(v, np.ndarray) else picked == part[key]
            assert same, (f.name, key)
