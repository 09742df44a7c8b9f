import pytest

from instructgen.config import ConfigError, GenerationConfig, PRESETS, field_docs, generation_config


def test_self_instruct_preset_is_the_published_recipe():
    c = generation_config({})
    assert (c.num_prompt_instructions, c.num_machine_instructions) == (8, 2)
    assert (c.temperature, c.top_p, c.presence_penalty, c.max_new_tokens) == (0.7, 0.5, 2.0, 1024)
    assert c.drop_truncated == "completion" and (c.min_words, c.max_words) == (4, 150)
    assert c.rouge_threshold == 0.7 and len(c.blacklist) == 13 and "go to" in c.blacklist
    assert c.forbidden_prefixes == ["Write a program"] and c.template == "self_instruct.completion"


def test_alpaca_preset():
    c = generation_config({"preset": "alpaca"})
    assert (c.num_prompt_instructions, c.num_machine_instructions) == (3, 0)
    assert (c.temperature, c.top_p, c.max_new_tokens) == (1.0, 1.0, 3072)
    assert c.drop_truncated == "last_item" and len(c.blacklist) == 18 and "flowchart" in c.blacklist


def test_precedence_and_errors(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("temperature: 0.9\nnum: 7\n")
    c = generation_config({"num": 3}, str(y))
    assert c.temperature == 0.9 and c.num == 3  # flags beat YAML, YAML beats the preset
    y.write_text("temprature: 0.9\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown option 'temprature'"):
        generation_config({}, str(y))
    y.write_text("num: [1,\n  2\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: invalid YAML"):
        generation_config({}, str(y))
    y.write_text("num: many\n")
    with pytest.raises(ConfigError, match="option 'num' must be int"):
        generation_config({}, str(y))
    with pytest.raises(ConfigError, match="--preset nope"):
        generation_config({"preset": "nope"})
    with pytest.raises(ConfigError, match="top_p"):
        generation_config({"top_p": 0})


def test_every_field_and_preset_is_documented():
    docs = field_docs(GenerationConfig)
    assert all(docs.values())
    for name, values in PRESETS.items():
        assert set(values) <= set(docs), name
        generation_config({"preset": name})
