"""gen curate benchmarks on ../shared/data/t0_templates.jsonl.gz (55,185 real prompt/completion pairs from 294
P3 templates, full of natural near-duplicates), side by side on this machine, each ratio against a baseline
measured in the same run. Each part runs in its own process so its peak RSS is its own.

1. MinHash dedup: ours (`MinHashFilter`) vs the plain datasketch loop (MinHash(num_perm=128) + update_batch per
   record, MinHashLSH query-then-insert) on the same word 5-gram shingles. Target: >= 5x the records/s.
   Quality against exact Jaccard of the same shingle sets, for every pair involving a random sample of records
   (ground truth over all 55k records by sparse products): recall >= 0.95 of the pairs at or above the
   threshold, precision >= 0.99. Also the library-default LSH's candidate recall at the same threshold, and
   distilabel's MinHashDedup when an interpreter with it is given (--distilabel-python; it stays out of the
   project's environment). Offline it can only shingle on character 5-grams (its word tokenizer needs NLTK's
   punkt_tab download), so its drop count is not comparable; its records/s is.
2. Embedding dedup on a 2,000-record subset: end-to-end records/s (model load, hashing, cache writes, search)
   vs raw `SentenceTransformer.encode` on the same texts and batch size. Target: >= 0.85. Peak RSS.
3. The default chain without grammar on all 55,185 records: seconds per filter and peak RSS. The embedding
   encode of 55k long prompts takes ~30+ min on 2 cores, so it is reported apart: its throughput is measured on
   a sample of the records that reach it and extrapolated (said so in the output), and its exact search is
   timed on that many random unit vectors.

    python benchmarks/curation.py [--sample 2000] [--parts minhash,embedding,chain] [--distilabel-python PY]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "t0_templates.jsonl.gz"
THRESHOLD, NGRAM, NUM_PERM = 0.7, 5, 128


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_rows() -> list[dict]:
    with gzip.open(DATA, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def tasks_from(rows):
    from instructgen.records import Instance, Task
    return [Task(id=r["id"], instruction=r["prompt"], instances=[Instance("", r["completion"])]) for r in rows]


# ------------------------------------------------------------------------------------------------- MinHash

def datasketch_loop(texts: list[str], threshold: float):
    """The plain loop users write today: one MinHash per record, query the LSH, insert when new."""
    from datasketch import MinHash, MinHashLSH
    from instructgen.filters.minhash import words
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    kept, found, sigs = [], [], []
    for i, text in enumerate(texts):
        w = words(text)
        shingles = [" ".join(w[j:j + NGRAM]) for j in range(len(w) - NGRAM + 1)] if len(w) >= NGRAM else (
            [" ".join(w)] if w else [])
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch([s.encode("utf-8") for s in shingles])
        sigs.append(m.hashvalues)
        hits = lsh.query(m)
        if hits:
            found.append((i, [int(h) for h in hits]))
        else:
            lsh.insert(str(i), m)
            kept.append(i)
    return kept, found, sigs, lsh.b, lsh.r


def shingle_sets(texts):
    """Exact ground truth: each record's set of shingle hashes (our 32-bit n-gram hashes) as a sparse row."""
    import numpy as np
    from scipy import sparse
    from instructgen.filters.minhash import MinHasher
    hashes, counts = MinHasher(NUM_PERM, 1, NGRAM).shingle_hashes(texts)
    rows = np.repeat(np.arange(len(texts)), counts)
    vocab, cols = np.unique(hashes, return_inverse=True)
    x = sparse.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(texts), len(vocab)))
    x.data[:] = 1.0  # a set: repeated shingles count once
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def pair_quality(found_pairs: set, truth_pairs: set) -> tuple[float, float]:
    tp = len(found_pairs & truth_pairs)
    recall = tp / len(truth_pairs) if truth_pairs else 1.0
    precision = tp / len(found_pairs) if found_pairs else 1.0
    return recall, precision


def part_minhash(args) -> dict:
    import numpy as np
    from instructgen.filters.minhash import MinHashFilter, band_keys, candidate_probability
    rows = load_rows()
    texts = [r["prompt"] for r in rows]
    n = len(texts)

    t0 = time.perf_counter()
    base_kept, base_found, base_sigs, db, dr = datasketch_loop(texts, THRESHOLD)
    t_base = time.perf_counter() - t0

    timings = {}
    for workers in (1, 0):  # one process (as the loop), then one per CPU; the same decisions either way
        tasks = tasks_from(rows)
        with tempfile.TemporaryDirectory() as cache:
            f = MinHashFilter.of(threshold=THRESHOLD, ngram=NGRAM, num_perm=NUM_PERM, fields=["instruction"],
                                 workers=workers)
            f.prepare({"cache_dir": cache})
            t0 = time.perf_counter()
            f.apply(tasks)
            timings[workers] = time.perf_counter() - t0
            sig = f.signatures([t.instruction for t in tasks])  # from the cache, for the quality check
    t_ours = timings[1]

    # ground truth: exact Jaccard of every (sampled record, any record) pair
    x = shingle_sets(texts)
    sizes = np.asarray(x.sum(axis=1)).ravel()
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(n, size=min(args.sample, n), replace=False))
    inter = (x[sample] @ x.T).tocoo()
    jac = inter.data / (sizes[sample][inter.row] + sizes[inter.col] - inter.data)
    truth = {(int(sample[r]), int(c)) for r, c, j in zip(inter.row, inter.col, jac)
             if j >= THRESHOLD - 1e-9 and sample[r] != c}

    margin = 3.0 * (THRESHOLD * (1 - THRESHOLD) / NUM_PERM) ** 0.5  # the filter's borderline band
    exact_pairs = {}
    for r_, c_, j_ in zip(inter.row, inter.col, jac):
        exact_pairs[(int(sample[r_]), int(c_))] = j_

    def lsh_pairs(signatures, bands, rws, confirm: bool):
        """Pairs (sampled record, any record) the index reports: an LSH candidate and, when `confirm`, the
        filter's rule - estimate >= t, or the exact Jaccard when the estimate is within the margin."""
        keys = band_keys(signatures, bands, rws)
        index: dict[tuple[int, int], list[int]] = {}
        for i in range(n):
            for k in range(bands):
                index.setdefault((k, int(keys[i, k])), []).append(i)
        out = set()
        for s in sample.tolist():
            cands = {j for k in range(bands) for j in index[(k, int(keys[s, k]))] if j != s}
            for j in cands:
                if confirm:
                    est = np.count_nonzero(signatures[s] == signatures[j]) / NUM_PERM
                    if abs(est - THRESHOLD) <= margin:
                        est = exact_pairs.get((s, j), 0.0)
                    if est < THRESHOLD - 1e-9:
                        continue
                out.add((s, j))
        return out

    ours_pairs = lsh_pairs(sig, f.bands, f.rows, confirm=True)
    recall, precision = pair_quality(ours_pairs, truth)
    base_sig = np.stack(base_sigs)
    base_pairs = lsh_pairs(base_sig, db, dr, confirm=False)  # the loop drops on any LSH hit
    b_recall, b_precision = pair_quality(base_pairs, truth)

    # decision level: every drop's exact Jaccard with the record it was said to duplicate
    idx = {t.id: i for i, t in enumerate(tasks)}
    drops = [(i, idx[t.verdict.duplicate_of]) for i, t in enumerate(tasks) if not t.kept]
    if drops:
        a, b = (np.array(v) for v in zip(*drops))
        inter_ab = np.asarray(x[a].multiply(x[b]).sum(axis=1)).ravel()
        drop_ok = int(np.sum(inter_ab / (sizes[a] + sizes[b] - inter_ab) >= THRESHOLD - 1e-9))
    else:
        drop_ok = 0
    base_drop_ok = 0
    for i, hits in base_found:  # the loop's drop is right when some hit really is at or above the threshold
        hits = np.array(hits)
        inter_h = np.asarray((x[hits] @ x[i].T).todense()).ravel()
        base_drop_ok += bool(np.max(inter_h / (sizes[hits] + sizes[i] - inter_h)) >= THRESHOLD - 1e-9)

    out = {"records": n, "threshold": THRESHOLD, "ngram": NGRAM, "num_perm": NUM_PERM,
           "ours": {"seconds": round(t_ours, 2), "records_per_s": round(n / t_ours, 1), "dropped": len(drops),
                    "bands": f.bands, "rows": f.rows, "exact_checks": f.details.get("exact_checks", 0),
                    "candidate_probability_at_threshold": round(float(candidate_probability(THRESHOLD, f.bands, f.rows)), 4),
                    "pair_recall": round(recall, 4), "pair_precision": round(precision, 4),
                    "drops_confirmed_by_exact_jaccard": round(drop_ok / max(len(drops), 1), 4)},
           "datasketch_loop": {"seconds": round(t_base, 2), "records_per_s": round(n / t_base, 1),
                               "dropped": len(base_found), "bands": db, "rows": dr,
                               "candidate_probability_at_threshold": round(float(candidate_probability(THRESHOLD, db, dr)), 4),
                               "pair_recall": round(b_recall, 4), "pair_precision": round(b_precision, 4),
                               "drops_confirmed_by_exact_jaccard": round(base_drop_ok / max(len(base_found), 1), 4)},
           "ground_truth": {"sampled_records": len(sample), "pairs_at_or_above_threshold": len(truth)},
           "speedup": round(t_base / t_ours, 2), "peak_rss_mib": round(peak_rss_mib()),
           "ours_all_cpus": {"workers": f.workers, "seconds": round(timings[0], 2),
                             "records_per_s": round(n / timings[0], 1), "speedup": round(t_base / timings[0], 2)}}
    if args.distilabel_python:
        out["distilabel"] = run_distilabel(args.distilabel_python, texts)
    return out


DISTILABEL_CODE = r"""
import json, sys, time
from distilabel.steps import MinHashDedup
texts = json.load(open(sys.argv[1]))
# its "words" tokenizer needs nltk punkt_tab (a download); "ngrams" is character n-grams
step = MinHashDedup(num_perm=128, seed=1, tokenizer="ngrams", n=5, threshold=0.7, storage="dict")
step.load()
t0 = time.perf_counter()
out = []
for s in range(0, len(texts), 1000):
    batch = [{"text": t} for t in texts[s:s + 1000]]
    out.extend(next(step.process(batch)))
dt = time.perf_counter() - t0
print(json.dumps({"seconds": round(dt, 2), "records_per_s": round(len(texts) / dt, 1),
                  "dropped": sum(not r["keep_row_after_minhash_filtering"] for r in out)}))
"""


def run_distilabel(python: str, texts: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "texts.json"
        p.write_text(json.dumps(texts))
        code = Path(d) / "run.py"
        code.write_text(DISTILABEL_CODE)
        r = subprocess.run([python, str(code), str(p)], capture_output=True, text=True, timeout=3600,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if r.returncode:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------- embedding

def part_embedding(args) -> dict:
    """Raw encode vs our end to end on the same texts. The machine is shared, so the two are interleaved in
    four slices, in ABBA order, and summed: a change of load hits both alike."""
    import numpy as np
    import sentence_transformers  # noqa: F401  imported by both sides: the library import is not timed
    import torch
    from instructgen.filters.embedding import EmbeddingDedupFilter, nearest_kept
    rows = load_rows()
    rng = np.random.default_rng(1)
    pick = sorted(rng.choice(len(rows), size=args.embed_records, replace=False).tolist())
    texts = [rows[i]["prompt"] for i in pick]
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as cache:
        f = EmbeddingDedupFilter.of(threshold=0.95, batch_size=32, fields=["instruction"])
        t0 = time.perf_counter()
        f.prepare({"cache_dir": cache})
        model = f.load()  # ours pays the model load; the raw side then shares the same model object
        t_load = time.perf_counter() - t0
        model.encode(texts[:64], batch_size=32, show_progress_bar=False)  # warm-up, for both
        t_raw = t_ours = 0.0
        embs = []
        slices = np.array_split(np.arange(len(texts)), 4)
        for k, idx in enumerate(slices):
            part = [texts[i] for i in idx]
            for side in (("raw", "ours") if k % 2 == 0 else ("ours", "raw")):
                t0 = time.perf_counter()
                if side == "raw":
                    model.encode(part, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)
                    t_raw += time.perf_counter() - t0
                else:
                    embs.append(f.embed(part))  # hashing, cache lookup, encode, cache writes
                    t_ours += time.perf_counter() - t0
        t0 = time.perf_counter()
        kept, _, _ = nearest_kept(np.concatenate(embs), f.p.threshold, f.p.block_size)
        t_search = time.perf_counter() - t0
    n = len(texts)
    t_total = t_load + t_ours + t_search
    return {"records": n, "batch_size": 32,
            "raw_encode": {"seconds": round(t_raw, 2), "records_per_s": round(n / t_raw, 2)},
            "ours_end_to_end": {"seconds": round(t_total, 2), "records_per_s": round(n / t_total, 2),
                                "model_load_seconds": round(t_load, 2), "embed_seconds": round(t_ours, 2),
                                "search_seconds": round(t_search, 3), "dropped": int((~kept).sum())},
            "ratio": round(t_raw / t_total, 3), "ratio_without_model_load": round(t_raw / (t_ours + t_search), 3),
            "peak_rss_mib": round(peak_rss_mib())}


# --------------------------------------------------------------------------------------------- whole chain

def part_chain(args) -> dict:
    import numpy as np
    from instructgen.filters.chain import load_config
    from instructgen.filters.embedding import EmbeddingDedupFilter, nearest_kept
    from instructgen.filters.stage import curate
    cfg = load_config()
    for s in cfg.filters:
        if s.filter == "grammar":
            s.enabled = False
    emb_spec = next(s for s in cfg.filters if s.filter == "embedding")
    cfg.filters = [s for s in cfg.filters if s.filter != "embedding"]
    with tempfile.TemporaryDirectory() as d:
        stats = curate(DATA, Path(d) / "out", config=cfg, quiet=True)
        reaching = [json.loads(line) for line in open(Path(d) / "out" / "kept.jsonl", encoding="utf-8")]
    rss_chain = peak_rss_mib()
    n_emb = len(reaching)
    rng = np.random.default_rng(2)
    sample = [reaching[i] for i in sorted(rng.choice(n_emb, size=min(args.encode_sample, n_emb), replace=False))]
    from instructgen.records import Task
    f = EmbeddingDedupFilter(emb_spec.params)
    with tempfile.TemporaryDirectory() as cache:
        f.prepare({"cache_dir": cache})
        f.apply([Task.from_dict(r) for r in sample])
    rate = f.details["embeddings_encoded"] / f.details["encode_seconds"]
    vecs = rng.normal(size=(n_emb, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    t0 = time.perf_counter()
    nearest_kept(vecs, emb_spec.params.threshold)
    t_search = time.perf_counter() - t0
    per_filter = {x["name"]: {"in": x["records_in"], "dropped": x["dropped_total"], "seconds": x["seconds"],
                              "note": x["note"]} for x in stats["filters"]}
    return {"records": stats["records_in"], "kept_before_embedding": n_emb, "filters": per_filter,
            "chain_wall_seconds_without_embedding": stats["wall_seconds"],
            "filter_seconds_without_embedding": round(sum(x["seconds"] for x in stats["filters"]), 2),
            "peak_rss_mib_chain": round(rss_chain),
            "embedding": {"encode_measured_on": len(sample), "encode_records_per_s": round(rate, 2),
                          "encode_seconds_extrapolated": round(n_emb / rate), "model_load_seconds":
                          f.details.get("model_load_seconds"),
                          "search_seconds_random_vectors": round(t_search, 2)},
            "peak_rss_mib": round(peak_rss_mib())}


PARTS = {"minhash": part_minhash, "embedding": part_embedding, "chain": part_chain}


def report(name: str, r: dict) -> None:
    print(f"\n== {name}")
    if name == "minhash":
        o, b = r["ours"], r["datasketch_loop"]
        print(f"records {r['records']:,}, Jaccard threshold {r['threshold']}, word {r['ngram']}-grams, "
              f"{r['num_perm']} permutations")
        print(f"ours            {o['records_per_s']:>9,.0f} rec/s  {o['seconds']:>7.1f} s  bands {o['bands']}x{o['rows']}"
              f"  P(candidate | J=t) {o['candidate_probability_at_threshold']:.3f}  dropped {o['dropped']:,}")
        print(f"datasketch loop {b['records_per_s']:>9,.0f} rec/s  {b['seconds']:>7.1f} s  bands {b['bands']}x{b['rows']}"
              f"  P(candidate | J=t) {b['candidate_probability_at_threshold']:.3f}  dropped {b['dropped']:,}")
        a = r["ours_all_cpus"]
        print(f"speedup {r['speedup']:.2f}x in one process (target >= 5x); with {a['workers']} processes "
              f"{a['records_per_s']:,.0f} rec/s, {a['speedup']:.2f}x; exact checks near the threshold: {o['exact_checks']:,}")
        gt = r["ground_truth"]
        print(f"pairs with exact Jaccard >= t among {gt['sampled_records']:,} sampled records x all: "
              f"{gt['pairs_at_or_above_threshold']:,}")
        print(f"ours:            recall {o['pair_recall']:.4f} (target >= 0.95)  precision {o['pair_precision']:.4f} "
              f"(target >= 0.99)  drops confirmed by exact Jaccard {o['drops_confirmed_by_exact_jaccard']:.4f}")
        print(f"datasketch loop: recall {b['pair_recall']:.4f}  precision {b['pair_precision']:.4f}  "
              f"drops confirmed by exact Jaccard {b['drops_confirmed_by_exact_jaccard']:.4f}")
        if "distilabel" in r:
            print(f"distilabel MinHashDedup: {r['distilabel']}")
    elif name == "embedding":
        print(f"{r['records']:,} records, batch {r['batch_size']}: raw encode {r['raw_encode']['records_per_s']:.2f} rec/s, "
              f"ours end to end {r['ours_end_to_end']['records_per_s']:.2f} rec/s -> ratio {r['ratio']:.3f} "
              f"(target >= 0.85; {r['ratio_without_model_load']:.3f} without the model load); "
              f"peak RSS {r['peak_rss_mib']} MiB")
        print(f"  details: {r['ours_end_to_end']}")
    else:
        print(f"{r['records']:,} records, default chain without grammar; peak RSS {r['peak_rss_mib_chain']} MiB")
        for k, v in r["filters"].items():
            print(f"  {k:<12} in {v['in']:>7,}  dropped {v['dropped']:>7,}  {v['seconds']:>8.2f} s  {v['note'] or ''}")
        print(f"  all filters but the embedding: {r['filter_seconds_without_embedding']:.1f} s of filter time, "
              f"{r['chain_wall_seconds_without_embedding']:.1f} s wall with reading and writing (target < 180 s)")
        e = r["embedding"]
        print(f"  embedding on the {r['kept_before_embedding']:,} records reaching it: encode {e['encode_records_per_s']:.1f} "
              f"rec/s measured on {e['encode_measured_on']:,} of them -> ~{e['encode_seconds_extrapolated']:,} s "
              f"extrapolated; exact search {e['search_seconds_random_vectors']:.1f} s (timed on as many random unit "
              f"vectors); model load {e['model_load_seconds']} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="minhash,embedding,chain")
    ap.add_argument("--sample", type=int, default=2000, help="records whose pairs get exact ground truth")
    ap.add_argument("--embed-records", type=int, default=2000)
    ap.add_argument("--encode-sample", type=int, default=1000, help="records encoded to extrapolate the chain's encode")
    ap.add_argument("--distilabel-python", help="a Python with distilabel installed (kept out of this venv)")
    ap.add_argument("--part", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write all results to this file")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.part:  # child process: one part, its result as the last stdout line
        print(json.dumps(PARTS[args.part](args)))
        return 0
    if not DATA.exists():
        print(f"{DATA} is absent: the benchmark needs ../shared/data", file=sys.stderr)
        return 2
    results = {}
    for name in args.parts.split(","):
        cmd = [sys.executable, __file__, "--part", name, "--sample", str(args.sample),
               "--embed-records", str(args.embed_records), "--encode-sample", str(args.encode_sample)]
        if args.distilabel_python:
            cmd += ["--distilabel-python", args.distilabel_python]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            print(f"part {name} failed:\n{r.stderr[-3000:]}", file=sys.stderr)
            return 1
        results[name] = json.loads(r.stdout.strip().splitlines()[-1])
        report(name, results[name])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
