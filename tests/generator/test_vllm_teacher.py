"""The vllm teacher without a GPU: the missing-install hint for real, and the two pure mapping functions on
objects shaped like vLLM's RequestOutput. The engine calls themselves (`LLM.generate` / `LLM.chat`) are not
exercised here: vLLM needs CUDA."""

from __future__ import annotations

import importlib.util
import sys
from types import SimpleNamespace

import pytest

from instructgen.generator.teachers import Sampling, TeacherSpecError, make_teacher, validate_spec
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
    with pytest.raises(RuntimeError, match="'abort'"):
        to_completion(request_output("", [], "abort"))


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
