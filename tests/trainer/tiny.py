"""A tiny Llama-style student built from a config, with a byte-level BPE tokenizer trained in the test on the
words the test data uses (ChatML chat template, EOS = <|im_end|>); small datasets; a TrainConfig sized for it."""

from __future__ import annotations

import contextlib
from pathlib import Path

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
WORDS = ["apple", "river", "stone", "cloud", "maple", "tiger", "piano", "lemon", "ocean", "candle", "forest",
         "silver", "garden", "rocket", "pepper", "window", "violet", "harbor", "saddle", "meadow", "copper",
         "falcon", "marble", "tunnel"]


def records(words=WORDS) -> list[dict]:
    """Alpaca-style records with a learnable pattern: the answer repeats the word three times."""
    out = []
    for i, w in enumerate(words):
        out.append({"id": f"t{i}", "instruction": f"Repeat the word {w} three times.", "input": "",
                    "output": f"{w} {w} {w}"})
    return out


def build_tokenizer(chat_template: str | None = CHATML):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [f"Repeat the word {w} three times. {w} {w} {w}" for w in WORDS] * 4
    corpus += ["user assistant system Instruction Response ###", "Give an answer: Answer the question."]
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "<pad>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="<|im_end|>", unk_token="<unk>",
                                  pad_token="<pad>")
    if chat_template:
        tok.chat_template = chat_template
    return tok


def build_model(folder: Path, chat_template: str | None = CHATML) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer(chat_template)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder




def tiny_config(student: Path, **kw):
    """A TrainConfig sized for the tiny model: seconds per run on CPU."""
    from instructgen.trainer import TrainConfig
    base = dict(student=str(student), lora_r=8, lora_alpha=16, lora_dropout=0.0, learning_rate=1e-2,
                batch_size=4, grad_accum=1, max_steps=6, cpu_max_steps=0, max_seq_length=64, min_heldout=4,
                eval_generations=3, eval_max_new_tokens=6, save_steps=3, warmup_ratio=0.0,
                benchmark=None)  # the embedded-student test covers the benchmark
    base.update(kw)
    return TrainConfig(**base)


def tiny_model_threads(request):
    """Body of the autouse fixture of the tiny-model test folders: one torch thread, except for tests marked slow
    (the embedded student keeps the default)."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    with one_thread():
        yield


@contextlib.contextmanager
def one_thread():
    """The tiny model is overhead-bound: one torch thread is faster, and kinder to a shared CI machine."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
