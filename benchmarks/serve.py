"""The openai teacher over HTTP vs the same model called directly (run by hand; ratios measured in one run).

    .venv/bin/python benchmarks/serve.py [--prompts 16] [--max-new-tokens 32] [--repeats 3] [--threads N]

1. Overhead: generated tokens/s through `serve.py` + `OpenAITeacher` (concurrent requests, batched server-side)
   vs `TransformersTeacher.generate` on the same prompts and settings: target >= 0.9.
2. Batching: the same through HTTP with 16 requests in flight vs one at a time (as a naive client would).
Greedy decoding, so the three paths must produce the same texts; the script checks that too.
"""

from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best of each is reported")
    ap.add_argument("--threads", type=int, help="torch threads (1 is far faster on a CPU shared with other jobs)")
    args = ap.parse_args()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)

    from instructgen.generator.bootstrap import PACKAGED_SEEDS
    from instructgen.generator.hf_teacher import TransformersTeacher
    from instructgen.generator.openai_teacher import OpenAITeacher
    from instructgen.generator.serve import TeacherServer
    from instructgen.generator.teachers import Sampling
    from instructgen.records import read_seed_tasks
    from instructgen.templates import load_template

    seeds = read_seed_tasks(PACKAGED_SEEDS)
    template = load_template("self_instruct.completion")
    rng = random.Random(0)
    prompts = [template.render(instructions=[t.instruction for t in rng.sample(seeds, 8)])
               for _ in range(args.prompts)]
    s = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=args.max_new_tokens, presence_penalty=0.0)
    teacher = TransformersTeacher("smollm2-135m", batch_size=args.prompts)
    teacher.generate(prompts[:2], s)  # warm-up

    def timed(gen):
        t0 = time.perf_counter()
        out = gen(prompts, s)
        return out, time.perf_counter() - t0

    best: dict[str, float] = {}
    outs: dict[str, list] = {}
    with TeacherServer(teacher, max_batch=args.prompts) as srv:
        paths = {"direct": teacher.generate,
                 "many": OpenAITeacher(srv.url, srv.model_name, max_concurrency=args.prompts).generate,
                 "one": OpenAITeacher(srv.url, srv.model_name, max_concurrency=1).generate}
        for _ in range(args.repeats):  # interleaved, so a busy spell on a shared CPU hits every path alike
            for name, gen in paths.items():
                outs[name], dt = timed(gen)
                best[name] = min(best.get(name, float("inf")), dt)
    tps = {k: sum(c.completion_tokens for c in outs[k]) / best[k] for k in best}
    direct, served, naive = outs["direct"], outs["many"], outs["one"]
    (direct_tps, direct_s), (served_tps, served_s), (naive_tps, naive_s) = (
        (tps[k], best[k]) for k in ("direct", "many", "one"))
    same = [c.text for c in direct] == [c.text for c in served]
    print(f"{args.prompts} prompts, {args.max_new_tokens} new tokens max, greedy, {os.cpu_count()} CPUs, "
          f"best of {args.repeats}")
    print(f"direct TransformersTeacher : {direct_tps:7.1f} tok/s ({direct_s:.1f} s)")
    print(f"HTTP, {args.prompts:2d} in flight       : {served_tps:7.1f} tok/s ({served_s:.1f} s)  "
          f"ratio vs direct {served_tps / direct_tps:.2f} (target >= 0.9); same texts: {same}")
    print(f"HTTP, 1 in flight          : {naive_tps:7.1f} tok/s ({naive_s:.1f} s)  "
          f"batched/naive {served_tps / naive_tps:.2f}x; same texts: "
          f"{[c.text for c in naive] == [c.text for c in direct]}")


if __name__ == "__main__":
    main()
