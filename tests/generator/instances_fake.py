"""A deterministic stand-in teacher for `gen instances` orchestration tests only (resume, batching, counting):
it never proves that generation works; the embedded-model test does that. Run as a script it does a real
`generate_instances` run with it (the kill -9 test): python instances_fake.py INPUT OUT."""

from __future__ import annotations

import re
import sys
import time

from instructgen.generator.teachers import Completion


def task_of(prompt: str) -> str:
    return re.findall(r"^Task: (.*)$", prompt, re.M)[-1]


class FakeInstanceTeacher:
    """Answers by the task's wording: "label" tasks are classification, "conflict" tasks give one input two
    outputs, "nothing" tasks get an empty completion, "long" tasks are cut by the token limit."""

    name = "fake:instances"

    def __init__(self, sleep: float = 0.0, fail_on_call: int | None = None):
        self.sleep, self.fail_on_call = sleep, fail_on_call
        self.calls, self.prompts = 0, []

    def generate(self, prompts, sampling):
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise RuntimeError("simulated crash")
        self.prompts += list(prompts)
        if self.sleep:
            time.sleep(self.sleep)
        return [self._one(p) for p in prompts]

    def _one(self, p: str) -> Completion:
        task = task_of(p)
        n = sum(map(ord, task)) % 97
        if p.endswith("Classification:"):
            return Completion(" Yes" if "label" in task else " perhaps" if "unsure" in task else " No", "stop", 50, 1)
        if "nothing" in task:
            return Completion("", "stop", 50, 0)
        if p.endswith("Class label:"):
            return Completion(f" Good\nInput: text {n} one\nClass label: Bad\nInput: text {n} two", "stop", 50, 20)
        if "conflict" in task:
            return Completion("Input: same\nOutput: A\nExample 2\nInput: same\nOutput: B", "stop", 50, 20)
        text = (f"Input: question {n}\nOutput: answer {n}\nExample 2\nInput: question {n}\nOutput: answer {n}\n"
                f"Example 3\nInput: x\nOutput: x\nExample 4\nOutput: answer {n} alone")
        if "long" in task:
            return Completion(text + "\nExample 5\nInput: cut off mid", "length", 50, 300)
        return Completion(text, "stop", 50, 40)


if __name__ == "__main__":
    from instructgen.generator.instances import InstancesConfig, generate_instances
    generate_instances(InstancesConfig(batch_size=2), sys.argv[1], sys.argv[2],
                       teacher=FakeInstanceTeacher(sleep=0.3), quiet=True)
