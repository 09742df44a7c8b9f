"""The openai teacher over HTTP vs the same model called directly (run by hand; ratios measured in one run).

    .venv/bin/python benchmarks/serve.py [--prompts 16] [--max-new-tokens 32] [--repeats 3] [--threads N]

1. Overhead: generated tokens/s through `serve.py` + `OpenAITeacher` (concurrent requests, batched server-side)
   vs `TransformersTeacher.generate` on the same prompts and settings: target >= 0.9.
2. Batching: the same through HTTP with 16 requests in flight vs one at a time (as a naive client would).
3. Fairness: a 1-prompt request sent while one request of --big prompts (the --max-prompts default, 64) is
   being generated: its latency, and in which of the big request's batches it ran. The server splits requests
   into --batch-size pieces and round-robins between them, so it should finish within ~2 batches, not after
   the big request (before, it waited for all of it).
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
    ap.add_argument("--big", type=int, default=64, help="prompts in the big request of the fairness check")
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
    fair = fairness(teacher, prompts, s, args.big, max(args.big, args.prompts))
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
    print(f"fairness, 1 prompt beside {args.big} : {fair['small_s']:.1f} s (alone {fair['alone_s']:.1f} s), ran in "
          f"generate call {fair['call']} of {fair['calls']}; the big request took {fair['big_s']:.1f} s")


def fairness(teacher, prompts, s, big: int, max_prompts: int) -> dict:
    """Send one request of `big` prompts, then (once its first batch runs) a 1-prompt request; time both."""
    import threading

    from instructgen.generator.openai_teacher import OpenAITeacher
    from instructgen.generator.serve import Limits, TeacherServer

    calls: list[list] = []

    class Recording:  # the real teacher, with each generate call recorded
        name = teacher.name

        def generate(self, ps, sampling):
            calls.append(list(ps))
            return teacher.generate(ps, sampling)

    small, rest = prompts[-1], prompts[:-1]  # the small request's prompt is in no piece of the big one
    many = [rest[i % len(rest)] for i in range(big)]
    lim = Limits(max_prompts=max_prompts, max_queue=max(Limits.max_queue, max_prompts))
    with TeacherServer(Recording(), max_batch=teacher.batch_size, limits=lim) as srv:
        client = OpenAITeacher(srv.url, srv.model_name)
        t0 = time.perf_counter()
        client.generate([small], s)
        alone = time.perf_counter() - t0
        calls.clear()
        done: dict[str, float] = {}
        start = time.perf_counter()
        # OpenAITeacher sends one prompt per request, so the big request goes out as one raw HTTP call
        th = threading.Thread(target=lambda: (_post_many(srv.url, srv.model_name, many, s),
                                              done.setdefault("big", time.perf_counter() - start)))
        th.start()
        while not calls:
            time.sleep(0.01)
        t0 = time.perf_counter()
        client.generate([small], s)
        small_s = time.perf_counter() - t0
        th.join()
    call = next(i for i, c in enumerate(calls) if small in c)
    return {"alone_s": alone, "small_s": small_s, "big_s": done["big"], "call": call + 1, "calls": len(calls)}


def _post_many(url: str, model: str, prompts: list, s) -> None:
    import http.client
    import json
    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=3600)
    conn.request("POST", "/v1/completions", json.dumps({
        "model": model, "prompt": prompts, "max_tokens": s.max_new_tokens, "temperature": s.temperature,
        "top_p": s.top_p, "presence_penalty": s.presence_penalty}), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    resp.read()
    conn.close()


if __name__ == "__main__":
    main()
