"""The transformers teacher's own decode loop (refill, shared heads, per-row seeds) against transformers'
`model.generate` one prompt at a time, on a tiny Llama built from a config (tests/trainer/tiny.py), plus one
check on the embedded SmolLM2. The reference is the teacher's `model.generate` fallback (`own_loop = False`)
with batch 1: the decoding semantics the loop must keep."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "trainer"))
from tiny import WORDS, build_model, one_thread  # noqa: E402

from instructgen.generator.hf_teacher import (MIN_SHARED_PREFIX, TransformersTeacher, _groups, _nucleus,  # noqa: E402
                                              _sample, _Slab)
from instructgen.generator.teachers import Sampling, cut_at_stop  # noqa: E402

HEAD = "".join(f"Repeat the word {w} three times. {w} {w} {w}\n" for w in WORDS[:6])  # a shared few-shot head
PROMPTS = ([HEAD + f"Repeat the word {w} three times." for w in WORDS[6:11]]
           + ["Repeat the word piano", "lemon ocean candle", HEAD[:40] + " forest"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> TransformersTeacher:
    with one_thread():
        yield TransformersTeacher(str(build_model(tmp_path_factory.mktemp("tiny-llama"))), batch_size=3)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def reference(t: TransformersTeacher, prompts, s: Sampling):
    """The same teacher through `model.generate`, one prompt per call."""
    old = (t.own_loop, t.batch_size)
    t.own_loop, t.batch_size = False, 1
    try:
        return [t.generate([p], s)[0] for p in prompts]
    finally:
        t.own_loop, t.batch_size = old


def shape(cs):
    return [(c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) for c in cs]


@pytest.mark.parametrize("penalty", [0.0, 2.0])
def test_greedy_equals_one_prompt_generate(tiny, penalty):
    s = Sampling(temperature=0.0, max_new_tokens=24, presence_penalty=penalty)
    before = tiny.stats["prefix_tokens_shared"]
    ours = tiny.generate(PROMPTS, s)  # 8 prompts through 3 rows: rows retire and refill
    assert tiny.stats["prefix_tokens_shared"] > before  # the five HEAD prompts shared their head
    assert shape(ours) == shape(reference(tiny, PROMPTS, s))
    assert len({c.text for c in ours}) > 2


def test_cache_that_outgrows_its_room_equals_one_prompt_generate(tiny, monkeypatch):
    """The live cache writes each token into spare columns; with no spare room every step and every refill
    moves it to a new buffer, and the text must not change."""
    s = Sampling(temperature=0.0, max_new_tokens=24, presence_penalty=2.0)
    roomy = shape(tiny.generate(PROMPTS, s))
    grown = []
    real = _Slab._put
    monkeypatch.setattr(_Slab, "room", staticmethod(lambda t: 1))
    monkeypatch.setattr(_Slab, "_put", lambda self, n, t, parts: (grown.append(t), real(self, n, t, parts))[1])
    assert shape(tiny.generate(PROMPTS, s)) == roomy == shape(reference(tiny, PROMPTS, s))
    assert len(grown) > 24  # rebuilt at every step: one column of room


@pytest.mark.parametrize("top_p", [1e-6, 0.3, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("spread", [0.5, 3.0, 12.0])
def test_nucleus_is_top_p_warper_set(top_p, spread):
    """The nucleus (best k tokens sorted, k grown as needed) keeps exactly the tokens transformers'
    TopPLogitsWarper keeps, for peaked and flat rows, including nuclei wider than the first k."""
    import torch
    from transformers import TopPLogitsWarper
    g = torch.Generator().manual_seed(int(top_p * 1000) + int(spread))
    scores = torch.randn(6, 5000, generator=g) * spread
    scores[0] = 0.0  # a flat row: the nucleus is top_p of the whole vocabulary
    idx, w = _nucleus(scores, top_p)
    ref = torch.isfinite(TopPLogitsWarper(top_p)(None, scores.clone()))
    for r in range(scores.shape[0]):
        ours = set(idx[r][w[r] > 0].tolist())
        theirs = set(torch.nonzero(ref[r]).flatten().tolist())
        if r == 0:  # ties: any top_p share of equal tokens is a correct nucleus
            assert abs(len(ours) - len(theirs)) <= 1
        elif top_p > 0.99:  # thousands of tokens: the warper's ascending cumsum rounds differently at the edge
            assert len(ours ^ theirs) <= 1
        else:
            assert ours == theirs
        kept = w[r][w[r] > 0]
        assert torch.allclose(kept, scores[r].softmax(-1)[idx[r][w[r] > 0]], rtol=1e-4)


def test_a_rows_token_does_not_depend_on_the_rows_beside_it_even_with_tied_scores():
    """Scores rounded to bfloat16 tie often; a flat row beside makes the nucleus search sort far more
    candidates. The peaked row must draw the same token, seeded alike, alone or beside it."""
    import torch
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        peaked = (torch.randn(1, 20000, generator=g) * 4).to(torch.bfloat16).float()
        flat = torch.zeros(1, 20000)
        alone = _sample(peaked, 0.9, [torch.Generator().manual_seed(trial)])
        beside = _sample(torch.cat([peaked, flat]), 0.9, [torch.Generator().manual_seed(trial),
                                                           torch.Generator().manual_seed(1)])
        assert int(alone[0]) == int(beside[0]), trial


def test_scores_that_are_not_finite_are_one_clear_error():
    import torch
    bad = torch.zeros(2, 50)
    bad[1, 3] = float("nan")
    for top_p in (0.5, 1.0):
        with pytest.raises(RuntimeError, match="not finite"):
            _sample(bad, top_p, [None, None])


def test_stop_strings_and_length_match_generate(tiny):
    free = tiny.generate(PROMPTS[:4], Sampling(temperature=0.0, max_new_tokens=24, presence_penalty=0.0))
    # strings the greedy text does contain; ASCII, since transformers' own stop check works on token strings and
    # misses a stop inside a multi-byte character, which our check (on the decoded text) catches
    stops = tuple({m.group() for c in free for m in [re.search(r"[\x00-\x7f]{1,2}", c.text[1:])] if m})
    assert stops
    s = Sampling(temperature=0.0, max_new_tokens=24, presence_penalty=0.0, stop=stops)
    ours = tiny.generate(PROMPTS, s)
    assert shape(ours) == shape(reference(tiny, PROMPTS, s))
    cut = [c for c in ours[:4] if c.finish_reason == "stop"]
    assert cut and all(c.completion_tokens < 24 and not any(x in c.text for x in stops) for c in cut)
    assert [c.text for c in ours[:4]] == [cut_at_stop(c.text, stops)[0] for c in free]
    short = tiny.generate(PROMPTS[:2], Sampling(temperature=0.0, max_new_tokens=5, presence_penalty=0.0))
    assert [(c.finish_reason, c.completion_tokens) for c in short] == [("length", 5)] * 2


def test_eos_finishes_a_row_and_is_counted_not_shown(tiny):
    import torch
    enc = tiny.tokenizer(PROMPTS[0], add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        ids = tiny.model.generate(torch.tensor([enc]), max_new_tokens=24, do_sample=False,
                                  pad_token_id=tiny.tokenizer.pad_token_id)[0, len(enc):].tolist()
    eos = ids[3]
    saved = tiny.eos
    tiny.eos = saved | {eos}
    try:
        [c] = tiny.generate([PROMPTS[0]], Sampling(temperature=0.0, max_new_tokens=24, presence_penalty=0.0))
    finally:
        tiny.eos = saved
    first = ids.index(eos)
    assert c.finish_reason == "stop" and c.completion_tokens == first + 1
    assert c.text == tiny.tokenizer.decode(ids[:first], skip_special_tokens=True)


def test_seeded_sampling_does_not_depend_on_the_batch(tiny):
    s = Sampling(temperature=1.0, top_p=0.9, max_new_tokens=16, presence_penalty=2.0, seed=7)
    runs = []
    for width in (1, 3, 8):
        tiny.batch_size = width
        runs.append(shape(tiny.generate(PROMPTS, s)))
    tiny.batch_size = 3
    assert runs[0] == runs[1] == runs[2]
    other = shape(tiny.generate(PROMPTS, Sampling(temperature=1.0, top_p=0.9, max_new_tokens=16,
                                                  presence_penalty=2.0, seed=8)))
    assert other != runs[0]


def test_stream_rows_added_while_others_run_decode_as_they_would_alone(tiny):
    """What gen instructions does on this teacher: a second batch's prompts are added while the first one's
    rows are running; every completion is the one `generate` gives that batch alone (3 rows, refilled)."""
    import dataclasses
    s = Sampling(temperature=1.0, top_p=0.9, max_new_tokens=16, presence_penalty=2.0)
    first, second = PROMPTS[:4], PROMPTS[4:]
    ref = (shape(tiny.generate(first, dataclasses.replace(s, seed=5))),
           shape(tiny.generate(second, dataclasses.replace(s, seed=9))))
    dec = tiny.stream(s)
    rows_a = dec.add([tiny.encode(tiny.render(p)) for p in first], seed=5)
    for _ in range(5):
        dec.step()
    assert any(r.finish is None for r in rows_a)
    rows_b = dec.add([tiny.encode(tiny.render(p)) for p in second], seed=9)
    while dec.busy:
        dec.step()
    assert (shape([dec.completion(r) for r in rows_a]), shape([dec.completion(r) for r in rows_b])) == ref


def test_stream_cancel_stops_every_row_and_counts_what_was_made(tiny):
    dec = tiny.stream(Sampling(temperature=0.0, max_new_tokens=16, presence_penalty=0.0))
    rows = dec.add([tiny.encode(p) for p in PROMPTS])
    before = dict(tiny.stats)
    dec.step()
    dec.step()
    dec.cancel()
    assert not dec.busy and all(r.finish == "cancelled" for r in rows)
    out = [dec.completion(r) for r in rows]
    assert sorted(c.completion_tokens for c in out) == [0] * 5 + [2] * 3  # three rows ran two steps, five waited
    assert all((c.prompt_tokens > 0) == (c.completion_tokens > 0) for c in out)
    assert tiny.stats["completion_tokens"] - before["completion_tokens"] == 6


def test_top_p_near_zero_is_greedy_and_presence_penalty_counts_generated_tokens(tiny):
    greedy = tiny.generate(PROMPTS, Sampling(temperature=0.0, max_new_tokens=16, presence_penalty=0.0))
    nucleus = tiny.generate(PROMPTS, Sampling(temperature=1.5, top_p=1e-6, max_new_tokens=16, presence_penalty=0.0,
                                              seed=3))
    assert shape(nucleus) == shape(greedy)
    s = Sampling(temperature=0.0, max_new_tokens=16, presence_penalty=1e4)  # no generated token may repeat
    banned = tiny.generate(PROMPTS, s)
    assert shape(banned) != shape(greedy) and shape(banned) == shape(reference(tiny, PROMPTS, s))


def test_on_tokens_moves_per_step_and_sums_to_the_completions(tiny):
    got: list[int] = []
    out = tiny.generate(PROMPTS, Sampling(temperature=0.0, max_new_tokens=12, presence_penalty=0.0),
                        on_tokens=got.append)
    assert sum(got) == sum(c.completion_tokens for c in out)
    assert len(got) >= 12 and max(got) <= tiny.batch_size


def test_logprobs_are_the_models_own_distribution(tiny):
    import torch
    s = Sampling(temperature=0.0, max_new_tokens=6, presence_penalty=0.0, logprobs=3)
    [c] = tiny.generate([PROMPTS[5]], s)
    assert len(c.top_logprobs) == c.completion_tokens == 6
    ids = tiny.tokenizer(PROMPTS[5], add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        full = tiny.model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False,
                                   pad_token_id=tiny.tokenizer.pad_token_id)[0].tolist()
        lp = tiny.model(torch.tensor([full])).logits[0].log_softmax(-1)
    for j, d in enumerate(c.top_logprobs):
        best = int(lp[len(ids) - 1 + j].argmax())
        assert len(d) <= 3 and all(v <= 0 for v in d.values())
        assert max(d, key=d.get) == tiny.tokenizer.decode([best])  # the greedy token is the top entry
        assert d[tiny.tokenizer.decode([best])] == pytest.approx(float(lp[len(ids) - 1 + j, best]), abs=1e-4)
    assert tiny.generate([PROMPTS[5]], Sampling(temperature=0.0, max_new_tokens=3))[0].top_logprobs is None


def test_supports_rows_and_close(tmp_path):
    t = TransformersTeacher(str(build_model(tmp_path / "m")), batch_size=8, rows=2)
    assert t.supports == frozenset({"raw", "chat", "logprobs", "stream"})
    got: list[int] = []
    t.generate(PROMPTS[:5], Sampling(temperature=0.0, max_new_tokens=4, presence_penalty=0.0), on_tokens=got.append)
    assert max(got) == 2 and sum(got) == 20  # two rows at a time, refilled until all five are done
    t.close()
    t.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        t.generate(["x"], Sampling())


def test_groups_share_long_heads_only():
    head = list(range(100))
    ids = [head + [500, 1], [7, 8, 9], head + [501, 2, 3], head[:40] + [600], head + [500, 4]]
    g = _groups(ids)
    assert sorted(i for _, _, i in g) == list(range(5))
    by_index = {i: (gid, n) for gid, n, i in g}
    assert by_index[0][0] == by_index[2][0] == by_index[4][0] and by_index[0][1] == 100  # one group, head 100
    assert by_index[3] == by_index[1] == (-1, 0)  # 40 shared tokens < half of 100: no head, with the loners
    assert [i for _, _, i in g][-2:] == [1, 3]  # loners last, shortest first
    assert _groups([[1] * (MIN_SHARED_PREFIX - 1) + [2], [1] * (MIN_SHARED_PREFIX - 1) + [3]])[0][1] == 0
    # the head always leaves at least one token to prefill per row
    assert {n for _, n, _ in _groups([head, head + [5]])} == {99}


@pytest.mark.slow
def test_embedded_greedy_equals_one_prompt_generate(embedded_teacher):
    from instructgen.generator.bootstrap import PACKAGED_SEEDS, SelfInstructRecipe
    from instructgen.records import read_seed_tasks
    from instructgen.templates import load_template

    seeds = read_seed_tasks(PACKAGED_SEEDS)
    tmpl = load_template("self_instruct.completion")
    prompts = [SelfInstructRecipe().render(tmpl, seeds[i:i + 4]) for i in (0, 4)]
    s = Sampling(temperature=0.0, max_new_tokens=8, presence_penalty=2.0, stop=("\n\n",))
    assert shape(embedded_teacher.generate(prompts, s)) == shape(reference(embedded_teacher, prompts, s))


@pytest.mark.slow
def test_embedded_shared_head_equals_one_prompt_generate(embedded_teacher):
    """The classification prompts of `gen instances` share a ~1,000-token few-shot head: computed once, copied
    into each row, the answers are those of one prompt at a time."""
    from instructgen.templates import load_template

    tmpl = load_template("is_classification.completion")
    prompts = [tmpl.render(instruction=x) for x in ("Sort these numbers: 3, 1, 2.",
                                                    "Is this review positive or negative? 'Great phone.'",
                                                    "Write a haiku about rain.")]
    s = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=3, presence_penalty=0.0)
    before = embedded_teacher.stats["prefix_tokens_shared"]
    ours = embedded_teacher.generate(prompts, s)
    assert embedded_teacher.stats["prefix_tokens_shared"] - before > 500
    assert shape(ours) == shape(reference(embedded_teacher, prompts, s))
