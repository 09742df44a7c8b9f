"""Fixtures of the eval tests: the tiny student from tests/trainer/tiny.py (built once per session), small
IFEval files, and one torch thread for the tiny model (it is overhead-bound)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "trainer"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_fixtures import write_ifeval  # noqa: E402
from tiny import build_model, tiny_model_threads  # noqa: E402

@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def ifeval_file(tmp_path) -> Path:
    return write_ifeval(tmp_path / "ifeval.jsonl")


_tiny_model_threads = pytest.fixture(autouse=True)(tiny_model_threads)
