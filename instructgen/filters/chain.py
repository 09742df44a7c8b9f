"""The `gen curate` filter chain: the FILTERS registry, the typed config (a YAML list of filters in order with
their parameters), and running the chain with a progress bar and stats per filter.

A config is a mapping with one key, `filters`: a list of entries `{filter: NAME, name: LABEL, enabled: BOOL,
...the filter's Params}`. `--config FILE` replaces the packaged default chain (`instructgen/data/curate.yaml`,
shown by `gen curate --print-config`) as a whole: the order of the list is the order of the chain.
Errors name the file, the line of the entry, the entry and the option.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..config import ConfigError, build, parse_yaml
from ..records import Task
from .base import Filter, FilterStats, doc, run_filter
from .embedding import EmbeddingDedupFilter
from .exact import ExactDedupFilter
from .grammar import GrammarFilter
from .minhash import MinHashFilter
from .readability import ReadabilityFilter
from .rouge import RougeNoveltyFilter, RougeParams
from .diversity import DiversityFilter
from .ifd import IFDFilter
from .llm_judge import LLMJudgeFilter
from .rules import (BlacklistFilter, BlacklistParams, FirstCharFilter, FirstCharParams, LengthFilter, LengthParams,
                    PrefixFilter, PrefixParams)

# name -> filter class; every class has a docstring, a `Params` dataclass with a doc per field, builds from its
# default Params alone and declares no option anywhere else (tests/filters/test_chain.py checks all of it).
FILTERS: dict[str, type[Filter]] = {
    "length": LengthFilter,
    "blacklist": BlacklistFilter,
    "first_char": FirstCharFilter,
    "prefix": PrefixFilter,
    "exact_dedup": ExactDedupFilter,
    "readability": ReadabilityFilter,
    "grammar": GrammarFilter,
    "minhash": MinHashFilter,
    "rouge_l": RougeNoveltyFilter,
    "embedding": EmbeddingDedupFilter,
    "ifd": IFDFilter,
    "llm_judge": LLMJudgeFilter,
    "diversity": DiversityFilter,
}

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "data" / "curate.yaml"
COMMON_KEYS = ("filter", "name", "enabled")


@dataclass
class FilterSpec:
    """One entry of the chain."""

    filter: str = doc("registry name: " + ", ".join(FILTERS))
    name: str = doc("label in the stats and in each dropped record's verdict.filter (default: the filter name; "
                    "needed when one filter appears twice)")
    enabled: bool = doc("false keeps the entry in the config and the funnel but does not run it", default=True)
    params: Any = doc("the filter's own options (its Params dataclass)", default=None)
    where: str = doc("file:line of the entry, for messages", default="")

    def to_dict(self) -> dict:
        return {"filter": self.filter, "name": self.name, "enabled": self.enabled,
                **dataclasses.asdict(self.params)}


@dataclass
class CurateConfig:
    """`gen curate`: the filters to run, in order."""

    filters: list[FilterSpec] = doc("the chain, in order", default_factory=list)
    source: str = doc("where the config came from (a file, or 'the packaged default')", default="")

    def to_dict(self) -> dict:
        return {"filters": [s.to_dict() for s in self.filters]}


def _entry_lines(text: str) -> list[int]:
    """1-based line of each `filters` entry in a YAML text (empty when the shape is unexpected)."""
    import yaml
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if not isinstance(node, yaml.MappingNode):
        return []
    for k, v in node.value:
        if getattr(k, "value", None) == "filters" and isinstance(v, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in v.value]
    return []


def parse_config(data: Any, source: str, lines: Sequence[int] = ()) -> CurateConfig:
    """Validate a config mapping into a CurateConfig; every error names `source`, the entry and the option."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'filters' list")
    unknown = [k for k in data if k != "filters"]
    if unknown:
        raise ConfigError(f"{source}: unknown option '{unknown[0]}'. Known: filters")
    entries = data.get("filters")
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: 'filters' must be a list of {{filter: NAME, ...options}}")
    specs, seen = [], set()
    for i, entry in enumerate(entries):
        where = f"{source}:{lines[i]}" if i < len(lines) else source
        label = f"{where}: filters[{i}]"
        if not isinstance(entry, dict) or "filter" not in entry:
            raise ConfigError(f"{label}: expected a mapping with 'filter: NAME' (one of {', '.join(FILTERS)})")
        kind = entry["filter"]
        if not isinstance(kind, str) or kind not in FILTERS:
            raise ConfigError(f"{label}: unknown filter '{kind}'. Known: {', '.join(FILTERS)}")
        label = f"{label} ({kind})"
        name = entry.get("name", kind)
        enabled = entry.get("enabled", True)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{label}: 'name' must be a non-empty string")
        if not isinstance(enabled, bool):
            raise ConfigError(f"{label}: 'enabled' must be true or false")
        if name in seen:
            raise ConfigError(f"{label}: a second entry named '{name}'; give one of them another `name:`")
        seen.add(name)
        options = {k: v for k, v in entry.items() if k not in COMMON_KEYS}
        try:
            params = build(FILTERS[kind].Params, [(label, options)])
        except ConfigError as e:
            msg = str(e)
            raise ConfigError(msg if msg.startswith(label) else f"{label}: {msg}") from None
        except TypeError as e:
            raise ConfigError(f"{label}: {e}") from None
        specs.append(FilterSpec(kind, name, enabled, params, where))
    return CurateConfig(specs, source)


def load_config(config: str | Path | dict | CurateConfig | None = None) -> CurateConfig:
    """A CurateConfig from a YAML file, a dict, or the packaged default (None)."""
    if isinstance(config, CurateConfig):
        return config
    if isinstance(config, dict):
        return parse_config(config, "config")
    path = Path(config) if config is not None else DEFAULT_CONFIG
    label = str(path) if config is not None else f"the packaged default ({path})"
    if not path.is_file():
        raise ConfigError(f"--config {path}: " + ("is a folder, not a YAML file" if path.is_dir() else "no such file"))
    data, text = parse_yaml(path)  # UTF-8 and no duplicate key, or a ConfigError naming file:line
    return parse_config(data or {}, label, _entry_lines(text))


def build_filter(spec: FilterSpec) -> Filter:
    """Construct one filter from its Params alone; a bad value names the entry."""
    try:
        f = FILTERS[spec.filter](spec.params)
    except ValueError as e:
        raise ConfigError(f"{spec.where}: {spec.filter}: {e}") from None
    f.name = spec.name  # the label in verdicts, stats and meta["rank"]
    return f


def check_input_fields(pairs: Sequence[tuple[FilterSpec, Filter]], tasks: Sequence[Task], source: str) -> None:
    """A filter reading input/output when no record has instances names the field and the filter.

    Per-field filters need each field they list; filters reading the fields joined need at least one."""
    if not tasks or any(t.instances for t in tasks):
        return
    for spec, f in pairs:
        if not spec.enabled:
            continue
        io = [x for x in f.fields if x != "instruction"]
        if io and (f.per_field or len(io) == len(f.fields)):
            raise ConfigError(
                f"{spec.where}: filter '{spec.name}' reads field '{io[0]}', but no record in {source} has an "
                f"input or output (its records carry only an instruction); remove '{io[0]}' from that filter's "
                f"fields, or curate a file with instances")


def check_score_sources(pairs: Sequence[tuple[FilterSpec, Filter]], tasks: Sequence[Task]) -> None:
    """A diversity step walking by a score that no earlier enabled filter sets and no input record carries would
    walk in input order: refused, naming the entry, the option and the scores it could use."""
    carried = {k for t in tasks for k in t.scores}
    earlier: set[str] = set()
    for spec, f in pairs:
        if f is None:
            continue
        walks = f.keys if spec.filter == "diversity" else []
        missing = [k for k in walks if k not in earlier | carried]
        if missing:
            have = ", ".join(sorted(earlier | carried)) or "none"
            where = f"{spec.where}: " if spec.where else ""
            raise ConfigError(f"{where}{spec.name}: score: '{missing[0]}' is set by no earlier filter in the "
                              f"chain and carried by no input record; put its filter before this entry (scores "
                              f"available here: {have})")
        earlier |= f.score_keys()


def filter_stats(spec: FilterSpec, f: Filter | None, st: FilterStats) -> dict:
    """The stats entry of one filter (curate's stats.json and gen instructions' summary.json "filters"):
    FilterStats.to_dict() plus its registry name, its params (the Params, whole) and run details."""
    d = st.to_dict()
    d["filter"] = spec.filter
    d["params"] = dataclasses.asdict(spec.params)
    details = getattr(f, "details", None)
    if details:
        d["details"] = dict(details)
    return d


def run_step(spec: FilterSpec, f: Filter | None, tasks: list[Task], quiet: bool = False) -> tuple[list[Task], dict]:
    """Run one chain entry (a disabled one only counts its input) with a progress bar; returns its stats."""
    if not spec.enabled or f is None:
        st = FilterStats(spec.name, records_in=sum(t.kept for t in tasks), note="disabled in config")
        return tasks, filter_stats(spec, None, st)
    from ..progress import bar
    pbar = bar(sum(t.kept for t in tasks), spec.name, disable=True if quiet else None)
    f.progress = pbar
    try:
        tasks, st = run_filter(f, tasks)
    finally:
        pbar.close()
        f.progress = None
        getattr(f, "close", lambda: None)()  # a judge or scorer model is freed once its step is done
    return tasks, filter_stats(spec, f, st)


# --- gen instructions: the same filters, one record at a time --------------------------------------------------

def instruction_specs(cfg) -> list[FilterSpec]:
    """`gen instructions`' filters as chain entries, from a GenerationConfig: the same registry entries and
    Params `gen curate` builds from YAML (the rules, then ROUGE-L novelty against seeds + kept)."""
    where = f"--preset {cfg.preset}"
    return [FilterSpec("length", "length", True, LengthParams(min_words=cfg.min_words, max_words=cfg.max_words), where),
            FilterSpec("blacklist", "blacklist", True, BlacklistParams(words=list(cfg.blacklist)), where),
            FilterSpec("first_char", "first_char", True, FirstCharParams(), where),
            FilterSpec("prefix", "prefix", True, PrefixParams(prefixes=list(cfg.forbidden_prefixes)), where),
            FilterSpec("rouge_l", "rouge_l", True, RougeParams(threshold=cfg.rouge_threshold, top_k=cfg.top_k_similar,
                                                               mean_similarity=cfg.mean_similarity), where)]


class OnlineChain:
    """Filters run on one record at a time, in order (`gen instructions` decides each candidate as it is parsed,
    against a novelty pool that grows with every kept one): the rule filters, then the novelty filter last.
    A recipe may run other checks between the two (`decide_rules`, then its own, then `decide_novelty`)."""

    def __init__(self, pairs: Sequence[tuple[FilterSpec, Filter]]):
        self.pairs = list(pairs)
        self.seconds = [0.0] * len(self.pairs)  # this session only: a replayed record was timed before

    @property
    def rules(self) -> list[Filter]:
        return [f for _, f in self.pairs[:-1]]

    @property
    def novelty(self) -> RougeNoveltyFilter:
        return self.pairs[-1][1]

    def _run(self, task: Task, ks: range) -> bool:
        for k in ks:
            t0 = time.perf_counter()
            ok = self.pairs[k][1].decide(task)
            self.seconds[k] += time.perf_counter() - t0
            if not ok:
                return False
        return True

    def decide_rules(self, task: Task) -> bool:
        """The rule filters on one record until one drops it; True when it passed them all."""
        return self._run(task, range(len(self.pairs) - 1))

    def decide_novelty(self, task: Task) -> bool:
        """The novelty check on one record; True when kept (it then joins the pool)."""
        return self._run(task, range(len(self.pairs) - 1, len(self.pairs)))

    def decide(self, task: Task) -> bool:
        """Every filter on one record, in order; True when kept."""
        return self.decide_rules(task) and self.decide_novelty(task)

    def replay(self, task: Task) -> None:
        """A kept record read back from the run's log (resume): it joins the novelty pool, undecided again."""
        self.novelty.index.add(task.id, task.instruction)

    def stats(self, records: Sequence[Task], upstream: Sequence[str] = ("parse",)) -> list[dict]:
        """Per-filter stats in curate's shape from the verdicts of every record the run logged: one dropped by
        filter k reached filters 0..k; one dropped by a check named in `upstream` (parsing) reached none; one
        dropped by any other check outside the chain (a recipe's own, between rules and novelty) reached the
        rules only."""
        names = [spec.name for spec, _ in self.pairs]
        at = {n: k for k, n in enumerate(names)}
        reached = [0] * len(names)
        dropped = [Counter() for _ in names]
        for t in records:
            if t.kept:
                last = len(names) - 1
            elif t.verdict.filter in at:
                last = at[t.verdict.filter]
                dropped[last][t.verdict.reason] += 1
            elif t.verdict.filter in upstream:
                continue
            else:
                last = len(names) - 2
            for k in range(last + 1):
                reached[k] += 1
        out = []
        for k, (spec, f) in enumerate(self.pairs):
            st = FilterStats(spec.name, records_in=reached[k], dropped=dropped[k], seconds=self.seconds[k],
                             note=getattr(f, "note", None))
            out.append(filter_stats(spec, f, st))
        return out


def instruction_chain(cfg, seeds: Sequence[Task]) -> OnlineChain:
    """`gen instructions`' chain for a GenerationConfig: rule filters, then ROUGE-L novelty whose pool starts
    with the seed instructions (their ids appear in duplicate_of)."""
    chain = OnlineChain([(spec, build_filter(spec)) for spec in instruction_specs(cfg)])
    chain.novelty.add_reference((s.id, s.instruction) for s in seeds)
    return chain
