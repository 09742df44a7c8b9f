"""Shared fixtures: the real datasets in ../shared/data (skipped when absent) and the embedded teacher."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # shared test helpers (fake_http.py)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# A shell without job control starts background commands (`make test &`, nohup) with SIGINT ignored, and an
# ignored signal stays ignored across exec: the Ctrl-C tests would then wait for an interrupt that never comes.
# Python's own handler here also gives every child process the default disposition back.
signal.signal(signal.SIGINT, signal.default_int_handler)
ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data with the real public datasets; tests using it skip on a user's fresh clone."""
    if not (SHARED_DATA / "self_instruct_seed_tasks.jsonl").exists():
        pytest.skip("../shared/data is absent (it is beside the repo in CI only)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def embedded_teacher():
    """The real embedded teacher (SmolLM2-135M-Instruct on CPU), loaded once per session."""
    import torch
    # INSTRUCTGEN_TORCH_THREADS overrides: on a shared machine one thread per process is much faster
    torch.set_num_threads(int(os.environ.get("INSTRUCTGEN_TORCH_THREADS", 0)) or max(1, os.cpu_count() or 1))
    from instructgen.generator.hf_teacher import TransformersTeacher
    return TransformersTeacher("smollm2-135m", batch_size=16)
