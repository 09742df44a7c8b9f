"""gen curate at scale: T0 grown to 55K, 220K and 880K records, each size curated under each executor setting.

Longer than ~400 lines on purpose: the grower, the process-tree sampler and the report answer one question
("how does curation scale") and are only useful together; the grower is unit-tested (tests/test_scale_bench.py).

1. grow: ../shared/data/t0_templates.jsonl.gz (55,185 prompt/completion records, streamed and checked line by
   line) written 1, 4 and 16 times: copy 0 is the original record; copy K >= 1 has id `ID-copyK` and word-level
   perturbations in the prompt and the answer, seeded by (seed, id, K). Each copy is `light` or `heavy` (half
   each): a light copy edits max(1, round(0.02 x words)) prompt words, a heavy one max(1, round(0.15 x words));
   each answer word is edited with the same rate. An edit swaps a word with its neighbour, drops it,
   duplicates it, or replaces it with a lexical neighbour from the corpus vocabulary (its sorted-order
   neighbours: "perceive" -> "perceived"). Light copies of prompts longer than ~40 words stay near-duplicates
   at MinHash 0.7 on word 5-grams; heavy ones do not. The copies are written pass by pass (all copy-1 records,
   then all copy-2 records, ...) so near-duplicates sit far apart in the file, streamed to
   /tmp/scale/t0-{size}.jsonl: no list of records is ever held, and the grower's own peak RSS is recorded.
2. run: `gen curate` as a subprocess on the default chain with the embedding entry `enabled: false` (grammar
   is skipped without LanguageTool: LANGUAGETOOL_URL is removed from its environment), a fresh --out per run.
   Measured: wall seconds, seconds per 1,000 records, peak RSS of the whole process tree sampled every 0.2 s
   (RSS summed over the driver, every descendant of it - local workers, and Ray's gcs_server, raylet and raylet
   workers when the driver starts a local Ray - and any other process whose environment carries this run's
   token; RSS double-counts pages shared between processes, so the sum is an upper bound), and the per-filter
   seconds from OUT/stats.json. Outputs are compared three ways: sha256 of kept.jsonl and rejected.jsonl as
   bytes, an order-free digest of their lines (sum of per-line sha256 mod 2^256) and an order-free digest of the
   verdicts alone (id, kept, reason, filter, duplicate_of): "identical" means the verdict digests agree.
   Settings: w1 = --executor local --workers 1, w2 = --executor local --workers 2, ray = --executor ray
   --workers 2 on a local cluster (no --ray-address). When `gen curate --help` shows no --executor, only the
   in-memory path exists: each size runs once, labelled "in-memory (before)".
3. The table, with the issue's targets as ratios of numbers measured in the same invocation, to --out-md
   (markdown) and --out-json. Every finished run is kept in /tmp/scale/results and reused by a later invocation
   (same input, config, command and engine), so a long sweep resumes; --rerun forces a run again.

    nice python benchmarks/scale.py [grow|run] [--sizes 55k,220k,880k] [--settings w1,w2,ray] [--skip-grow]
        [--timeout 7200] [--rss-cap-gib 8] [--out-md /tmp/scale/scale.md] [--out-json /tmp/scale/scale.json]
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import hashlib
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "t0_templates.jsonl.gz"
SCRATCH = Path("/tmp/scale")
SIZES = {"55k": 1, "220k": 4, "880k": 16}  # copies of the 55,185 T0 records
SETTINGS = {"before": [],  # the in-memory path: --before-src, or the working tree while it has no --executor
            "w1": ["--executor", "local", "--workers", "1"],
            "w2": ["--executor", "local", "--workers", "2"],
            "ray": ["--executor", "ray", "--workers", "2"]}
BEFORE = "in-memory (before)"
LEVELS = {"light": 0.02, "heavy": 0.15}  # share of words edited; see the docstring for what each does at 0.7
HEAVY_SHARE = 0.5
OPS = ("swap", "drop", "duplicate", "replace")
GROWER_VERSION = 1  # bump when the perturbations change: grown files are reused only at the same version
TOKEN_ENV = "SCALE_BENCH_TOKEN"
GIB = 1024 ** 3


# ------------------------------------------------------------------------------------------------- grow

def read_t0(path: Path, limit: int | None = None) -> Iterator[dict]:
    """T0 records one at a time, each checked: `id`, `prompt` and `completion` strings (ValueError names file:line)."""
    with gzip.open(path, "rt", encoding="utf-8") if str(path).endswith(".gz") else open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if limit is not None and n > limit:
                return
            if not line.strip():
                continue
            r = json.loads(line)
            for key in ("id", "prompt", "completion"):
                if not isinstance(r.get(key), str):
                    raise ValueError(f"{path}:{n}: field '{key}' is missing or not a string")
            yield r


def build_vocab(rows: Iterable[dict], min_count: int = 2) -> list[str]:
    """Sorted lowercase alphabetic words seen at least `min_count` times in prompts and answers (one pass)."""
    counts: Counter = Counter()
    for r in rows:
        counts.update(w.lower() for w in re.findall(r"[A-Za-z]+", r["prompt"] + " " + r["completion"]))
    return sorted(w for w, c in counts.items() if c >= min_count)


_CORE = re.compile(r"(\W*)([A-Za-z]+)(\W*)")


def neighbour(word: str, rng: random.Random, vocab: list[str]) -> str:
    """A lexical neighbour: a word 1-3 places away in the sorted vocabulary, punctuation and case kept; a token
    with no alphabetic core (a number, a symbol) becomes a random vocabulary word."""
    if not vocab:
        return word
    m = _CORE.fullmatch(word)
    if m is None:
        return rng.choice(vocab)
    pre, core, post = m.groups()
    j = bisect.bisect_left(vocab, core.lower())
    for off in rng.sample((-3, -2, -1, 1, 2, 3), 6):
        cand = vocab[min(max(j + off, 0), len(vocab) - 1)]
        if cand != core.lower():
            break
    if core.isupper() and len(core) > 1:
        cand = cand.upper()
    elif core[0].isupper():
        cand = cand.capitalize()
    return pre + cand + post


def perturb(text: str, n_edits: int, rng: random.Random, vocab: list[str]) -> str:
    """`text` with `n_edits` distinct word positions edited (swap, drop, duplicate or replace); whitespace between
    the remaining words, newlines included, is kept."""
    lead = text[:len(text) - len(text.lstrip())]
    words = [[m.group(1), m.group(2)] for m in re.finditer(r"(\S+)(\s*)", text)]
    n_edits = min(n_edits, len(words))
    for i in sorted(rng.sample(range(len(words)), n_edits), reverse=True):  # high to low: indices stay valid
        op = rng.choice(OPS)
        if op == "swap" and len(words) > 1:
            k = i + 1 if i + 1 < len(words) else i - 1
            words[i][0], words[k][0] = words[k][0], words[i][0]
        elif op == "drop" and len(words) > 1:
            del words[i]
        elif op == "duplicate":
            words[i:i + 1] = [[words[i][0], " "], words[i]]
        else:
            words[i][0] = neighbour(words[i][0], rng, vocab)
    return lead + "".join(w + s for w, s in words)


def grow_copy(r: dict, k: int, vocab: list[str], seed: int = 0) -> dict:
    """Copy `k` of record `r` (k = 0: the record itself). Deterministic in (seed, id, k)."""
    if k == 0:
        return r
    rng = random.Random(f"{seed}:{r['id']}:{k}")  # a str seed is hashed with sha512: stable across runs
    level = "heavy" if rng.random() < HEAVY_SHARE else "light"
    rate = LEVELS[level]
    n_prompt = max(1, round(rate * len(r["prompt"].split())))
    n_answer = sum(rng.random() < rate for _ in r["completion"].split())
    out = dict(r, id=f"{r['id']}-copy{k}", prompt=perturb(r["prompt"], n_prompt, rng, vocab),
               completion=perturb(r["completion"], n_answer, rng, vocab))
    out["grown"] = {"of": r["id"], "level": level, "edits": [n_prompt, n_answer]}
    return out


def grow_records(source: Callable[[], Iterable[dict]], copies: int, vocab: list[str],
                 seed: int = 0) -> Iterator[dict]:
    """`copies` passes over `source()` (a fresh iterable each pass): pass K yields copy K of every record."""
    for k in range(copies):
        for r in source():
            yield grow_copy(r, k, vocab, seed)


def grown_path(size: str) -> Path:
    return SCRATCH / f"t0-{size}.jsonl"


def grow_file(size: str, data: Path = DATA, seed: int = 0, force: bool = False) -> dict:
    """Write /tmp/scale/t0-{size}.jsonl (streamed, via a .part file) and its sidecar; reuse a matching one."""
    path, side = grown_path(size), grown_path(size).with_suffix(".json")
    want = {"size": size, "copies": SIZES[size], "seed": seed, "version": GROWER_VERSION,
            "source_bytes": data.stat().st_size}
    if not force and side.exists() and path.exists():
        info = json.loads(side.read_text())
        if {k: info.get(k) for k in want} == want and path.stat().st_size == info.get("bytes"):
            print(f"[grow {size}] reusing {path} ({info['records']:,} records)", file=sys.stderr)
            return info
    SCRATCH.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    vocab = build_vocab(read_t0(data))
    h, n, part = hashlib.sha256(), 0, path.with_suffix(".jsonl.part")
    with open(part, "wb") as f:
        for rec in grow_records(lambda: read_t0(data), SIZES[size], vocab, seed):
            line = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
            f.write(line)
            h.update(line)
            n += 1
            if n % 100_000 == 0:
                print(f"[grow {size}] {n:,} records, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    os.replace(part, path)
    info = dict(want, records=n, bytes=path.stat().st_size, sha256=h.hexdigest(), vocab=len(vocab),
                seconds=round(time.perf_counter() - t0, 1), peak_rss_mib=round(peak_rss_self_mib(), 1))
    side.write_text(json.dumps(info, indent=1))
    print(f"[grow {size}] wrote {n:,} records in {info['seconds']} s, grower peak RSS {info['peak_rss_mib']} MiB",
          file=sys.stderr)
    return info


def peak_rss_self_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------------- measure

class TreeRSS(threading.Thread):
    """Samples, every `interval` s, the RSS summed over the driver, its descendants and any process whose
    environment carries `token` (Ray workers of a cluster the driver did not start); keeps the peak."""

    def __init__(self, pid: int, token: str, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.token, self.interval = pid, token, interval
        self.t_start = time.time()
        self.peak = self.now = 0
        self.peak_procs = 0
        self.seen: dict[int, object] = {}  # pid -> psutil.Process: kill() checks it is still that process
        self._tokened: dict[tuple[int, float], bool] = {}
        self._cpu: dict[int, float] = {}  # pid -> user + system seconds, last seen
        self._halt = threading.Event()

    def _has_token(self, p) -> bool:
        import psutil
        key = (p.pid, p.info["create_time"])
        if key not in self._tokened:
            try:
                self._tokened[key] = p.environ().get(TOKEN_ENV) == self.token
            except (psutil.Error, OSError):
                self._tokened[key] = False
        return self._tokened[key]

    def sample(self) -> int:
        import psutil
        procs = {}
        try:
            root = psutil.Process(self.pid)
            procs[root.pid] = root
            for c in root.children(recursive=True):
                procs[c.pid] = c
        except psutil.Error:
            pass
        for p in psutil.process_iter(["create_time"]):
            if p.pid not in procs and (p.info["create_time"] or 0) >= self.t_start - 1 and self._has_token(p):
                procs[p.pid] = p
        total = 0
        for p in procs.values():
            try:
                total += p.memory_info().rss
                c = p.cpu_times()
                self._cpu[p.pid] = c.user + c.system
            except psutil.Error:
                pass
        for pid, proc in procs.items():
            self.seen.setdefault(pid, proc)
        self.now = total
        if total > self.peak:
            self.peak, self.peak_procs = total, len(procs)
        return total

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds of every process seen, as last sampled (a process's last < 0.2 s is missed)."""
        return sum(self._cpu.values())

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def kill_tree(procs: Iterable) -> None:
    """SIGKILL the processes this harness started (the curate driver and what it spawned), each by its
    psutil.Process, which refuses a pid since reused by another process."""
    import psutil
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


def jsonl_digests(path: Path) -> dict:
    """sha256 of the bytes, and order-free digests of the lines and of the verdicts (sum of sha256 mod 2^256)."""
    if not path.exists():
        return {"missing": True}
    h, lines, verdicts, n = hashlib.sha256(), 0, 0, 0
    with open(path, "rb") as f:
        for line in f:
            h.update(line)
            lines += int.from_bytes(hashlib.sha256(line).digest(), "big")
            d = json.loads(line)
            v = d.get("verdict") or {}
            key = json.dumps([d.get("id"), v.get("kept"), v.get("reason"), v.get("filter"), v.get("duplicate_of")])
            verdicts += int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest(), "big")
            n += 1
    mask = (1 << 256) - 1
    return {"records": n, "sha256": h.hexdigest(), "lines": f"{lines & mask:064x}",
            "verdicts": f"{verdicts & mask:064x}"}


def engine_env(src: Path | None) -> dict:
    """The environment `gen curate` runs in: `src` (a source tree holding instructgen/) first on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "LANGUAGETOOL_URL"}
    env.update({"HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"})
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src)] + [x for x in [os.environ.get("PYTHONPATH")] if x])
    return env


def engine_mode(src: Path | None = None) -> str:
    """'sharded' when `gen curate --help` offers --executor and --workers, else 'in-memory'."""
    r = subprocess.run([sys.executable, "-m", "instructgen", "curate", "--help"], capture_output=True, text=True,
                       env=engine_env(src), cwd=str(SCRATCH))
    return "sharded" if "--executor" in r.stdout and "--workers" in r.stdout else "in-memory"


def engine_fingerprint(src: Path | None) -> str:
    """sha256 over the engine's package sources, so a stored result is reused only for the same code."""
    pkg = (src or ROOT) / "instructgen"
    h = hashlib.sha256()
    for f in sorted(pkg.rglob("*")):
        if f.suffix in (".py", ".yaml", ".jinja2", ".json") and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def chain_config(src: Path | None = None, tag: str = "") -> Path:
    """The engine's packaged default chain with the embedding entry disabled, written to /tmp/scale."""
    import yaml
    default = (src or ROOT) / "instructgen" / "data" / "curate.yaml"
    cfg = yaml.safe_load(default.read_text(encoding="utf-8"))
    hits = [e for e in cfg["filters"] if e.get("filter") == "embedding"]
    if not hits:
        raise SystemExit(f"{default}: no embedding entry to disable")
    for e in hits:
        e["enabled"] = False
    path = SCRATCH / f"curate-noembed{tag}.yaml"
    SCRATCH.mkdir(parents=True, exist_ok=True)
    path.write_text("# benchmarks/scale.py: the default chain without the embedding encode\n"
                    + yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def run_one(size: str, setting: str, src: Path | None, cfg: Path, args) -> dict:
    """One `gen curate` run from the engine in `src` (None: the working tree), measured; reuses a stored
    result with the same identity (input, config, flags, engine sources) unless --rerun."""
    data = grown_path(size)
    grown = json.loads(data.with_suffix(".json").read_text())
    extra = list(SETTINGS[setting])
    if setting == "ray" and args.ray_address:
        extra += ["--ray-address", args.ray_address]
    if setting != "before" and args.shard_size:
        extra += ["--shard-size", str(args.shard_size)]
    label = BEFORE if setting == "before" else setting
    ident = {"size": size, "setting": setting, "input_sha256": grown["sha256"], "engine": engine_fingerprint(src),
             "config_sha256": hashlib.sha256(cfg.read_bytes()).hexdigest(), "args": extra}
    result_path = SCRATCH / "results" / f"{size}-{setting}.json"
    if result_path.exists() and not args.rerun:
        old = json.loads(result_path.read_text())
        if old.get("identity") == ident and old.get("status") == "ok":
            print(f"[{size} {label}] reusing the stored result ({result_path})", file=sys.stderr)
            return old
    work = SCRATCH / "runs" / f"{size}-{setting}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out, log = work / "out", work / "log.txt"
    cmd = [sys.executable, "-m", "instructgen", "curate", str(data), "--out", str(out), "--config", str(cfg)] + extra
    token = uuid.uuid4().hex
    env = dict(engine_env(src), **{TOKEN_ENV: token})
    load_before = os.getloadavg()[0]
    print(f"[{size} {label}] {grown['records']:,} records: gen curate ... {' '.join(extra)}", file=sys.stderr)
    status = "ok"
    t0 = time.perf_counter()
    with open(log, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=str(work),
                                start_new_session=True)
        sampler = TreeRSS(proc.pid, token)
        sampler.start()
        last_print = t0
        while proc.poll() is None:
            time.sleep(0.5)
            el = time.perf_counter() - t0
            if sampler.peak > args.rss_cap_gib * GIB:
                status = f"stopped: RSS above {args.rss_cap_gib} GiB"
            elif el > args.timeout:
                status = f"stopped: over --timeout {args.timeout} s"
            if status != "ok":
                kill_tree(sampler.seen.values())
                proc.wait()
                break
            if time.perf_counter() - last_print >= args.progress_every:
                last_print = time.perf_counter()
                print(f"[{size} {label}] {el:.0f} s, RSS {sampler.now / GIB:.2f} GiB (peak {sampler.peak / GIB:.2f}),"
                      f" {len(sampler.seen)} processes; {log_tail(log)}", file=sys.stderr)
        wall = time.perf_counter() - t0
        sampler.stop()
        kill_tree(p for pid, p in sampler.seen.items() if pid != proc.pid)  # a Ray worker left behind is ours to end
    if status == "ok" and proc.returncode != 0:
        status = f"failed: exit {proc.returncode}: {log_tail(log)}"
    res = {"identity": ident, "status": status, "label": label, "records": grown["records"],
           "wall_seconds": round(wall, 2), "s_per_1k": round(1000 * wall / grown["records"], 4),
           "peak_rss_mib": round(sampler.peak / 2 ** 20, 1), "peak_processes": sampler.peak_procs,
           "cpu_seconds": round(sampler.cpu_seconds, 1), "load_avg_1min": [load_before, os.getloadavg()[0]],
           "engine": str(src) if src else "working tree", "measured_at": time.strftime("%H:%M UTC", time.gmtime()),
           "processes_seen": len(sampler.seen),
           "command": "gen curate " + " ".join([data.name, "--out", "OUT", "--config", cfg.name] + extra)}
    stats_file = out / "stats.json"
    if status == "ok" and stats_file.exists():
        stats = json.loads(stats_file.read_text())
        res.update(kept=stats.get("kept"), rejected=stats.get("rejected"),
                   curate_wall_seconds=stats.get("wall_seconds"),
                   filters=[{k: f.get(k) for k in ("name", "filter", "records_in", "dropped_total", "seconds", "note")}
                            for f in stats.get("filters", [])],
                   passes=stats.get("passes"))
        res["kept_digest"] = jsonl_digests(out / "kept.jsonl")
        res["rejected_digest"] = jsonl_digests(out / "rejected.jsonl")
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(res, indent=1))
    print(f"[{size} {label}] {status}: {wall:.1f} s wall, {res['s_per_1k']:.3f} s/1k, peak RSS "
          f"{res['peak_rss_mib']:,.0f} MiB", file=sys.stderr)
    if status == "ok" and not args.keep_outputs:
        shutil.rmtree(out, ignore_errors=True)  # 880K outputs are GBs; the digests are kept
    return res


def log_tail(log: Path) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, log.stat().st_size - 400))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    parts = [p.strip() for p in re.split(r"[\r\n]", tail) if p.strip()]
    return parts[-1][:160] if parts else ""


# ------------------------------------------------------------------------------------------------- report

def filter_kinds() -> dict[str, str]:
    """Registry name -> 'record' (judges each record alone) or 'global' (depends on the whole set)."""
    from instructgen.filters.base import RecordFilter
    from instructgen.filters.chain import FILTERS
    return {name: "record" if issubclass(cls, RecordFilter) else "global" for name, cls in FILTERS.items()}


def split_seconds(res: dict, kinds: dict[str, str]) -> tuple[float, float]:
    """(per-record phase, global phase) in wall seconds. The sharded engine reports both per pass (stats.json
    "passes": the shards' wall time, then the central steps'); a filter's "seconds" there sums the workers' time,
    so it is no wall clock. The in-memory engine (no passes) is split by its per-filter seconds."""
    passes = res.get("passes")
    if passes:
        return (sum(p.get("wall_seconds") or 0 for p in passes), sum(p.get("central_seconds") or 0 for p in passes))
    rec = sum(f["seconds"] or 0 for f in res.get("filters", []) if kinds.get(f["filter"]) == "record")
    glo = sum(f["seconds"] or 0 for f in res.get("filters", []) if kinds.get(f["filter"]) == "global")
    return rec, glo


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def targets(results: list[dict], kinds: dict[str, str]) -> list[dict]:
    """The issue's targets, each from numbers of this invocation; 'not measured' where a run is missing."""
    ok = {(r["identity"]["size"], r["identity"]["setting"]): r for r in results if r["status"] == "ok"}
    sets = [s for s in SETTINGS if s != "before" and any(k[1] == s for k in ok)]  # the targets are the engine's
    out = []

    def add(name, value, met, detail):
        out.append({"target": name, "value": value, "met": met, "detail": detail})

    for r in results:  # an 880K run stopped for its memory has failed the memory target
        ident = r["identity"]
        if r["status"].startswith("stopped: RSS") and ident["size"] == "880k" and ident["setting"] != "before":
            add(f"peak RSS at 880K <= 2 GiB [{ident['setting']}]", f"> {r['peak_rss_mib'] / 1024:.1f}", False,
                f"GiB: {r['status']} after {r['wall_seconds']:.0f} s")
    for s in sets:
        r880, r55 = ok.get(("880k", s)), ok.get(("55k", s))
        if r880:
            add(f"peak RSS at 880K <= 2 GiB [{s}]", round(r880["peak_rss_mib"] / 1024, 2),
                r880["peak_rss_mib"] <= 2048, "GiB, process tree")
        if r880 and r55:
            q = ratio(r880["s_per_1k"], r55["s_per_1k"])
            add(f"s/1k at 880K <= 1.3x s/1k at 55K [{s}]", q, q <= 1.3, f"{r880['s_per_1k']} vs {r55['s_per_1k']}")
    for size in SIZES:
        w1, w2, ray = ok.get((size, "w1")), ok.get((size, "w2")), ok.get((size, "ray"))
        if w1 and w2:
            q = ratio(split_seconds(w1, kinds)[0], split_seconds(w2, kinds)[0])
            add(f"per-record filters: workers 2 >= 1.6x workers 1 [{size}]", q, q is not None and q >= 1.6,
                f"speed-up; wall {ratio(w1['wall_seconds'], w2['wall_seconds'])}x")
        if ray and w2:
            q = ratio(ray["wall_seconds"], w2["wall_seconds"])
            add(f"ray <= 1.3x local workers 2 [{size}]", q, q <= 1.3,
                f"wall; per-record filters {ratio(split_seconds(ray, kinds)[0], split_seconds(w2, kinds)[0])}x")
        runs = [ok[(size, s)] for s in sets if (size, s) in ok]
        if len(runs) > 1:
            same = len({(r["kept_digest"].get("verdicts"), r["rejected_digest"].get("verdicts")) for r in runs}) == 1
            same_bytes = len({(r["kept_digest"].get("sha256"), r["rejected_digest"].get("sha256")) for r in runs}) == 1
            add(f"outputs identical across {', '.join(sets)} [{size}]", same, same,
                "verdict digests" + ("; bytes identical too" if same_bytes else "; byte order or content differs"))
        before = ok.get((size, "before"))
        if before and runs:
            same = all((r["kept_digest"].get("verdicts"), r["rejected_digest"].get("verdicts")) ==
                       (before["kept_digest"].get("verdicts"), before["rejected_digest"].get("verdicts")) for r in runs)
            add(f"same decisions as the in-memory path (before) [{size}]", same, same, "verdict digests")
    return out


def cell(f: dict) -> str:
    """A filter's seconds, or why it did not run ('off': disabled in the config; 'skipped': e.g. no LanguageTool)."""
    note = f.get("note") or ""
    if "disabled" in note:
        return "off"
    return "skipped" if note.startswith("skipped") else f"{f.get('seconds') or 0:.1f}"


def markdown(results: list[dict], tgts: list[dict], kinds: dict[str, str], meta: dict) -> str:
    lines = [f"gen curate scaling, {meta['date']}: {meta['machine']}; engine: {meta['mode']}; "
             f"`{meta['command']}`", "",
             "Default chain without the embedding encode; grammar skipped (no LanguageTool). Peak RSS: summed over "
             "the driver's process tree (and Ray's processes), sampled every 0.2 s. Outputs: order-free digest of "
             "(id, verdict) over kept.jsonl + rejected.jsonl. Status: when the run ended (a stored run is reused "
             "while its input, config, flags and engine sources are unchanged).", "",
             "| records | setting | wall s | s / 1k records | CPU s | peak RSS MiB | per-record passes s "
             "| central steps s | kept | rejected | outputs | status |", "|" + " --- |" * 12]
    for r in results:
        rec, glo = split_seconds(r, kinds)
        kd, rd = r.get("kept_digest", {}), r.get("rejected_digest", {})
        dig = f"{kd.get('verdicts', '')[:8]}/{rd.get('verdicts', '')[:8]}" if r["status"] == "ok" else ""
        done = r["status"] == "ok"  # a stopped run's seconds are not its time per record
        per_1k, rec_s, glo_s = (f"{r['s_per_1k']:.3f}", f"{rec:.1f}", f"{glo:.1f}") if done else ("-", "-", "-")
        rss = f"{'' if done else '> '}{r['peak_rss_mib']:,.0f}"
        when = ", ".join(x for x in (r["status"], r.get("measured_at")) if x)
        lines.append(f"| {r['records']:,} | {r['label']} | {r['wall_seconds']:.1f} | {per_1k} | "
                     f"{r.get('cpu_seconds', 0):.0f} | {rss} | {rec_s} | {glo_s} | {r.get('kept', '')} | "
                     f"{r.get('rejected', '')} | {dig} | {when} |")
    names = [f["name"] for f in next((r["filters"] for r in results if r.get("filters")), [])]
    if names:
        lines += ["", "Seconds per filter (OUT/stats.json):", "",
                  "| records | setting | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 2)]
        for r in results:
            by = {f["name"]: f for f in r.get("filters", [])}
            cells = [cell(by[n]) if n in by else "" for n in names]
            lines.append(f"| {r['records']:,} | {r['label']} | " + " | ".join(cells) + " |")
    lines += ["", "| target | measured | met | how |", "| --- | --- | --- | --- |"]
    lines += [f"| {t['target']} | {t['value']} | {'yes' if t['met'] else 'NO'} | {t['detail']} |" for t in tgts]
    if not tgts:
        lines.append("| (none: the targets need the 880K run or the sharded engine) | | | |")
    return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown CPU")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {sys.version.split()[0]}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", nargs="?", choices=("grow", "run"), default="run",
                   help="grow: write the grown files only; run (default): grow what is missing, then curate")
    p.add_argument("--sizes", default="55k,220k,880k", help="comma list of " + ", ".join(SIZES))
    p.add_argument("--settings", default="w1,w2,ray", help="comma list of " + ", ".join(SETTINGS) + ": before = "
                   "the in-memory engine of --before-src; while the working tree's gen curate has no --executor, "
                   "w1/w2/ray become one in-memory run per size")
    p.add_argument("--before-src", type=Path, help="a source tree of the in-memory engine, for the before setting: "
                   "mkdir -p /tmp/scale/before && git archive COMMIT instructgen | tar -x -C /tmp/scale/before")
    p.add_argument("--skip-grow", action="store_true", help="use the grown files already in /tmp/scale")
    p.add_argument("--timeout", type=float, default=7200, help="seconds per run before it is stopped")
    p.add_argument("--rss-cap-gib", type=float, default=8.0, help="stop a run whose process tree passes this RSS")
    p.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress lines")
    p.add_argument("--ray-address", help="an existing Ray cluster for the ray setting (default: a local one)")
    p.add_argument("--shard-size", type=int, help="passed to gen curate (default: its own)")
    p.add_argument("--rerun", action="store_true", help="run again even where a stored result matches")
    p.add_argument("--keep-outputs", action="store_true", help="keep each run's OUT folder (large at 880K)")
    p.add_argument("--seed", type=int, default=0, help="the grower's seed")
    p.add_argument("--out-md", default=str(SCRATCH / "scale.md"))
    p.add_argument("--out-json", default=str(SCRATCH / "scale.json"))
    args = p.parse_args(argv)
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    settings = [s.strip().lower() for s in args.settings.split(",") if s.strip()]
    bad = [s for s in sizes if s not in SIZES] + [s for s in settings if s not in SETTINGS]
    if bad:
        p.error(f"unknown size or setting: {', '.join(bad)}")
    if not DATA.exists() and not args.skip_grow:
        p.error(f"{DATA} is absent (../shared/data sits beside the repo in CI only)")

    grown = {}
    for size in sizes:
        if args.skip_grow:
            if not grown_path(size).with_suffix(".json").exists():
                p.error(f"--skip-grow: {grown_path(size)} was never grown")
            grown[size] = json.loads(grown_path(size).with_suffix(".json").read_text())
        elif args.action == "grow" and len(sizes) == 1:
            grown[size] = grow_file(size, seed=args.seed)
        else:  # each size in its own process, so the grower's peak RSS is that size's
            subprocess.run([sys.executable, __file__, "grow", "--sizes", size, "--seed", str(args.seed)], check=True)
            grown[size] = json.loads(grown_path(size).with_suffix(".json").read_text())
    if args.action == "grow":
        return 0

    SCRATCH.mkdir(parents=True, exist_ok=True)
    mode = engine_mode()
    plan = []  # (setting, engine source, config)
    if "before" in settings:
        if args.before_src is None and mode == "sharded":
            p.error("--settings before needs --before-src (the working tree's gen curate is the sharded one)")
        src = args.before_src.resolve() if args.before_src else None
        if src is not None and engine_mode(src) != "in-memory":
            p.error(f"--before-src {src}: its gen curate has --executor; give the tree of the in-memory engine")
        plan.append(("before", src, chain_config(src, "-before")))
    if mode == "in-memory":
        if any(s != "before" for s in settings) and "before" not in settings:
            print(f"gen curate has no --executor/--workers: measuring the in-memory path only ({BEFORE})",
                  file=sys.stderr)
            plan.append(("before", None, chain_config(None, "-before")))
    else:
        cfg = chain_config()
        plan += [(s, None, cfg) for s in settings if s != "before"]
    results = []
    for size in sizes:
        for setting, src, cfg in plan:
            results.append(run_one(size, setting, src, cfg, args))
    kinds = filter_kinds()
    tgts = targets(results, kinds)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "mode": mode + (f" (before: {args.before_src})" if args.before_src else ""),
            "command": "python benchmarks/scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "grown": {s: {k: g.get(k) for k in ("records", "seconds", "peak_rss_mib", "sha256")}
                      for s, g in grown.items()}}
    md = markdown(results, tgts, kinds, meta)
    md += "\nGrower (its own process, streamed): " + "; ".join(
        f"{s}: {g['records']:,} records in {g.get('seconds')} s, peak RSS {g.get('peak_rss_mib')} MiB"
        for s, g in grown.items()) + "\n"
    Path(args.out_md).write_text(md, encoding="utf-8")
    Path(args.out_json).write_text(json.dumps({"meta": meta, "results": results, "targets": tgts}, indent=1))
    print(md)
    print(f"wrote {args.out_md} and {args.out_json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
