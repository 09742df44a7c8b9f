"""The `gen curate` filter chain: the FILTERS registry, the typed config (a YAML list of filters in order with
their parameters), and running the chain with a progress bar and stats per filter.

A config is a mapping with one key, `filters`: a list of entries `{filter: NAME, name: LABEL, enabled: BOOL,
...the filter's Params}`. `--config FILE` replaces the packaged default chain (`instructgen/data/curate.yaml`,
shown by `gen curate --print-config`) as a whole: the order of the list is the order of the chain.
Errors name the file, the line of the entry, the entry and the option.
"""

from __future__ import annotations

import dataclasses
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
from .rouge import RougeNoveltyFilter
from .rules import BlacklistFilter, FirstCharFilter, LengthFilter, PrefixFilter

# name -> filter class; every class has a docstring, a `Params` dataclass with a doc per field, and builds from
# its default Params (tests/filters/test_chain.py checks all three).
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
    """Construct one filter; a bad value names the entry."""
    try:
        f = FILTERS[spec.filter].from_params(spec.params)
    except ValueError as e:
        raise ConfigError(f"{spec.where}: {spec.filter}: {e}") from None
    f.name = spec.name
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


def filter_stats(spec: FilterSpec, f: Filter | None, st: FilterStats) -> dict:
    """The stats.json entry of one filter: FilterStats.to_dict() plus its params and run details."""
    d = st.to_dict()
    d["filter"] = spec.filter
    d["params"] = f.params() if f is not None else dataclasses.asdict(spec.params)
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
    return tasks, filter_stats(spec, f, st)
