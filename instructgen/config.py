"""Typed configs with a doc per field, loaded from presets, YAML and flags, validated in one place.

Precedence: dataclass defaults < preset < YAML file (--config) < command-line flags. The resolved values are
written into the run folder's config.json, so a run shows exactly which constants it used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .filters.base import doc  # noqa: F401  (the one dataclass-field-with-doc helper; re-exported here)
from .filters.rules import ALPACA_BLACKLIST, SELF_INSTRUCT_BLACKLIST


class ConfigError(ValueError):
    pass


# Xu et al., ICLR 2024 (WizardLM), section 3.1: five in-depth operations and in-breadth evolving
EVOL_OPERATIONS = ("constraints", "deepen", "concretize", "reasoning", "complicate_input", "breadth")
# options that tune spending, not what a run makes: left out of config.json's identity (see `run_identity`)
BUDGET_FIELDS = ("price_input_per_m", "price_output_per_m", "max_cost", "max_tokens", "rps")


@dataclass
class GenerationConfig:
    """`gen instructions`: the Self-Instruct bootstrap loop (or Alpaca's one pass)."""

    num: int = doc("instructions to keep (the run stops once this many passed every filter)", default=100)
    preset: str = doc("self-instruct | alpaca: the published recipe whose constants are the defaults",
                      default="self-instruct")
    seeds: str | None = doc("seed file (Self-Instruct JSONL, our records or Alpaca JSON); None = packaged seeds",
                            default=None)
    teacher: str = doc("teacher spec: transformers:MODEL | vllm:MODEL | openai:URL@MODEL", default="smollm2-135m")
    teacher_options: dict = doc("backend keywords, e.g. {device: cuda, dtype: bfloat16} or vLLM engine "
                                "arguments; checked against the backend before anything loads",
                                default_factory=dict)
    template: str | None = doc("prompt template name or file; None = the preset's", default=None)
    batch_size: int = doc("prompts per teacher call (the original sent 5 per request)", default=16)
    seed: int = doc("random seed for prompt sampling and decoding", default=42)
    num_prompt_instructions: int = doc("instructions shown per prompt (Self-Instruct: 8, Alpaca: 3)", default=8)
    num_machine_instructions: int = doc("of those, drawn from the generated pool (Self-Instruct: 2, Alpaca: 0)",
                                        default=2)
    temperature: float = doc("Self-Instruct 0.7, Alpaca 1.0", default=0.7)
    top_p: float = doc("Self-Instruct 0.5, Alpaca 1.0", default=0.5)
    presence_penalty: float = doc("Self-Instruct 2, Alpaca 0", default=2.0)
    max_new_tokens: int = doc("Self-Instruct 1024, Alpaca 3072", default=1024)
    stop: list[str] = doc("stop strings; Self-Instruct's script stops at a blank line or item 16",
                          default_factory=lambda: ["\n\n", "\n16", "16.", "16 ."])
    drop_truncated: str = doc("completion (Self-Instruct: throw a length-cut completion away whole) | "
                              "last_item (Alpaca: drop only its last item)", default="completion")
    min_words: int = doc("reject instructions of fewer words (Self-Instruct: 3 or fewer rejected -> 4)", default=4)
    max_words: int = doc("reject instructions of more words (Self-Instruct: 150)", default=150)
    blacklist: list[str] = doc("reject instructions containing these words (word boundary, any case)",
                               default_factory=lambda: list(SELF_INSTRUCT_BLACKLIST))
    forbidden_prefixes: list[str] = doc("reject instructions starting with these", default_factory=lambda: ["Write a program"])
    rouge_threshold: float = doc("reject when max ROUGE-L F vs the pool is above this (Self-Instruct: 0.7)",
                                 default=0.7)
    top_k_similar: int = doc("most similar pool instructions stored on each kept record (Self-Instruct: 10)",
                             default=10)
    mean_similarity: bool = doc("store the exact mean ROUGE-L vs the whole pool on kept records, like the "
                                "original's avg_similarity_score (one LCS per pool entry per kept record)",
                                default=True)
    max_batches: int = doc("give up after this many teacher calls without reaching num (0 = 50*num/batch)",
                           default=0)
    response_max_new_tokens: int = doc("magpie / evol: token budget of the answer to each new instruction "
                                       "(greedy)", default=1024)
    rounds: int = doc("evol: rounds of evolution over the seed pool (WizardLM: M=4)", default=4)
    evol_operations: list[str] = doc("evol: operations drawn uniformly per instruction and round (WizardLM: the "
                                     "five in-depth ones and in-breadth)", default_factory=lambda: list(EVOL_OPERATIONS))
    # cost and budget: not part of the run's identity, so the same command with a larger budget resumes
    price_input_per_m: float = doc("teacher price per million prompt tokens (for the estimate and the running "
                                   "cost; 0 = free / local)", default=0.0)
    price_output_per_m: float = doc("teacher price per million completion tokens", default=0.0)
    max_cost: float | None = doc("stop cleanly once this much has been spent on the run (same unit as the "
                                 "prices); None = no limit", default=None)
    max_tokens: int | None = doc("stop cleanly once prompt + completion tokens of the run reach this; None = no "
                                "limit", default=None)
    rps: float | None = doc("requests per second sent to an HTTP teacher; None = no limit", default=None)


PRESETS: dict[str, dict[str, Any]] = {
    # Wang et al. 2023, bootstrap_instructions.py
    "self-instruct": dict(num_prompt_instructions=8, num_machine_instructions=2, temperature=0.7, top_p=0.5,
                          presence_penalty=2.0, max_new_tokens=1024, stop=["\n\n", "\n16", "16.", "16 ."],
                          drop_truncated="completion", blacklist=list(SELF_INSTRUCT_BLACKLIST),
                          rouge_threshold=0.7, template=None),
    # Taori et al. 2023, generate_instruction.py: 3 seed demonstrations, 20 triples per completion
    "alpaca": dict(num_prompt_instructions=3, num_machine_instructions=0, temperature=1.0, top_p=1.0,
                   presence_penalty=0.0, max_new_tokens=3072, stop=["\n20", "20.", "20 ."],
                   drop_truncated="last_item", blacklist=list(ALPACA_BLACKLIST), rouge_threshold=0.7,
                   template=None),
    # Xu et al. 2024, "Magpie: Alignment Data Synthesis from Scratch by Prompting Aligned LLMs with Nothing":
    # no seeds; the pre-query template alone, sampled at temperature 1 / top_p 1 (the paper's instruction
    # sampling); the query ends at the end-of-turn token (stops for ChatML and Llama-3 templates)
    "magpie": dict(temperature=1.0, top_p=1.0, presence_penalty=0.0, max_new_tokens=512,
                   stop=["<|im_end|>", "<|im_start|>", "<|eot_id|>", "<|start_header_id|>"],
                   drop_truncated="completion", blacklist=list(SELF_INSTRUCT_BLACKLIST), rouge_threshold=0.7,
                   template=None),
    # Xu et al., ICLR 2024, "WizardLM: Empowering Large Language Models to Follow Complex Instructions": one
    # operation per instruction and round, M=4 rounds, the elimination step; sampling is ours (temperature 1)
    "evol": dict(temperature=1.0, top_p=1.0, presence_penalty=0.0, max_new_tokens=512, stop=[],
                 drop_truncated="completion", blacklist=list(SELF_INSTRUCT_BLACKLIST), rouge_threshold=0.7,
                 rounds=4, template=None),
}
DEFAULT_TEMPLATES = {"self-instruct": "self_instruct.completion", "alpaca": "alpaca.completion",
                     # ChatML with SmolLM2's default system turn: what the embedded model's chat template renders
                     "magpie": "magpie_smollm2.completion",
                     "evol": "evol_depth.chat"}


def field_docs(cls) -> dict[str, str]:
    return {f.name: f.metadata.get("doc", "") for f in fields(cls)}


def parse_yaml(path: str | Path, label: str | None = None) -> tuple[Any, str]:
    """(data, text) of a YAML file, read strictly: UTF-8, no key given twice in one mapping (PyYAML would keep
    the last silently), no special characters. Every error is a ConfigError naming `label` (default: the path)
    and the line where YAML gives one."""
    import yaml
    from .records import RecordError, utf8_text
    p = Path(path)
    label = label or str(p)
    try:
        text = utf8_text(p.read_bytes(), label)
    except RecordError as e:
        raise ConfigError(str(e)) from None
    except OSError as e:
        raise ConfigError(f"{label}: cannot read: {e.strerror or e}") from None
    loader = None
    try:
        loader = _unique_key_loader()(text)  # the reader checks for special characters here
        return loader.get_single_data(), text
    except _DuplicateKey as e:
        raise ConfigError(f"{label}:{e.line}: duplicate key '{e.key}' (first at line {e.first}); "
                          "keep one of them") from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise ConfigError(f"{label}:{line}: invalid YAML (character #x{e.character:04x}: {e.reason})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{label}:{mark.line + 1}" if mark else label
        raise ConfigError(f"{where}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    except RecursionError:
        raise ConfigError(f"{label}: invalid YAML (nested too deeply)") from None
    finally:
        if loader is not None:
            loader.dispose()


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int):
        self.key, self.line, self.first = key, line, first


_LOADER: Any = None


def _unique_key_loader():
    """A yaml.SafeLoader raising _DuplicateKey on a key given twice in one mapping (merge keys `<<:` aside:
    overriding a merged key is what they are for). Built on first use: yaml loads lazily."""
    global _LOADER
    if _LOADER is None:
        import yaml

        class UniqueKeyLoader(yaml.SafeLoader):
            def construct_mapping(self, node, deep=False):
                if isinstance(node, yaml.MappingNode):
                    seen: dict[Any, int] = {}
                    for key_node, _ in node.value:
                        if key_node.tag == "tag:yaml.org,2002:merge":
                            continue
                        key = self.construct_object(key_node, deep=True)
                        line = key_node.start_mark.line + 1
                        try:
                            if key in seen:
                                raise _DuplicateKey(key, line, seen[key])
                            seen[key] = line
                        except TypeError:
                            continue  # an unhashable key: the base class reports it
                return super().construct_mapping(node, deep)

        _LOADER = UniqueKeyLoader
    return _LOADER


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A `--config` file's option: value mapping (an empty file sets no option)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"--config {p}: no such file")
    if p.is_dir():
        raise ConfigError(f"--config {p}: is a folder, not a YAML file")
    data, _ = parse_yaml(p)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of option: value at the top level, got a "
                          f"{type(data).__name__}")
    return data


def build(cls, sources: list[tuple[str, dict[str, Any]]]):
    """Merge (label, values) sources in order into `cls`; unknown keys and wrong types name their source."""
    names = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for label, src in sources:
        for k, v in src.items():
            if v is None and label.startswith("flag"):
                continue
            if not isinstance(k, str):
                raise ConfigError(f"{label}: option names must be strings, got {k!r}")
            key = k.replace("-", "_")
            if key not in names:
                raise ConfigError(f"{label}: unknown option '{k}'. Known: {', '.join(sorted(names))}")
            values[key] = v
            origin[key] = label
    cfg = cls(**values)
    for f in fields(cls):
        v = getattr(cfg, f.name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore
        problem = _type_problem(v, default, f.type)
        if problem:
            where = f"{origin[f.name]}: " if f.name in origin else ""
            raise ConfigError(f"{where}option '{f.name}' must be {problem}, got {v!r}")
    return cfg


# annotations checked beyond the default's type (`from __future__ import annotations` makes them strings)
_OPTIONAL = {"str | None": str, "int | None": int, "float | None": float, "bool | None": bool}


def _type_problem(v, default, annotation) -> str | None:
    """What `v` must be when it does not fit its field; None when it fits."""
    if annotation in _OPTIONAL:
        kind = _OPTIONAL[annotation]
        return None if v is None or _type_ok(v, kind()) else f"{kind.__name__} or null"
    if default is None or v is None:
        return None
    if not _type_ok(v, default):
        return type(default).__name__
    if annotation == "list[str]" and not all(isinstance(x, str) for x in v):
        return "a list of strings"
    return None


def _type_ok(v, default) -> bool:
    if isinstance(default, bool):
        return isinstance(v, bool)
    if isinstance(default, float):
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if isinstance(default, int):
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, type(default))


def generation_config(flags: dict[str, Any], config_file: str | None = None) -> GenerationConfig:
    """Resolve a GenerationConfig: defaults < preset < YAML < flags, then validate."""
    file_values = load_yaml(config_file) if config_file else {}
    preset = flags.get("preset") or file_values.get("preset") or "self-instruct"
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset}: unknown; choose one of {', '.join(PRESETS)}")
    cfg = build(GenerationConfig, [("preset " + preset, dict(PRESETS[preset], preset=preset)),
                                   (f"--config {config_file}", file_values), ("flags", flags)])
    if cfg.template is None:
        cfg.template = DEFAULT_TEMPLATES[preset]
    validate_generation(cfg)
    return cfg


def validate_generation(c: GenerationConfig) -> None:
    from .generator.teachers import refuse_secrets
    refuse_secrets(c.teacher)  # before anything prints or writes the spec
    checks = [
        (c.num >= 1, "--num must be at least 1"),
        (c.batch_size >= 1, "--batch-size must be at least 1"),
        (0 <= c.num_machine_instructions <= c.num_prompt_instructions,
         "num_machine_instructions must be between 0 and num_prompt_instructions"),
        (c.num_prompt_instructions >= 1, "num_prompt_instructions must be at least 1"),
        (c.temperature >= 0, "temperature must be >= 0"),
        (0 < c.top_p <= 1, "top_p must be in (0, 1]"),
        (c.max_new_tokens >= 1, "max_new_tokens must be at least 1"),
        (c.drop_truncated in ("completion", "last_item"), "drop_truncated must be 'completion' or 'last_item'"),
        (0 < c.rouge_threshold <= 1, "rouge_threshold must be in (0, 1]"),
        (c.min_words <= c.max_words, "min_words must be <= max_words"),
        (c.response_max_new_tokens >= 1, "response_max_new_tokens must be at least 1"),
        (c.rounds >= 1, "rounds must be at least 1"),
        (bool(c.evol_operations) and all(o in EVOL_OPERATIONS for o in c.evol_operations),
         f"evol_operations must be a non-empty list of {', '.join(EVOL_OPERATIONS)}"),
    ] + budget_checks(c)
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


def budget_checks(c) -> list[tuple[bool, str]]:
    """(ok, message) checks of the BUDGET_FIELDS, shared by every config that has them."""
    return [
        (c.price_input_per_m >= 0 and c.price_output_per_m >= 0, "prices must be >= 0"),
        (c.max_cost is None or c.max_cost > 0, "--max-cost must be > 0"),
        (c.max_tokens is None or c.max_tokens >= 1, "--max-tokens must be at least 1"),
        (c.rps is None or c.rps > 0, "--rps must be > 0"),
        (c.rps is None or c.teacher.startswith("openai:"), "--rps applies to HTTP teachers (openai:URL@MODEL)"),
    ]


def budget_spent(c, prompt_tokens: int, completion_tokens: int) -> str | None:
    """Why a run with these token counts has spent the budget of config `c`, or None."""
    cost = (prompt_tokens * c.price_input_per_m + completion_tokens * c.price_output_per_m) / 1e6
    if c.max_cost is not None and cost >= c.max_cost:
        return f"cost {cost:.6g} reached --max-cost {c.max_cost:g}"
    if c.max_tokens is not None and prompt_tokens + completion_tokens >= c.max_tokens:
        return f"{prompt_tokens + completion_tokens} tokens reached --max-tokens {c.max_tokens}"
    return None


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def run_identity(cfg) -> dict[str, Any]:
    """The config a run folder is identified by: everything but the budget and price options, so a run stopped
    by --max-cost / --max-tokens resumes under the same command with a larger budget."""
    return {k: v for k, v in to_dict(cfg).items() if k not in BUDGET_FIELDS}
