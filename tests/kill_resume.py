"""Run a command again and again, killing it (SIGKILL) in its first attempts, until it writes OUT/completed:
the kill -9 resume tests' common loop."""

from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path


def run_killed(argv: list[str], out: Path, seed: int, killed_attempts: int = 2, wait_s=(1.2, 2.0),
               attempts: int = 12) -> int:
    """Start `argv` up to `attempts` times, killing each of the first `killed_attempts` after a random wait (python
    start-up and imports take ~0.7 s), until `out/completed` exists. Returns how many runs were killed."""
    rng, kills = random.Random(seed), 0
    for attempt in range(attempts):
        p = subprocess.Popen(argv)
        if attempt < killed_attempts:
            time_s = rng.uniform(*wait_s)
            try:
                p.wait(timeout=time_s)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                kills += 1
        p.wait()
        if (out / "completed").exists():
            break
    return kills
