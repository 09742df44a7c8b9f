"""TrainConfig: defaults with their sources, YAML/flag precedence, validation, what `auto` resolves to."""

from __future__ import annotations

from dataclasses import fields

import pytest

from instructgen.config import ConfigError
from instructgen.trainer.config import TrainConfig, plan, train_config


def test_defaults_are_the_published_qlora_values_and_documented():
    c = TrainConfig()
    assert (c.lora_r, c.lora_alpha, c.lora_dropout, c.learning_rate, c.max_grad_norm, c.warmup_ratio) == \
        (64, 16, 0.1, 2e-4, 0.3, 0.03)
    assert c.lora_target_modules == "all-linear" and c.lr_scheduler == "constant_with_warmup"
    assert c.student == "smollm2-135m" and c.quantization == "auto"
    for f in fields(TrainConfig):
        assert len(f.metadata.get("doc", "")) > 10, f.name


def test_yaml_then_flags(tmp_path):
    y = tmp_path / "t.yaml"
    y.write_text("lora_r: 16\nlearning_rate: 1e-4\nepochs: 1\n")
    c = train_config({"lora_r": 8, "epochs": None}, str(y))
    assert c.lora_r == 8 and c.learning_rate == 1e-4 and c.epochs == 1


@pytest.mark.parametrize("values,message", [
    ({"quantization": "int8"}, "quantization 'int8'"),
    ({"lora_dropout": 1.5}, "lora_dropout"),
    ({"heldout_share": 0}, "heldout_share"),
    ({"max_seq_length": 2}, "max_seq_length"),
    ({"lora_rank": 4}, "unknown option 'lora_rank'"),
    ({"lora_r": "big"}, "lora_r"),
])
def test_bad_options_name_the_option(tmp_path, values, message):
    with pytest.raises(ConfigError, match=message):
        train_config(values)


def test_bad_yaml_names_the_file_and_line(tmp_path):
    y = tmp_path / "t.yaml"
    y.write_text("lora_r: 8\nepochs: [1\n")
    with pytest.raises(ConfigError, match=r"t\.yaml:\d"):
        train_config({}, str(y))


def test_auto_resolves_per_device():
    gpu, cpu = plan(TrainConfig(), cuda=True), plan(TrainConfig(), cuda=False)
    assert (gpu.quantization, gpu.optim, gpu.gradient_checkpointing, gpu.max_steps) == \
        ("nf4", "paged_adamw_8bit", True, -1)
    assert (cpu.quantization, cpu.optim, cpu.gradient_checkpointing, cpu.compute_dtype, cpu.max_steps) == \
        ("none", "adamw_torch", False, "float32", TrainConfig().cpu_max_steps)
    assert plan(TrainConfig(quantization="nf4"), cuda=False).quantization == "nf4"
    assert plan(TrainConfig(max_steps=3), cuda=False).max_steps == 3
    assert plan(TrainConfig(max_steps=500), cuda=False).max_steps == TrainConfig().cpu_max_steps
    assert plan(TrainConfig(max_steps=500, cpu_max_steps=0), cuda=False).max_steps == 500
    assert plan(TrainConfig(max_steps=500), cuda=True).max_steps == 500


def test_target_modules_take_all_linear_or_a_list_of_names():
    assert train_config({}).lora_target_modules == "all-linear"
    assert train_config({}, None, [("lora_target_modules", ["q_proj", "v_proj"])]).lora_target_modules == \
        ["q_proj", "v_proj"]  # peft's LoraConfig takes either
    with pytest.raises(ConfigError, match="lora_target_modules' must be a string or a list of strings"):
        train_config({"lora_target_modules": [1, 2]})
