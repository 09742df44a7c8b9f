"""Subprocess entry for the run-folder tests: a real `generate_instructions` process with the fake teacher
(argv: OUT SEEDS NUM SLEEP [TEMPLATE]), user errors printed as one line with exit 2, like `gen`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "generator"))
from fake_teacher import FakeTeacher  # noqa: E402

from instructgen.cli import user_errors  # noqa: E402
from instructgen.config import generation_config  # noqa: E402
from instructgen.generator.bootstrap import generate_instructions  # noqa: E402

out, seeds, num, sleep = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
try:
    options = {"num": num, "batch_size": 3, "teacher": "fake", "seeds": seeds}
    if len(sys.argv) > 5:
        options["template"] = sys.argv[5]
    cfg = generation_config(options)
    generate_instructions(cfg, out, teacher=FakeTeacher(sleep=sleep), quiet=True)
except user_errors() as e:
    print(f"gen instructions: error: {e}", file=sys.stderr)
    sys.exit(2)
