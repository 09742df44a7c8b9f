"""Magpie (Xu et al. 2024, "Magpie: Alignment Data Synthesis from Scratch by Prompting Aligned LLMs with
Nothing", arXiv 2406.08464): no seeds and no instruction prompt. An aligned chat model is sent only its chat
template's text up to the user turn's content (the pre-query template); it writes a user query, as it was trained
to see one there. The query, through the same template, is then sent back for the answer.

Both calls are raw-string prompts, so any backend with "raw" in `supports` works (transformers, vLLM, openai
`/completions`). The template file renders the pre-query with `query=None` and the answer prompt with a query
(`magpie_smollm2.completion`, the embedded model's ChatML; `magpie_chatml`, `magpie_llama3`);
`pre_query_from_chat_template` derives the same text from a model's own chat template, which a test uses to
keep the packaged file in step with the embedded model.

Queries go through the Self-Instruct rule filters, then are answered (greedy), then the ROUGE-L novelty check
(last, so the novelty pool holds only kept records and a resumed run goes on exactly as an uninterrupted one).
"""

from __future__ import annotations

import re
import time
from typing import Sequence

from ..records import Instance, Task, text_hash
from ..templates import PromptTemplate, TemplateError
from .bootstrap import novelty_last
from .teachers import Sampling, TeacherSpecError, cut_at_stop

_SENTINEL = "\x00MAGPIE-QUERY\x00"


def pre_query_from_chat_template(chat_template: str, bos_token: str = "", eos_token: str = "") -> tuple[str, str]:
    """(pre-query, answer-prompt prefix) from a HF chat template's Jinja source (pure): the conversation with one
    user message rendered without and with the generation prompt, cut at the message. The answer prompt for a
    query q is `pre + q + suffix`, where suffix is the second value."""
    import jinja2
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # what transformers renders chat templates with
    env.globals["raise_exception"] = lambda msg: (_ for _ in ()).throw(TemplateError(msg))
    t = env.from_string(chat_template)
    msgs = [{"role": "user", "content": _SENTINEL}]
    full = t.render(messages=msgs, add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token)
    if _SENTINEL not in full:
        raise TemplateError("chat template does not render the user message's content")
    pre, _, after = full.partition(_SENTINEL)
    return pre, after


def parse_query(text: str, stops: Sequence[str] = ()) -> str | None:
    """The user query in a pre-query completion (pure): cut at the first stop (end of turn), stripped; None for
    an empty or whitespace-only query, or one that is only a role header the model wrote again."""
    text, _ = cut_at_stop(text, stops)
    text = text.strip()
    if not text or re.fullmatch(r"(?i)(user|assistant|system)\s*:?", text):
        return None
    return text


def parse_response(text: str, stops: Sequence[str] = ()) -> str | None:
    """The answer (pure): cut at the first stop, stripped; None when nothing is left."""
    text, _ = cut_at_stop(text, stops)
    return text.strip() or None


class MagpieRecipe:
    """Magpie: a pre-query prompt per row, the query parsed, filtered, answered, novelty-checked."""

    name = "magpie"
    seedless = True
    calls_per_batch = 2

    def check(self, cfg, templates: Sequence[PromptTemplate]) -> None:
        """Before any model call: the template is a plain-completion file whose pre-query is the start of its
        answer prompt (so the model sees one conversation)."""
        t = templates[0]
        if t.is_chat:
            raise TemplateError(f"{t.path}: Magpie needs a plain-completion template (the chat template's text "
                                f"itself), not a .chat.jinja2 user turn")
        pre, answer = t.render(query=None), t.render(query="Q")
        if not pre or not answer.startswith(pre):
            raise TemplateError(f"{t.path}: with query=None it must render the start of what it renders with a "
                                f"query (the pre-query template)")

    def sample_prompts(self, run) -> list[str]:
        return [run.templates[0].render(query=None)] * run.cfg.batch_size

    def batch(self, run, batch_idx: int) -> list[Task]:
        cfg, tmpl = run.cfg, run.templates[0]
        if "raw" not in getattr(run.teacher, "supports", {"raw"}):
            raise TeacherSpecError(f"teacher {run.teacher.name} takes no raw prompts; Magpie needs one (transformers, "
                                   f"vllm or openai /completions)")
        sampling = run.sampling
        sampling.seed = cfg.seed * 100_003 + batch_idx
        pre = tmpl.render(query=None)
        completions = run.generate([pre] * cfg.batch_size, sampling)
        created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        records: list[Task] = []
        asked: list[Task] = []
        for j, c in enumerate(completions):
            prov = {"teacher": run.teacher.name, "template": tmpl.name, "recipe": self.name, "round": 0,
                    "operation": "query", "sampling": sampling.to_dict(), "prompt_hash": text_hash(pre),
                    "created_at": created, "completion_index": j, "finish_reason": c.finish_reason,
                    "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens}
            query = parse_query(c.text, cfg.stop)
            t = Task(id=f"magpie-{batch_idx:05d}-{j:03d}", instruction=query or c.text[:2000], provenance=prov)
            if c.finish_reason == "length":
                t.drop("truncated_completion", filter="parse")
            elif query is None:
                t.drop("unparseable", filter="parse")
            elif all(f.decide(t) for f in run.rules):
                asked.append(t)
            records.append(t)
        if asked:
            answer = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=cfg.response_max_new_tokens,
                              presence_penalty=0.0, stop=tuple(cfg.stop))
            prompts = [tmpl.render(query=t.instruction) for t in asked]
            for t, p, a in zip(asked, prompts, run.generate(prompts, answer)):
                t.provenance["response"] = {"sampling": answer.to_dict(), "prompt_hash": text_hash(p),
                                            "finish_reason": a.finish_reason, "prompt_tokens": a.prompt_tokens,
                                            "completion_tokens": a.completion_tokens}
                response = parse_response(a.text, cfg.stop)
                if a.finish_reason == "length":
                    t.drop("truncated_response", filter="magpie")
                elif response is None:
                    t.drop("empty_response", filter="magpie")
                else:
                    t.instances = [Instance("", response)]
        return novelty_last(run, records, asked)

