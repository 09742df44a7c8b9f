"""The `gen` / `instructgen` command line. Each command lives in `instructgen.commands.<name>`; heavy
libraries are imported inside `run`, so `gen --help` and `gen curate --help` stay instant."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

# command name -> module under instructgen.commands (in the order `gen --help` lists them)
COMMANDS = {
    "run": "run",
    "instructions": "instructions",
    "instances": "instances",
    "export": "export",
    "curate": "curate",
    "train": "train",
    "eval": "eval",
    "merge": "merge",
    "publish": "publish",
    "report": "report",
    "serve": "serve",
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(
        prog="gen", description="Turn seed tasks into a curated instruction-tuning dataset and a tuned student.")
    parser.add_argument("--version", action="version", version=f"instructgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if importlib.util.find_spec(f"instructgen.commands.{module}") is None:
            continue
        mod = importlib.import_module(f"instructgen.commands.{module}")
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's input at fault: printed as one clear line, no traceback."""
    from .config import ConfigError
    from .records import RecordError
    from .rundir import RunDirError
    from .templates import TemplateError
    from .models import ModelSpecError
    from .generator.teachers import TeacherSpecError
    from .generator.openai_teacher import TeacherRequestError
    return (ConfigError, RecordError, RunDirError, TemplateError, ModelSpecError, TeacherSpecError,
            TeacherRequestError, FileNotFoundError, FileExistsError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from . import rundir
    rundir.INVOCATION = ["gen"] + list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every default is local; never reach for a hub at run time
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        if getattr(args, "config", None) and getattr(args, "out", None) and getattr(args, "overwrite", False):
            rundir.refuse_overlap(args.out, [args.config])  # a config file is an input --overwrite must not remove
        return int(args._run(args) or 0)
    except user_errors() as e:
        print(f"gen {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system said no (permissions, a full disk, a folder where a file was meant)
        if not e.filename:
            raise
        print(f"gen {args.command}: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ngen {args.command}: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
