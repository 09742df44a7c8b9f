"""Fixtures of the trainer tests: the tiny student folders (built once per session) and a small dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny import build_model, one_thread, records, tiny_config, tiny_model_threads  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Folder of a 2-layer, 64-wide Llama with a ChatML tokenizer (~125K parameters)."""
    return build_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory) -> Path:
    """The same model with no chat template (a base model): training uses the default template."""
    return build_model(tmp_path_factory.mktemp("tiny-base"), chat_template=None)


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    p = tmp_path / "data.json"
    p.write_text(json.dumps(records()), encoding="utf-8")
    return p


@pytest.fixture(scope="session")
def trained_run(tiny_model, tmp_path_factory) -> tuple[Path, dict]:
    """One finished plain-LoRA run of the tiny student (16 steps), shared by the layout, merge and hub tests."""
    from instructgen.trainer import train
    root = tmp_path_factory.mktemp("trained")
    data = root / "data.json"
    data.write_text(json.dumps(records()), encoding="utf-8")
    with one_thread():
        metrics = train(tiny_config(tiny_model, quantization="none", max_steps=16), data, root / "out", quiet=True)
    return root / "out", metrics


_tiny_model_threads = pytest.fixture(autouse=True)(tiny_model_threads)
