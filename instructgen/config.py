"""Typed configs with a doc per field, loaded from presets, YAML and flags, validated in one place.

Precedence: dataclass defaults < preset < YAML file (--config) < command-line flags < `--set key=value`. The
flags are generated from the dataclass fields (cli.add_config_flags); `--set` reaches every field, dotted for
nested ones (a curate filter entry's options by its name, a `gen run` stage's options by the stage). The
resolved values are written into the run folder's config.json, so a run shows exactly which constants it used.

(Over 400 lines on purpose: the generation config, the YAML reader, the typed merge and the `--set` overrides
share one notion of an option and its type, and read best together.)
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
# teacher_options that say how requests reach the teacher (spread, retried, timed out), not what it answers: also
# left out of the identity, so an interrupted run resumes with another cooldown or more concurrency
TRANSPORT_OPTIONS = ("balance", "cooldown_s", "max_concurrency", "timeout_s", "max_attempts", "backoff_s",
                     "max_backoff_s")
TEACHER_OPTIONS_DOC = ("backend keywords, checked against the backend before anything loads. transformers: "
                       "{device: cuda, dtype: bfloat16}; openai: {balance: round_robin|least_loaded, cooldown_s, "
                       "max_concurrency (per endpoint)}; vllm: {tensor_parallel_size, pipeline_parallel_size, "
                       "distributed_executor_backend} or other vllm.LLM / EngineArgs fields")


@dataclass
class GenerationConfig:
    """`gen instructions`: the Self-Instruct bootstrap loop (or Alpaca's one pass)."""

    num: int = doc("instructions to keep (the run stops once this many passed every filter)", default=100)
    preset: str = doc("self-instruct | alpaca: the published recipe whose constants are the defaults",
                      default="self-instruct")
    seeds: str | None = doc("seed file (Self-Instruct JSONL, our records or Alpaca JSON); None = packaged seeds",
                            default=None)
    teacher: str = doc("teacher spec: transformers:MODEL | vllm:MODEL | openai:URL@MODEL | "
                       "openai:URL,URL@MODEL (several endpoints of one model)", default="smollm2-135m")
    teacher_options: dict = doc(TEACHER_OPTIONS_DOC, default_factory=dict)
    template: str | None = doc("prompt template name or file; None = the preset's", default=None)
    batch_size: int = doc("prompts per teacher call (the original sent 5 per request)", default=16)
    pool_lag: int = doc("a batch's prompts show machine instructions from the pool as it was this many batches "
                        "before the previous one (0: after the previous batch, as the original loop; 1 lets a "
                        "streaming teacher start a batch while the previous one finishes)", default=1)
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
    missing = [f.name for f in fields(cls) if f.name not in values and _no_default(f)]
    if missing:
        raise ConfigError(f"option '{missing[0]}' is required")
    cfg = cls(**values)
    for f in fields(cls):
        v = getattr(cfg, f.name)
        problem = _type_problem(v, _default(f), f.type)
        if problem:
            where = f"{origin[f.name]}: " if f.name in origin else ""
            raise ConfigError(f"{where}option '{f.name}' must be {problem}, got {v!r}")
    return cfg


def _no_default(f) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore


def _default(f) -> Any:
    """A field's default value (None for a required field)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    return None if f.default_factory is dataclasses.MISSING else f.default_factory()  # type: ignore


# annotations checked beyond the default's type (`from __future__ import annotations` makes them strings)
_OPTIONAL = {"str | None": str, "int | None": int, "float | None": float, "bool | None": bool}


def _type_problem(v, default, annotation) -> str | None:
    """What `v` must be when it does not fit its field; None when it fits."""
    if annotation in _OPTIONAL:
        kind = _OPTIONAL[annotation]
        return None if v is None or _type_ok(v, kind()) else f"{kind.__name__} or null"
    if annotation == "str | list[str]":
        ok = isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
        return None if ok else "a string or a list of strings"
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


def generation_config(flags: dict[str, Any], config_file: str | None = None,
                      sets: list[tuple[str, Any]] = (), label: str = "flags") -> GenerationConfig:
    """Resolve a GenerationConfig: defaults < preset < YAML < flags < --set, then validate. `label` names the
    flags' source in errors (`gen run` passes a stage section's name)."""
    file_values = load_yaml(config_file) if config_file else {}
    set_vals = set_values(GenerationConfig, sets)
    preset = set_vals.get("preset") or flags.get("preset") or file_values.get("preset") or "self-instruct"
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset}: unknown; choose one of {', '.join(PRESETS)}")
    cfg = build(GenerationConfig, [("preset " + preset, dict(PRESETS[preset], preset=preset)),
                                   (f"--config {config_file}", file_values), (label, flags),
                                   ("--set", set_vals)])
    if cfg.template is None:
        cfg.template = DEFAULT_TEMPLATES[preset]
    with blaming(sets):
        validate_generation(cfg)
    return cfg


def validate_generation(c: GenerationConfig) -> None:
    from .generator.teachers import refuse_secrets
    refuse_secrets(c.teacher)  # before anything prints or writes the spec
    checks = [
        (c.num >= 1, "--num must be at least 1"),
        (c.batch_size >= 1, "--batch-size must be at least 1"),
        (c.pool_lag >= 0, "--pool-lag must be at least 0"),
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
    """The config a run folder is identified by: everything but the budget and price options and the teacher's
    transport options (TRANSPORT_OPTIONS), so a run stopped by --max-cost / --max-tokens resumes under the same
    command with a larger budget, and an interrupted one with another cooldown_s or max_concurrency. The teacher
    spec (model, endpoint list) and every option that changes the answers stay in it."""
    return identity_values(to_dict(cfg))


def identity_values(values: dict[str, Any]) -> dict[str, Any]:
    """`values` (a stage's options) without BUDGET_FIELDS, and its teacher_options without TRANSPORT_OPTIONS."""
    out = {k: v for k, v in values.items() if k not in BUDGET_FIELDS}
    if isinstance(out.get("teacher_options"), dict):
        out["teacher_options"] = {k: v for k, v in out["teacher_options"].items() if k not in TRANSPORT_OPTIONS}
    return out


# ------------------------------------------------------------------------------ --set KEY=VALUE, any option

SET_HELP = ("set any option, VALUE read as YAML (16, 0.8, true, null, [q_proj, v_proj]); repeatable. "
            "Precedence: defaults < preset < --config < flags < --set")


def parse_sets(items: list[str] | None) -> list[tuple[str, Any]]:
    """`--set KEY=VALUE` strings as (key, value) pairs, each value read as one YAML scalar, list or mapping."""
    import yaml
    out = []
    for item in items or []:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"--set {item}: expected KEY=VALUE (e.g. --set lora_r=16)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: invalid value {raw!r} ({getattr(e, 'problem', None) or e})") from None
        out.append((key, value))
    return out


def unknown_key(label: str, name: str, known, what: str = "option", of: str = "") -> ConfigError:
    """The one-line error of an unknown option `name` given by `label` (`--set KEY`, a file, a section): its
    close matches first, then every known one."""
    import difflib
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.7)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return ConfigError(f"{label}: unknown {what} '{name}'{of}{hint}. Known: {', '.join(known)}")


def set_value(cls, key: str, name: str, value: Any) -> Any:
    """`value` checked against field `name` of `cls` (the error names `--set key`); YAML's `1e-4` (a string to
    YAML 1.1) is read as a float for a float option."""
    by_name = {f.name: f for f in fields(cls)}
    f = by_name.get(name.replace("-", "_"))
    if f is None:
        raise unknown_key(f"--set {key}", name, by_name)
    default = _default(f)
    if isinstance(value, str) and (isinstance(default, float) or f.type == "float | None"):
        try:
            value = float(value)
        except ValueError:
            pass
    problem = _type_problem(value, default, f.type)
    if problem:
        raise ConfigError(f"--set {key}: option '{f.name}' must be {problem}, got {value!r}")
    return value


def set_values(cls, sets: list[tuple[str, Any]]) -> dict[str, Any]:
    """{field: value} of plain `--set` keys on `cls` (no dots), each checked; the last one of a key wins."""
    out = {}
    for key, value in sets:
        out[key.replace("-", "_")] = set_value(cls, key, key, value)
    return out


class blaming:
    """Re-raise a validation ConfigError about an option that a `--set` gave as `--set KEY: message`."""

    def __init__(self, sets: list[tuple[str, Any]]):
        self.keys = [k for k, _ in sets]

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if kind is None or not issubclass(kind, ConfigError) or str(e).startswith("--set "):
            return False
        import re
        msg = str(e)
        for key in reversed(self.keys):
            if msg.startswith(key + ":"):
                raise ConfigError(f"--set {msg}") from None
            name = key.rsplit(".", 1)[-1].replace("-", "_")
            if re.search(rf"(?<![\w-])(--)?({re.escape(name)}|{re.escape(name.replace('_', '-'))})(?![\w-])", msg):
                raise ConfigError(f"--set {key}: {msg}") from None
        return False


def resolve(cls, flags: dict[str, Any], config_file: str | None, sets: list[tuple[str, Any]], validate,
            floats=None):
    """A typed config: defaults < YAML (--config) < flags < --set, then `validate(cfg)`. `floats` fixes up the
    YAML file's values first (TrainConfig reads `2e-4` as a float)."""
    file_values = load_yaml(config_file) if config_file else {}
    if floats is not None:
        file_values = floats(file_values)
    cfg = build(cls, [(f"--config {config_file}", file_values), ("flags", flags), ("--set", set_values(cls, sets))])
    with blaming(sets):
        validate(cfg)
    return cfg


# ------------------------------------------------------------------------ gen curate: the chain and how it runs

EXECUTORS = ("local", "ray")


@dataclass
class CurateOptions:
    """`gen curate`: how the chain runs (not what it decides: same kept and rejected sets whatever these are)."""

    executor: str = doc("local (processes on this machine) | ray (a Ray cluster: --ray-address, or a local one)",
                        default="local")
    workers: int = doc("worker processes of the local executor (ray: tasks at once)", default=1)
    ray_address: str | None = doc("address of a running Ray cluster (ray://HOST:10001, HOST:6379 or auto); "
                                  "None = start a local Ray", default=None)
    shard_size: int = doc("records per shard: the unit that is read, written, marked complete and redone",
                          default=10_000)
    languagetool_url: str | None = doc("LanguageTool server for the grammar filter (default $LANGUAGETOOL_URL)",
                                       default=None)
    cache_dir: str | None = doc("signature/embedding cache folder (default OUT/.cache)", default=None)


def validate_curate_options(c: CurateOptions) -> None:
    checks = [
        (c.executor in EXECUTORS, f"--executor {c.executor}: choose one of {', '.join(EXECUTORS)}"),
        (c.workers >= 1, "--workers must be at least 1"),
        (c.shard_size >= 1, "--shard-size must be at least 1"),
        (c.ray_address is None or c.executor == "ray", "--ray-address applies to --executor ray only"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


def curate_overrides(chain, overrides: list[tuple[str, str, str, Any]]):
    """The chain `chain` (a CurateConfig) with options of its entries replaced: each override is (label, entry
    name, option, value), e.g. ("--set minhash.threshold", "minhash", "threshold", 0.8); `enabled` switches an
    entry. Every override is checked at once: an unknown entry or option, a wrong type or a value the filter
    refuses names its label."""
    from .filters.chain import FILTERS, CurateConfig, FilterSpec, build_filter
    if not overrides:
        return chain
    specs = {s.name: s for s in chain.filters}
    changed: dict[str, FilterSpec] = {}
    for label, name, option, value in overrides:
        if name not in specs:
            raise unknown_key(label, name, specs, what="filter entry")
        spec = changed.get(name) or dataclasses.replace(specs[name], params=dataclasses.replace(specs[name].params))
        option = option.replace("-", "_")
        if option == "enabled":
            if not isinstance(value, bool):
                raise ConfigError(f"{label}: 'enabled' must be true or false, got {value!r}")
            spec.enabled = value
        elif option in ("filter", "name"):
            raise ConfigError(f"{label}: an entry's '{option}' cannot be set; write a --config chain instead")
        else:
            params = FILTERS[spec.filter].Params
            if option not in {f.name for f in fields(params)}:
                raise unknown_key(label, option, ["enabled"] + [f.name for f in fields(params)],
                                  of=f" of filter {spec.filter}")
            spec.params = build(params, [(spec.where, dataclasses.asdict(spec.params)), (label, {option: value})])
        spec.where = label
        changed[name] = spec
    for spec in changed.values():
        build_filter(spec)  # a value the filter refuses fails here, naming the --set
    return CurateConfig([changed.get(s.name, s) for s in chain.filters],
                        f"{chain.source} with {', '.join(o[0] for o in overrides)}")


def curate_sets(sets: list[tuple[str, Any]]) -> tuple[list[tuple[str, str, str, Any]], dict[str, Any]]:
    """gen curate's `--set`s split into filter-entry overrides (`NAME.OPTION`) and CurateOptions values."""
    entries, plain = [], []
    for key, value in sets:
        if "." in key:
            name, option = key.split(".", 1)
            entries.append((f"--set {key}", name, option, value))
        else:
            plain.append((key, value))
    return entries, set_values(CurateOptions, plain)
