"""The preflight report and the checks that stop a pointless run before the model loads."""

from __future__ import annotations

import pytest

from instructgen.trainer.config import TrainConfig, plan
from instructgen.trainer.data import Encoded
from instructgen.trainer.preflight import MemoryEstimate, PreflightError, check, percentile, report

ROW = {"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}


def enc(rows, lengths, truncated=0, no_target=0):
    return Encoded(rows=rows, lengths=lengths, truncated=truncated, no_target=no_target,
                   trained_tokens=2 * len(rows), total_tokens=3 * len(rows))


def test_percentile_nearest_rank():
    assert percentile([5], 50) == 5
    assert percentile(list(range(1, 101)), 50) == 50 and percentile(list(range(1, 101)), 99) == 99
    assert percentile([3, 1, 2], 100) == 3


def test_no_trained_token_stops():
    with pytest.raises(PreflightError, match="no token would be trained"):
        check(enc([], [600, 700], truncated=2, no_target=2), enc([ROW], [3]), 512, 0.5)


def test_most_examples_truncated_stops():
    with pytest.raises(PreflightError, match=r"3 of 4 training examples \(75%\).*max_seq_length=512"):
        check(enc([ROW] * 4, [600, 700, 800, 10], truncated=3), enc([ROW], [3]), 512, 0.5)
    check(enc([ROW] * 4, [600, 700, 10, 10], truncated=2), enc([ROW], [3]), 512, 0.5)  # half is allowed


def test_heldout_without_response_stops():
    with pytest.raises(PreflightError, match="held-out"):
        check(enc([ROW], [3]), enc([], [900], truncated=1, no_target=1), 512, 0.5)


def test_report_lists_everything():
    text = report(enc([ROW] * 3, [3, 3, 900], truncated=1), enc([ROW], [3]), trainable=1000, total_params=100_000,
                  mem=MemoryEstimate(2 * 1024 ** 3, 1024 ** 2, 512 * 1024 ** 2), plan=plan(TrainConfig(), cuda=False),
                  steps=12, batch_size=4, grad_accum=4)
    for needle in ("trainable parameters   1,000 of 100,000 (1.00%)", "3 train", "1 held out", "p50 3",
                   "max 900", "tokens trained", "(66.7%", "examples truncated     1 (33.3%)",
                   "12 of 4 x 4 examples", "2.50 GiB", "none base, float32 compute, on cpu"):
        assert needle in text, needle
