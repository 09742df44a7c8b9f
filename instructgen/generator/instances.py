"""`gen instances`: complete instructions with (input, output) instances - Self-Instruct stages 2-4 (Wang et al.
2023, "Self-Instruct: Aligning Language Models with Self-Generated Instructions"), resumable and batched.

1. Classification identification: a few-shot template of our own (`is_classification.completion`, ~30 labelled
   tasks), greedy, 3 tokens; an answer starting with "yes" (any case) means classification. Tasks that already
   carry `is_classification` (seeds) or a run with `--assume-classification yes|no` skip the call.
2. Instance generation, greedy, stopping at "Example N+1" or "Task:": output-first for classification tasks
   (a class label, then an input with that label), input-first otherwise (a task needing no input gets outputs
   directly).
3. Instance filters, every drop counted by reason and kept on the task in `meta["dropped_instances"]`.

Model I/O goes through pure functions (`parse_input_first`, `parse_output_first`, `parse_classification_answer`,
`filter_instances`); the teacher call is separate. A task that already has instances (seeds, Alpaca records) is
passed through unchanged without a model call.

(Over 400 lines on purpose: the pure parsers, the pure filters and the stage that uses them read best together.)
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..config import ConfigError, budget_checks, build, doc, load_yaml, run_identity
from ..progress import Progress, Rate, cost_of, table
from ..records import Instance, RecordError, Task, read_records, text_hash
from ..rundir import releases_locks
from ..stage import Lifecycle, Outcome, Resume, Stage, fingerprint
from ..templates import PromptTemplate, load_template
from .teachers import BudgetReached, Sampling, Teacher


@dataclass
class InstancesConfig:
    """`gen instances`: Self-Instruct's classification identification, instance generation and filters."""

    teacher: str = doc("teacher spec: transformers:MODEL | vllm:MODEL | openai:URL@MODEL | openai:URL,URL@MODEL "
                       "(several endpoints of one model)", default="smollm2-135m")
    teacher_options: dict = doc("backend keywords (see GenerationConfig.teacher_options)", default_factory=dict)
    batch_size: int = doc("tasks per teacher call (the original sent 5 per request)", default=16)
    assume_classification: str = doc("auto (ask the teacher for tasks whose is_classification is unset) | yes | "
                                     "no (set it on every such task without a call)", default="auto")
    max_instances: int = doc("instances kept per task, and the generation stops at 'Example N+1' "
                             "(Self-Instruct: 5)", default=5)
    max_new_tokens: int = doc("instance-generation token budget (Self-Instruct's script: 300, or 350 for a "
                              "batch without classification tasks, to fit davinci's context)", default=300)
    presence_penalty: float = doc("added to greedy instance generation (Self-Instruct's script: 1.5)", default=1.5)
    classification_max_new_tokens: int = doc("tokens for the Yes/No answer (Self-Instruct: 3)", default=3)
    classification_template: str = doc("few-shot classification-identification template",
                                       default="is_classification.completion")
    input_first_template: str = doc("instance template for non-classification tasks",
                                    default="instances_input_first.completion")
    output_first_template: str = doc("instance template for classification tasks (label first)",
                                     default="instances_output_first.completion")
    # cost and budget (see config.BUDGET_FIELDS): not part of the run's identity
    price_input_per_m: float = doc("teacher price per million prompt tokens (0 = free / local)", default=0.0)
    price_output_per_m: float = doc("teacher price per million completion tokens", default=0.0)
    max_cost: float | None = doc("stop cleanly once the run has cost this much; None = no limit", default=None)
    max_tokens: int | None = doc("stop cleanly once the run's prompt + completion tokens reach this", default=None)
    rps: float | None = doc("requests per second sent to an HTTP teacher; None = no limit", default=None)


def instances_config(flags: dict, config_file: str | None = None) -> InstancesConfig:
    """Resolve an InstancesConfig: defaults < YAML < flags, then validate."""
    file_values = load_yaml(config_file) if config_file else {}
    cfg = build(InstancesConfig, [(f"--config {config_file}", file_values), ("flags", flags)])
    validate_instances(cfg)
    return cfg


def validate_instances(c: InstancesConfig) -> None:
    from .teachers import refuse_secrets
    refuse_secrets(c.teacher)  # before anything prints or writes the spec
    checks = [
        (c.batch_size >= 1, "--batch-size must be at least 1"),
        (c.assume_classification in ("auto", "yes", "no"), "--assume-classification must be auto, yes or no"),
        (c.max_instances >= 1, "--max-instances must be at least 1"),
        (c.max_new_tokens >= 1, "--max-new-tokens must be at least 1"),
        (c.classification_max_new_tokens >= 1, "classification_max_new_tokens must be at least 1"),
        (c.presence_penalty >= 0, "presence_penalty must be >= 0"),
    ] + budget_checks(c)
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


# ------------------------------------------------------------------------------------------- pure parsing

def parse_classification_answer(text: str) -> bool | None:
    """True for an answer whose first word is "yes" (any case), False for "no", None for anything else
    (the stage then treats it as not classification, as the original did, and counts it as unclear)."""
    m = re.match(r"\W*([A-Za-z]+)", text)
    word = m.group(1).lower() if m else ""
    return True if word == "yes" else False if word == "no" else None


_NOINPUT = {"<noinput>", "<no input>", "<none>"}
_GEN_MARK = re.compile(r"(?im)^[ \t]*(?:(example)[ \t]*\d*[ \t]*[:.]?[ \t]*$|(input)[ \t]*\d*[ \t]*:|"
                       r"(output)[ \t]*\d*[ \t]*:)")
_CLF_MARK = re.compile(r"(?im)^[ \t]*(?:(class[ \t]+label|label)[ \t]*:|(input)[ \t]*:)")


def _clean(s: str | None) -> str:
    s = (s or "").strip()
    return "" if s.lower() in _NOINPUT else s


def parse_input_first(text: str) -> list[Instance]:
    """Parse an input-first completion into instances (pure).

    Blocks start at an "Example N" line, or at an "Input:" / "Output:" line when the current block already has
    that field, so numbered, unnumbered and run-together examples all parse. Text before the first marker belongs
    to the first block (the prompt ends inside "Example 1"). A block without an "Output:" line is an output given
    directly (a task that needs no input) unless it has an "Input:", in which case its output is empty (and the
    filters drop it). Blocks with no text at all are not instances."""
    blocks: list[dict] = []
    cur: dict = {"input": None, "output": None, "free": ""}
    marks = list(_GEN_MARK.finditer(text))
    cur["free"] = text[: marks[0].start()] if marks else text
    for i, m in enumerate(marks):
        body = text[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(text)]
        kind = "example" if m.group(1) else "input" if m.group(2) else "output"
        if kind == "example" or cur[kind] is not None or (kind == "input" and cur["output"] is not None):
            blocks.append(cur)
            cur = {"input": None, "output": None, "free": ""}
        if kind == "example":
            cur["free"] = body
        else:
            cur[kind] = body
    blocks.append(cur)
    out = []
    for b in blocks:
        if b["output"] is None and b["input"] is None:
            if b["free"].strip():
                out.append(Instance("", b["free"].strip()))
        else:
            out.append(Instance(_clean(b["input"]), (b["output"] or "").strip()))
    return out


def parse_output_first(text: str) -> list[Instance]:
    """Parse an output-first (classification) completion into instances (pure): each "Class label:" starts an
    instance whose output is the label's first line; its input is the "Input:" that follows, or else the rest of
    the label's lines. Text before the first marker is the first label (the prompt ends with "Class label:")."""
    marks = list(_CLF_MARK.finditer(text))
    pieces: list[tuple[str, str]] = [("label", text[: marks[0].start()] if marks else text)]
    for i, m in enumerate(marks):
        body = text[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(text)]
        pieces.append(("label" if m.group(1) else "input", body))
    out: list[Instance] = []
    cur: list | None = None  # [label, input or None]
    for kind, body in pieces:
        if kind == "label":
            if cur:
                out.append(_clf_instance(*cur))
            cur = [body, None] if body.strip() else None
        elif cur is not None and cur[1] is None:
            cur[1] = body
        elif body.strip():  # an input with no label of its own: an instance with an empty output (dropped)
            if cur:
                out.append(_clf_instance(*cur))
            cur = ["", body]
    if cur:
        out.append(_clf_instance(*cur))
    return out


def _clf_instance(label: str, inp: str | None) -> Instance:
    first, _, rest = label.strip().partition("\n")
    return Instance(_clean(inp if inp is not None else rest), first.strip())


# ------------------------------------------------------------------------------------------- pure filters

@dataclass
class InstanceVerdict:
    kept: list[Instance]
    dropped: list[tuple[Instance, str]] = field(default_factory=list)
    task_reason: str | None = None  # set when the whole task is dropped


def filter_instances(instances: Sequence[Instance], truncated: bool, max_instances: int = 5) -> InstanceVerdict:
    """Self-Instruct's instance filters, in the original's order, each drop with its reason (pure); every
    parsed instance ends up either kept or dropped with a reason:
    the last instance of a length-cut completion; input equals output; empty output; input or output ending
    with ":"; two instances with the same non-empty input and different outputs drop the whole task; exact
    duplicates; beyond `max_instances` (the first ones are kept; the original sampled at random)."""
    insts = [Instance(i.input.strip(), i.output.strip()) for i in instances]
    dropped: list[tuple[Instance, str]] = []
    if not insts:
        return InstanceVerdict([], [], "no_instances_parsed")
    if truncated:
        dropped.append((insts.pop(), "truncated"))
    valid = []
    for i in insts:
        reason = ("empty_output" if not i.output else "input_equals_output" if i.input == i.output
                  else "ends_with_colon" if i.input.endswith(":") or i.output.endswith(":") else None)
        if reason:
            dropped.append((i, reason))
        else:
            valid.append(i)
    outputs_by_input: dict[str, set[str]] = {}
    for i in valid:
        if i.input:
            outputs_by_input.setdefault(i.input, set()).add(i.output)
    if any(len(v) > 1 for v in outputs_by_input.values()):
        return InstanceVerdict([], dropped + [(i, "conflicting_outputs") for i in valid], "conflicting_outputs")
    kept, seen = [], set()
    for i in valid:
        key = (i.input, i.output)
        if key in seen:
            dropped.append((i, "duplicate"))
        elif len(kept) >= max_instances:
            dropped.append((i, "over_max_instances"))
        else:
            seen.add(key)
            kept.append(i)
    return InstanceVerdict(kept, dropped, None if kept else "no_valid_instances")


# ------------------------------------------------------------------------------------------- the stage

@dataclass
class _Templates:
    classification: PromptTemplate
    input_first: PromptTemplate
    output_first: PromptTemplate

    @classmethod
    def load(cls, cfg: InstancesConfig) -> "_Templates":
        return cls(load_template(cfg.classification_template), load_template(cfg.input_first_template),
                   load_template(cfg.output_first_template))

    def paths(self) -> list[Path]:
        return [self.classification.path, self.input_first.path, self.output_first.path]


def _input_tasks(input_path: str | Path) -> list[Task]:
    tasks = read_records(input_path)
    if not tasks:
        raise RecordError(input_path, None, "holds no tasks")
    return tasks


@releases_locks
def generate_instances(cfg: InstancesConfig, input_path: str | Path, out: str | Path, overwrite: bool = False,
                       teacher: Teacher | None = None, quiet: bool = False) -> dict:
    """Run (or resume) instance generation for the kept tasks of `input_path` into `out`; returns the summary.

    Every input task ends up exactly once in `tasks.jsonl` (kept, with instances and is_classification) or
    `rejected.jsonl` (with the reason); instance-level drops are in each task's `meta["dropped_instances"]`."""
    validate_instances(cfg)
    templates = _Templates.load(cfg)
    all_tasks = _input_tasks(input_path)
    if teacher is None:
        from .teachers import validate_options, validate_spec
        validate_spec(cfg.teacher)
        validate_options(cfg.teacher, cfg.teacher_options)
    stage = Stage("instances", Path(out), inputs=[input_path] + templates.paths(),
                  identity=dict(run_identity(cfg), input_fingerprint=fingerprint(records=all_tasks),
                                templates_fingerprint=fingerprint(files=templates.paths())),
                  templates=templates.paths(), batched=True, show=format_summary)
    lc = Lifecycle(stage, overwrite, quiet)
    lc.check_path()
    if not any(t.kept for t in all_tasks) and not quiet:
        print(f"gen instances: warning: {input_path} holds no kept tasks; the result is empty", file=sys.stderr)
    done = lc.finished()
    if done is not None:
        return done
    return lc.finish(_instances(cfg, templates, all_tasks, input_path, teacher, lc.open(), quiet))


def _instances(cfg: InstancesConfig, templates: _Templates, all_tasks: list[Task], input_path: str | Path,
               teacher: Teacher | None, resume: Resume, quiet: bool) -> Outcome:
    """The batches still to do, each logged whole, then the outputs from the whole log."""
    todo = [t for t in all_tasks if t.kept]
    done = {t.id for t in resume.log}
    remaining = [t for t in todo if t.id not in done]
    batch_idx = resume.next_batch
    tokens = Counter()
    for t in resume.log:
        for key in ("classification", "instances"):
            tokens["prompt"] += t.provenance.get(key, {}).get("prompt_tokens", 0)
            tokens["completion"] += t.provenance.get(key, {}).get("completion_tokens", 0)

    t_start, rate = time.perf_counter(), Rate()
    if not quiet:
        print(f"gen instances: {estimate(cfg, templates, remaining)}", file=sys.stderr)
    own_teacher = teacher is None  # a teacher built here is closed here
    if teacher is None and any(not t.instances for t in remaining):  # pass-through tasks need no model
        from .teachers import Budget, make_teacher
        teacher = make_teacher(cfg.teacher, budget=Budget(cfg.price_input_per_m, cfg.price_output_per_m),
                               rps=cfg.rps, batch_size=cfg.batch_size, **cfg.teacher_options)
    teacher_name = teacher.name if teacher is not None else cfg.teacher
    progress = Progress(len(todo), "instances", initial=len(todo) - len(remaining), unit="task", quiet=quiet)
    priced = bool(cfg.price_input_per_m or cfg.price_output_per_m)

    def generate(prompts, sampling):
        from .bootstrap import metered_generate
        return metered_generate(teacher, prompts, sampling, cfg, tokens, rate, progress)

    done = len(todo) - len(remaining)
    try:
        with resume.appender() as appender:
            for b in range(0, len(remaining), cfg.batch_size):
                records = _complete_batch(cfg, templates, teacher_name, generate, remaining[b:b + cfg.batch_size])
                for t in records:
                    t.meta.update(batch=batch_idx, batch_size=len(records))
                appender.write(records)
                batch_idx += 1
                progress.update(len(records))
                done += len(records)
                if priced:
                    progress.set(cost=round(_cost(cfg, tokens), 6))
    except BudgetReached as e:
        raise BudgetReached(f"{e}; {done}/{len(todo)} tasks done in {resume.path} (every finished "
                            f"batch is written); the same command with a larger budget resumes") from None
    finally:
        progress.close()
        if own_teacher and teacher is not None:
            teacher.close()

    records = resume.read_log()
    summary = summarize(records, len(all_tasks))
    summary.update(prompt_tokens=tokens["prompt"], completion_tokens=tokens["completion"],
                   cost=round(_cost(cfg, tokens), 6),
                   wall_seconds_this_session=round(time.perf_counter() - t_start, 2),
                   completion_tokens_per_s_this_session=round(rate.per_s, 2), teacher=teacher_name,
                   input=str(Path(input_path).resolve()))
    return Outcome(summary, records={"tasks.jsonl": [t for t in records if t.kept],
                                     "rejected.jsonl": [t for t in records if not t.kept]},
                   where=f"tasks with instances: {resume.file('tasks.jsonl')}")


def _cost(cfg: InstancesConfig, tokens: Counter) -> float:
    return cost_of(tokens["prompt"], tokens["completion"], cfg.price_input_per_m, cfg.price_output_per_m)


def estimate(cfg: InstancesConfig, tmpl: _Templates, tasks: Sequence[Task]) -> str:
    """One line before the first call: prompt tokens (~4 characters a token) of every call still to make and
    completion tokens at most, and the cost at the configured prices."""
    need = [t for t in tasks if not t.instances]
    ask = [t for t in need if t.is_classification is None] if cfg.assume_classification == "auto" else []
    p = sum(len(tmpl.classification.render(instruction=t.instruction)) for t in ask)
    p += sum(len((tmpl.output_first if t.is_classification else tmpl.input_first).render(instruction=t.instruction))
             for t in need)
    p //= 4
    c = len(ask) * cfg.classification_max_new_tokens + len(need) * cfg.max_new_tokens
    line = (f"estimate: {len(ask) + len(need)} prompts for {len(need)} tasks, ~{p:,} prompt + at most {c:,} "
            f"completion tokens")
    if cfg.price_input_per_m or cfg.price_output_per_m:
        line += f", at most ~{cost_of(p, c, cfg.price_input_per_m, cfg.price_output_per_m):.4f}"
    return line


def _complete_batch(cfg: InstancesConfig, tmpl: _Templates, teacher_name: str, generate, batch: list[Task]) -> list[Task]:
    """Identify, generate, parse and filter one batch of tasks; returns one record per task. `generate` is the
    stage's metered teacher call (budget, tokens, progress)."""
    batch = [Task.from_dict(t.to_dict()) for t in batch]  # never mutate the caller's records
    need = [t for t in batch if not t.instances]
    for t in batch:
        if t.instances:
            t.meta["instances_passed_through"] = True
    ask = [t for t in need if t.is_classification is None]
    if ask and cfg.assume_classification != "auto":
        for t in ask:
            t.is_classification = cfg.assume_classification == "yes"
            t.meta["classification_assumed"] = True
    elif ask:
        sampling = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=cfg.classification_max_new_tokens,
                            presence_penalty=0.0, stop=("\n",))
        prompts = [tmpl.classification.render(instruction=t.instruction) for t in ask]
        for t, c in zip(ask, generate(prompts, sampling)):
            answer = parse_classification_answer(c.text)
            t.is_classification = bool(answer)
            t.meta["classification_answer"] = c.text.strip()
            t.provenance["classification"] = {"template": tmpl.classification.name, "prompt_tokens": c.prompt_tokens,
                                              "completion_tokens": c.completion_tokens, "answer": c.text,
                                              "unclear": answer is None}
    if not need:
        return batch
    sampling = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=cfg.max_new_tokens,
                        presence_penalty=cfg.presence_penalty, stop=(f"Example {cfg.max_instances + 1}", "Task:"))
    templates = [tmpl.output_first if t.is_classification else tmpl.input_first for t in need]
    prompts = [tp.render(instruction=t.instruction) for tp, t in zip(templates, need)]
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for t, tp, prompt, c in zip(need, templates, prompts, generate(prompts, sampling)):
        parsed = (parse_output_first if t.is_classification else parse_input_first)(c.text)
        v = filter_instances(parsed, truncated=c.finish_reason == "length", max_instances=cfg.max_instances)
        t.instances = v.kept
        t.meta["dropped_instances"] = [{"input": i.input, "output": i.output, "reason": r} for i, r in v.dropped]
        t.provenance["instances"] = {"teacher": teacher_name, "template": tp.name, "sampling": sampling.to_dict(),
                                     "prompt_hash": text_hash(str(prompt)), "created_at": created,
                                     "finish_reason": c.finish_reason, "prompt_tokens": c.prompt_tokens,
                                     "completion_tokens": c.completion_tokens, "completion": c.text}
        if v.task_reason:
            t.drop(v.task_reason, filter="instances")
    return batch


def summarize(records: Sequence[Task], n_input: int) -> dict:
    """Counts for summary.json: tasks kept/rejected by reason, instances kept/dropped by reason, classes."""
    kept = [t for t in records if t.kept]
    rejected = Counter(t.verdict.reason for t in records if not t.kept)
    inst_drops = Counter(d["reason"] for t in records for d in t.meta.get("dropped_instances", []))
    clf = Counter()
    for t in records:
        if t.meta.get("instances_passed_through"):
            continue
        src = ("assumed" if t.meta.get("classification_assumed") else
               "unclear" if t.provenance.get("classification", {}).get("unclear") else
               "asked" if "classification" in t.provenance else "given")
        clf[f"{src}_{'yes' if t.is_classification else 'no'}"] += 1
    return {"input_tasks": n_input, "skipped_not_kept": n_input - len(records), "kept": len(kept),
            "rejected": sum(rejected.values()), "rejected_by_reason": dict(rejected.most_common()),
            "instances_kept": sum(len(t.instances) for t in kept),
            "instances_dropped": sum(inst_drops.values()), "instances_dropped_by_reason": dict(inst_drops.most_common()),
            "passed_through": sum(1 for t in records if t.meta.get("instances_passed_through")),
            "classification": dict(sorted(clf.items()))}


def format_summary(s: dict) -> str:
    rows = [["input tasks", s.get("input_tasks", 0)], ["tasks kept", s.get("kept", 0)],
            ["tasks rejected", s.get("rejected", 0)]]
    rows += [[f"  {r}", n] for r, n in s.get("rejected_by_reason", {}).items()]
    rows += [["instances kept", s.get("instances_kept", 0)], ["instances dropped", s.get("instances_dropped", 0)]]
    rows += [[f"  {r}", n] for r, n in s.get("instances_dropped_by_reason", {}).items()]
    rows += [[f"classification {k}", n] for k, n in s.get("classification", {}).items()]
    if s.get("passed_through"):
        rows.append(["passed through (had instances)", s["passed_through"]])
    rows += [["prompt tokens", s.get("prompt_tokens", 0)], ["completion tokens", s.get("completion_tokens", 0)],
             ["cost", s.get("cost", 0.0)], ["wall seconds (this session)", s.get("wall_seconds_this_session", 0.0)],
             ["completion tokens/s (this session)", s.get("completion_tokens_per_s_this_session", 0.0)]]
    return table(rows, header=["instances", "count"])
