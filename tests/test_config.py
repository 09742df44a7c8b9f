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


def test_magpie_and_evol_presets():
    m = generation_config({"preset": "magpie"})
    assert (m.temperature, m.top_p, m.presence_penalty) == (1.0, 1.0, 0.0)  # Magpie's instruction sampling
    assert m.template == "magpie_smollm2.completion" and "<|im_end|>" in m.stop and "<|eot_id|>" in m.stop
    e = generation_config({"preset": "evol"})
    assert e.rounds == 4 and e.template == "evol_depth.chat" and e.stop == []  # WizardLM: M = 4 rounds
    assert e.evol_operations == ["constraints", "deepen", "concretize", "reasoning", "complicate_input", "breadth"]
    assert e.rouge_threshold == 0.7 and len(e.blacklist) == 13  # the same filters as Self-Instruct


def test_budget_options_are_validated_and_left_out_of_the_run_identity():
    from instructgen.config import run_identity, to_dict
    c = generation_config({"max_cost": 1.5, "max_tokens": 1000, "price_input_per_m": 0.15,
                           "price_output_per_m": 0.6})
    ident = run_identity(c)
    assert {"max_cost", "max_tokens", "price_input_per_m", "price_output_per_m", "rps"}.isdisjoint(ident)
    assert set(to_dict(c)) - set(ident) == {"max_cost", "max_tokens", "price_input_per_m", "price_output_per_m", "rps"}
    for bad, msg in [({"max_cost": 0}, "--max-cost"), ({"max_tokens": 0}, "--max-tokens"),
                     ({"price_input_per_m": -1}, "prices"), ({"rps": 0}, "--rps must be > 0"),
                     ({"rps": 2.0}, "--rps applies to HTTP teachers")]:
        with pytest.raises(ConfigError, match=msg):
            generation_config(bad)
    assert generation_config({"rps": 2.0, "teacher": "openai:http://127.0.0.1:9/v1@m"}).rps == 2.0
    with pytest.raises(ConfigError, match="option 'max_cost' must be float or null"):
        generation_config({"max_cost": "lots"})


def test_transport_options_are_left_out_of_the_run_identity_and_the_teacher_is_not():
    """How requests reach the teacher (balance, cooldown_s, max_concurrency, timeouts, retries) is not part of a
    generation folder's identity; the spec (model, endpoint list) and a backend option that changes the answers
    are. (The resume through `gen run` is tests/test_pipeline.py.)"""
    from instructgen.config import TRANSPORT_OPTIONS, run_identity
    one, two = "openai:http://127.0.0.1:9/v1@m", "openai:http://127.0.0.1:9/v1,http://127.0.0.1:10/v1@m"
    fast = dict(balance="least_loaded", cooldown_s=1, max_concurrency=32, timeout_s=5, max_attempts=2, backoff_s=0.1,
                max_backoff_s=1)
    assert set(fast) == set(TRANSPORT_OPTIONS)
    a = run_identity(generation_config({"teacher": one, "teacher_options": {"cooldown_s": 30}}))
    assert a == run_identity(generation_config({"teacher": one, "teacher_options": fast}))
    assert a["teacher_options"] == {} and a["teacher"] == one
    assert a != run_identity(generation_config({"teacher": two}))
    assert a != run_identity(generation_config({"teacher": one.replace("@m", "@n")}))
    assert run_identity(generation_config({"teacher_options": {"device": "cpu", "cooldown_s": 3}}))[
        "teacher_options"] == {"device": "cpu"}


def test_teacher_docs_name_every_spec_form_and_the_backend_options():
    from instructgen.config import field_docs
    from instructgen.pipeline import RunConfig
    for cls in (GenerationConfig, RunConfig):
        docs = field_docs(cls)
        assert "openai:URL,URL@MODEL (several endpoints of one model)" in docs["teacher"]
        for option in ("balance: round_robin|least_loaded", "cooldown_s", "max_concurrency (per endpoint)",
                       "tensor_parallel_size", "pipeline_parallel_size", "distributed_executor_backend"):
            assert option in docs["teacher_options"], (cls.__name__, option)


def test_set_values_are_yaml_checked_against_the_field():
    from instructgen.config import parse_sets, set_values
    sets = parse_sets(["temperature=0.9", "stop=[a, b]", "max_cost=null", "seeds=", "mean_similarity=false"])
    assert set_values(GenerationConfig, sets) == {"temperature": 0.9, "stop": ["a", "b"], "max_cost": None,
                                                  "seeds": None, "mean_similarity": False}
    with pytest.raises(ConfigError, match=r"--set stop: option 'stop' must be a list of strings, got \[1\]"):
        set_values(GenerationConfig, parse_sets(["stop=[1]"]))
    with pytest.raises(ConfigError, match="--set temprature: unknown option 'temprature' .did you mean 'temperature'"):
        set_values(GenerationConfig, parse_sets(["temprature=1"]))
