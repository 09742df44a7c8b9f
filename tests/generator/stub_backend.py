"""A stand-in teacher backend for gen run tests: answers both generation stages (FakeTeacher for instructions,
FakeInstanceTeacher for instances, told apart by the prompt), counts the prompts and what was built and closed."""

from __future__ import annotations

from fake_teacher import FakeTeacher
from instances_fake import FakeInstanceTeacher


class Stub:
    built: list = []

    def __init__(self, model, **kw):
        self.name, self.kw, self.closed = f"stub:{model}", kw, 0
        self.supports = frozenset({"raw", "chat"})
        self.max_attempts = 1
        self.instructions, self.instances, self.prompts = FakeTeacher(), FakeInstanceTeacher(), 0
        Stub.built.append(self)

    def generate(self, prompts, sampling, on_tokens=None):
        self.prompts += len(prompts)
        return [(self.instances if "Task:" in p else self.instructions).generate([p], sampling)[0] for p in prompts]

    def close(self):
        self.closed += 1
