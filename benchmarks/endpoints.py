"""Spreading over fake servers that serve one request at a time (a lock per server), wall seconds."""
import sys, threading, time, socket
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]  # the repo, when this is benchmarks/endpoints.py
sys.path.insert(0, str(ROOT / "tests")); sys.path.insert(0, str(ROOT / "tests" / "generator"))
from test_openai_teacher import FaultServer
from instructgen.generator.teachers import make_teacher, Sampling

S = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=8, presence_penalty=0.0)

def serial(seconds):
    lock = threading.Lock()
    def hold(p):
        with lock:
            time.sleep(seconds)
        return 0.0
    return hold

def closed():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return f"http://127.0.0.1:{s.getsockname()[1]}/v1"

def run(label, urls, servers, n=32, **kw):
    t = make_teacher("openai:" + ",".join(urls) + "@m", max_attempts=2, backoff_s=0.01, **kw)
    t0 = time.perf_counter(); out = t.generate([f"p{i}" for i in range(n)], S); dt = time.perf_counter() - t0
    assert [c.text for c in out] == [f"echo:p{i}" for i in range(n)]
    print(f"{label:55s} {dt:5.2f} s  per server: {[len(s.requests) for s in servers]}")
    for s in servers: s.requests.clear()

with FaultServer(hold=serial(0.05)) as a, FaultServer(hold=serial(0.05)) as b, FaultServer(hold=serial(0.2)) as slow:
    run("1 endpoint (50 ms/request, one at a time)", [a.url], [a])
    run("2 endpoints round_robin", [a.url, b.url], [a, b])
    run("2 endpoints + 1 refusing connections", [a.url, closed(), b.url], [a, b])
    run("fast + 4x slower, round_robin", [a.url, slow.url], [a, slow])
    run("fast + 4x slower, least_loaded", [a.url, slow.url], [a, slow], balance="least_loaded", max_concurrency=1)
    run("fast + 4x slower, least_loaded, max_concurrency 8", [a.url, slow.url], [a, slow], balance="least_loaded")
    run("fast + 4x slower, least_loaded, max_concurrency 2", [a.url, slow.url], [a, slow], balance="least_loaded", max_concurrency=2)
