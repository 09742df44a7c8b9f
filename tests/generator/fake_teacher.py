"""A deterministic stand-in teacher for orchestration tests only (resume, batching, counting): it never proves
that generation works; the embedded-model tests do that."""

from __future__ import annotations

import hashlib
import random
import time

from instructgen.generator.teachers import Completion

VERBS = ["Describe", "Explain", "Summarize", "List", "Compare", "Classify", "Translate", "Rewrite", "Suggest",
         "Evaluate", "Outline", "Identify", "Estimate", "Plan", "Name"]
OBJECTS = ["a healthy breakfast for a runner", "the causes of inflation", "three uses of vinegar at home",
           "a polite reply to a late invoice", "the plot of a mystery novel", "a weekend trip on a budget",
           "the rules of chess for beginners", "an email asking for a deadline extension",
           "the difference between weather and climate", "ways to reduce plastic waste",
           "a short bedtime story about a fox", "the benefits of learning a second language",
           "a checklist for moving house", "the main idea of a news headline", "a workout for office workers"]
EXTRAS = ["in simple words", "for a ten year old", "in two sentences", "as a bulleted list", "with an example",
          "for a busy parent", "in a formal tone", "using a table of pros and cons"]


class FakeTeacher:
    name = "fake:deterministic"

    def __init__(self, sleep: float = 0.0, length_every: int = 0, garbage_every: int = 0):
        self.sleep, self.length_every, self.garbage_every = sleep, length_every, garbage_every
        self.calls = 0
        self.prompts_seen = 0  # garbage/length injection counts prompts, so it is certain to happen

    def generate(self, prompts, sampling):
        self.calls += 1
        out = []
        for i, p in enumerate(prompts):
            self.prompts_seen += 1
            h = int(hashlib.sha1(f"{p}|{sampling.seed}".encode()).hexdigest()[:12], 16)
            rng = random.Random(h)
            if self.garbage_every and self.prompts_seen % self.garbage_every == 0:
                out.append(Completion("", "stop", 10, 0))
                continue
            items = []
            for k in range(rng.randint(2, 6)):
                s = f"{rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(EXTRAS)}."
                if k == 1 and h % 3 == 1:  # a blacklisted task in about a third of the prompts
                    s = "Draw a picture of " + rng.choice(OBJECTS) + "."
                items.append(s)
            text = " " + "\n".join(f"{9 + k}. {s}" if k else s for k, s in enumerate(items))
            finish = "length" if (self.length_every and self.prompts_seen % self.length_every == 0) else "stop"
            out.append(Completion(text, finish, 100, 10 * len(items)))
        if self.sleep:
            time.sleep(self.sleep)
        return out


class FakeStreamTeacher(FakeTeacher):
    """FakeTeacher's completions through the streaming interface ("stream" in supports): `rows` rows decode
    at once and a completion takes 1 + hash % 9 steps, so rows finish out of order and batches overlap."""

    supports = frozenset({"raw", "stream"})

    def __init__(self, rows: int = 3, step_sleep: float = 0.0):
        super().__init__()
        self.rows, self.step_sleep = rows, step_sleep
        self.steps = self.cancelled = 0
        self.overlapped = 0  # steps on which rows of two batches were live together

    def render(self, prompt):
        return prompt

    def encode(self, text):
        return text

    def stream(self, sampling, on_tokens=None):
        return _FakeDecoder(self, sampling)


class _FakeRow:
    def __init__(self, text, seed, batch, teacher):
        from instructgen.generator.teachers import Sampling
        self.batch, self.finish = batch, None
        self.full = FakeTeacher.generate(teacher, [text], Sampling(seed=seed))[0]
        self.left = 1 + int(hashlib.sha1(self.full.text.encode()).hexdigest()[:6], 16) % 9
        self.made = 0


class _FakeDecoder:
    def __init__(self, teacher, sampling):
        self.t, self.live, self.pending, self.adds = teacher, [], [], 0

    def add(self, ids, seed=None):
        rows = [_FakeRow(text, seed, self.adds, self.t) for text in ids]
        self.adds += 1
        self.pending += rows
        return rows

    @property
    def busy(self):
        return bool(self.live or self.pending)

    @property
    def free(self):
        return max(self.t.rows - len(self.live) - len(self.pending), 0)

    def step(self):
        while self.pending and len(self.live) < self.t.rows:
            self.live.append(self.pending.pop(0))
        self.t.steps += 1
        self.t.overlapped += len({r.batch for r in self.live}) > 1
        for r in self.live:
            r.left -= 1
            r.made += 1
            if r.left == 0:
                r.finish = r.full.finish_reason
        self.live = [r for r in self.live if r.finish is None]
        if self.t.step_sleep:
            time.sleep(self.t.step_sleep)

    def completion(self, r):
        if r.finish == "cancelled":
            return Completion("", "cancelled", r.full.prompt_tokens if r.made else 0, r.made)
        return r.full

    def cancel(self):
        for r in self.live + self.pending:
            r.finish = "cancelled"
            self.t.cancelled += 1
        self.live, self.pending = [], []
