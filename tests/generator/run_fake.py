"""Subprocess entry for the kill -9 test: a real `generate_instructions` run with the fake teacher."""
import sys

sys.path.insert(0, sys.argv[3])
from fake_teacher import FakeStreamTeacher, FakeTeacher  # noqa: E402

from instructgen.config import generation_config  # noqa: E402
from instructgen.generator.bootstrap import generate_instructions  # noqa: E402

cfg = generation_config({"num": int(sys.argv[2]), "batch_size": 3, "teacher": "fake"})
stream = len(sys.argv) > 4 and sys.argv[4] == "stream"
teacher = FakeStreamTeacher(rows=2, step_sleep=0.05) if stream else FakeTeacher(sleep=0.4)
generate_instructions(cfg, sys.argv[1], teacher=teacher, quiet=True)
