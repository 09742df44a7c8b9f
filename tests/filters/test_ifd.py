"""IFD: the pinned Cherry LLM prompt; the batched scorer against a hand computation on a tiny Llama built from a
config; batched == one at a time; the cache; the filter's drop rule and budget."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "trainer"))
from tiny import build_model, one_thread  # noqa: E402

from instructgen.filters.ifd import IFDFilter, IFDScorer, ifd_prompt, record_scores, task_pairs, token_nll  # noqa: E402
from instructgen.records import Instance, Task  # noqa: E402

PAIRS = [  # (instruction, input, output), of different lengths so batches pad
    ("Repeat the word apple three times.", "", "apple apple apple"),
    ("Repeat the word river three times.", "", "river"),
    ("Repeat the word stone three times.", "stone", "stone stone stone stone stone stone"),
    ("Answer the question.", "cloud maple", "tiger piano lemon ocean candle forest silver garden"),
    ("Give an answer:", "", "meadow"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_model(tmp_path_factory.mktemp("tiny-ifd")))


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def test_prompt_is_cherry_llms_alpaca_prompt():
    assert ifd_prompt("Name a color.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nName a color.\n\n### Response:")
    assert ifd_prompt("Sum these.", "2 3") == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nSum these.\n\n"
        "### Input:\n2 3\n\n### Response:")


def hand_ppl(model, ids: list[int], n_context: int) -> float:
    """Perplexity of ids[n_context:] given what precedes each token: one unpadded forward, a plain loop."""
    import torch
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
    nll = [-float(logp[t - 1, ids[t]]) for t in range(n_context, len(ids))]
    return math.exp(sum(nll) / len(nll))


def test_ifd_matches_a_hand_computation(tiny):
    sc = IFDScorer(tiny, max_length=256, batch_size=3, dtype="float32")  # no truncation: the hand loop sees it all
    model, tok = sc.load()
    pairs = [(ifd_prompt(i, x), o) for i, x, o in PAIRS]
    got = sc.losses(pairs)
    for (prompt, output), row in zip(pairs, got):
        p = tok(prompt)["input_ids"]
        o = tok(output, add_special_tokens=False)["input_ids"]
        cond = hand_ppl(model, p + o, len(p))
        alone = hand_ppl(model, [tok.bos_token_id] + o, 1)
        assert row[2] == len(o)
        assert math.exp(row[0]) == pytest.approx(cond, rel=1e-4)
        assert math.exp(row[1]) == pytest.approx(alone, rel=1e-4)
        assert math.exp(row[0] - row[1]) == pytest.approx(cond / alone, rel=1e-4)


@pytest.mark.parametrize("batch_size", [2, 4, 16])
def test_batched_equals_one_at_a_time(tiny, batch_size):
    sc = IFDScorer(tiny, max_length=256, dtype="float32")
    model, tok = sc.load()
    rows = [r for i, x, o in PAIRS for r in sc.encode(ifd_prompt(i, x), o)]
    one = np.concatenate([token_nll(model, [r], 1, tok.pad_token_id) for r in rows])
    batched = token_nll(model, rows, batch_size, tok.pad_token_id)
    assert batched[:, 1].tolist() == one[:, 1].tolist()
    np.testing.assert_allclose(batched[:, 0], one[:, 0], rtol=1e-5)


def test_truncation_keeps_the_same_output_tokens_in_both_rows(tiny):
    sc = IFDScorer(tiny, max_length=16)
    sc.load()
    (cond, nc), (alone, na) = sc.encode(ifd_prompt("Repeat the word apple three times."), "apple " * 40)
    assert len(cond) == 16 and nc == 8  # the prompt keeps half
    assert cond[nc:] == alone[na:] and na == 1


def tasks() -> list[Task]:
    out = [Task(f"r{k}", i, [Instance(x, o)]) for k, (i, x, o) in enumerate(PAIRS)]
    return out + [Task("empty", "Say nothing.", [Instance("", "")])]


def test_filter_scores_every_record_and_drops_by_threshold(tiny):
    probe = tasks()
    IFDFilter.of(model=tiny, max_length=256, dtype="float32", threshold=1e9).apply(probe)
    ifd = {t.id: t.scores["ifd"] for t in probe if "ifd" in t.scores}
    assert len(ifd) == len(PAIRS)
    cut = float(np.median(list(ifd.values())))
    got = IFDFilter.of(model=tiny, max_length=256, dtype="float32", threshold=cut).apply(tasks())
    for t in got:
        if t.id == "empty":
            assert t.verdict.reason == "ifd:no_output" and "ifd" not in t.scores
            continue
        assert t.scores["ifd"] == pytest.approx(ifd[t.id], rel=1e-6)
        assert t.scores["ifd"] == pytest.approx(t.scores["ppl_cond"] / t.scores["ppl_alone"], rel=1e-6)
        assert t.kept == (ifd[t.id] < cut)
        if not t.kept:
            assert t.verdict.reason == f"ifd>={cut:.2f}" and t.verdict.filter == "ifd"


def test_keep_top_keeps_the_highest_ifds_with_ranks(tiny):
    got = IFDFilter.of(model=tiny, max_length=256, dtype="float32", threshold=1e9, keep_top=2).apply(tasks())
    scored = sorted((t for t in got if "ifd" in t.scores), key=lambda t: -t.scores["ifd"])
    assert [t.meta["rank"]["ifd"] for t in scored] == list(range(1, len(PAIRS) + 1))
    assert [t.kept for t in scored] == [True, True] + [False] * (len(PAIRS) - 2)
    assert {t.verdict.reason for t in scored[2:]} == {"below_top_2:ifd"}


def test_cache_makes_a_rerun_load_no_model(tiny, tmp_path):
    first = IFDFilter.of(model=tiny, max_length=256, dtype="float32")
    first.prepare({"cache_dir": tmp_path})
    a = first.apply(tasks())
    again = IFDFilter.of(model=tiny, max_length=256, dtype="float32", threshold=0.5)  # new threshold, same scores
    again.prepare({"cache_dir": tmp_path})
    b = again.apply(tasks())
    assert again.scorer.model is None  # nothing loaded, nothing scored
    assert again.details["scores_cached"] == len(PAIRS) + 1
    assert [t.scores for t in a] == [t.scores for t in b]
    assert [t.kept for t in b] == [t.scores.get("ifd", 9) < 0.5 for t in b]


def test_missing_model_fails_in_prepare(tmp_path):
    from instructgen.models import ModelSpecError
    with pytest.raises(ModelSpecError, match="^model: unknown model spec"):
        IFDFilter.of(model=str(tmp_path / "nope")).prepare({"cache_dir": None})


def test_record_scores_average_instances():
    t = Task("t", "Repeat.", [Instance("", "a"), Instance("", "b"), Instance("", "")])
    assert len(task_pairs(t)) == 3
    s = record_scores(np.array([[1.0, 2.0, 3], [2.0, 2.0, 1], [np.nan] * 3]))
    assert s["ifd"] == pytest.approx((math.exp(-1) + 1) / 2)
    assert s["ppl_cond"] == pytest.approx((math.e + math.e ** 2) / 2)
    assert record_scores(np.full((1, 3), np.nan)) is None


def test_dtype_auto_and_bad_values():
    from instructgen.filters.ifd import resolve_dtype
    assert resolve_dtype("auto", "cuda") == "bfloat16" and resolve_dtype("float32", "cuda") == "float32"
    assert resolve_dtype("auto", "cpu") in ("float32", "bfloat16")
    with pytest.raises(ValueError, match="dtype"):
        IFDFilter.of(dtype="float16")


def test_batches_are_longest_first_and_bounded_in_rows_and_tokens():
    from instructgen.filters.ifd import batches
    got = batches([5, 100, 30, 100, 60, 2], batch_size=3, max_tokens=200)
    assert got == [[1, 3], [4, 2, 0], [5]]  # 2 x 100 fits 200 tokens, a third would not; then 60 x 3 = 180
    assert all(len(b) <= 3 for b in batches(list(range(1, 50)), 3, 10_000))
