"""Subprocess entry for the kill -9 test: the real `gen eval` command line with every generate call slowed down
(argv: SECONDS, then gen's arguments), so the test can kill it between batches."""
import sys
import time

from instructgen.cli import main
from instructgen.eval import answers

pause = float(sys.argv[1])
real = answers.Student.generate_batch


def slow(self, prompts, max_new_tokens):
    out = real(self, prompts, max_new_tokens)
    time.sleep(pause)
    return out


answers.Student.generate_batch = slow
sys.exit(main(sys.argv[2:]))
