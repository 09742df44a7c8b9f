"""`gen merge` / `--merge`: the adapter merged into the base reloaded unquantized, loadable without peft."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from instructgen.rundir import RunDirError
from instructgen.trainer import train
from instructgen.trainer.merge import merge_adapter

sys.path.insert(0, str(Path(__file__).parent))
from tiny import tiny_config  # noqa: E402


def logits(model, ids):
    import torch
    with torch.no_grad():
        return model(input_ids=ids).logits


def base_plus_adapter(base_path: Path, adapter: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), str(adapter)).eval()


def test_merged_model_equals_base_plus_adapter(trained_run, tiny_model, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = trained_run
    merged = merge_adapter(out, out=tmp_path / "merged", quiet=True)
    model = AutoModelForCausalLM.from_pretrained(merged).eval()
    assert not any("lora" in n for n, _ in model.named_parameters())
    assert "quantization_config" not in json.loads((merged / "config.json").read_text())
    assert (merged / "completed").exists() and json.loads((merged / "merge_info.json").read_text())["dtype"] == "float32"
    ids = torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(1))
    reference = logits(base_plus_adapter(tiny_model, out / "adapter"), ids)
    assert torch.allclose(logits(model, ids), reference, atol=1e-4)
    assert not torch.allclose(logits(AutoModelForCausalLM.from_pretrained(tiny_model), ids), reference, atol=1e-4)
    assert AutoTokenizer.from_pretrained(merged).chat_template == AutoTokenizer.from_pretrained(out / "adapter").chat_template

    with pytest.raises(FileExistsError, match="--overwrite"):
        merge_adapter(out, out=tmp_path / "merged", quiet=True)
    merge_adapter(out, out=tmp_path / "merged", overwrite=True, dtype="bfloat16", quiet=True)
    assert json.loads((merged / "merge_info.json").read_text())["dtype"] == "bfloat16"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a merged model folder"):
        merge_adapter(out, out=tmp_path / "mine", overwrite=True, quiet=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_qlora_adapter_merges_into_the_unquantized_base(tiny_model, tiny_data, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    train(tiny_config(tiny_model, quantization="nf4", max_steps=3, eval_generations=1), tiny_data, out,
          quiet=True, merge=True)
    model = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert "quantization_config" not in json.loads((out / "merged" / "config.json").read_text())
    ids = torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(2))
    assert torch.allclose(logits(model, ids), logits(base_plus_adapter(tiny_model, out / "adapter"), ids), atol=1e-4)


def test_merge_refuses_a_folder_that_is_not_a_finished_training_run(tmp_path):
    with pytest.raises(RunDirError, match="not a completed `gen train` folder"):
        merge_adapter(tmp_path)
