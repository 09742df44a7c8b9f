"""The `gen` / `instructgen` command line. Each command lives in `instructgen.commands.<name>`; heavy
libraries are imported inside `run`, so `gen --help` and `gen curate --help` stay instant.

Also here, for every command alike: `--json` (one JSON object on stdout at the end: the command, its exit
status, its output folder and the counts of that folder's summary.json; everything else the command prints
goes to stderr), one-line user errors (exit 2), a spent budget (exit 3), and a quiet exit when stdout is a pipe
that closed early (`gen curate --print-config | head -1`)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
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
    "completion": "completion",
}
EXIT_BUDGET = 3  # a --max-cost / --max-tokens budget was spent: what finished is kept
EXIT_PIPE = 141  # stdout closed early (128 + SIGPIPE, what `yes | head` reports)
JSON_HELP = "print one JSON summary on stdout at the end (command, exit status, output, counts); the rest on stderr"


def build_parser(only: list[str] | None = None) -> argparse.ArgumentParser:
    """gen's parser; with `only`, just those commands get their arguments (the others are listed, with their
    help): a command's flags are generated from its typed config, whose module then need not load for another
    command or for `gen --help`."""
    from . import __version__
    parser = argparse.ArgumentParser(
        prog="gen", description="Turn seed tasks into a curated instruction-tuning dataset and a tuned student.")
    parser.add_argument("--version", action="version", version=f"instructgen {__version__}")
    parser.add_argument("--json", action="store_true", dest="json_summary", help=JSON_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if importlib.util.find_spec(f"instructgen.commands.{module}") is None:
            continue
        mod = importlib.import_module(f"instructgen.commands.{module}")
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if only is not None and name not in only:
            continue
        mod.add_arguments(p)
        if not any("--json" in a.option_strings for a in p._actions):
            # SUPPRESS: `gen --json CMD` sets it and `gen CMD` must not reset it to False
            p.add_argument("--json", action="store_true", dest="json_summary", default=argparse.SUPPRESS,
                           help=JSON_HELP)
        p.set_defaults(_run=mod.run)
    return parser


# ------------------------------------------------------------------------------ flags from a typed config

def add_config_flags(p: argparse.ArgumentParser, cls, skip: tuple[str, ...] = (), tweak: dict | None = None,
                     preset_fields: tuple[str, ...] = ()) -> list[str]:
    """One flag per field of the dataclass `cls`, but those in `skip`: `--kebab-name`, typed from the annotation
    (bool: --x / --no-x; a list: comma-separated or repeated; a mapping: YAML such as '{device: cuda}'), its help
    the field's doc and default. Every flag defaults to None (not given), so presets and --config apply.
    `tweak[field]` adds argparse keywords (choices, metavar, help) and `aliases` (existing short forms: --lr);
    `preset_fields` get "default: set by --preset". Returns the fields given a flag."""
    import dataclasses
    tweak = tweak or {}
    group = p.add_argument_group(f"options ({cls.__name__}; also --config FILE, --set KEY=VALUE)")
    done = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kw = dict(_flag_kind(f.type, f.name), dest=f.name, default=None)
        extra = dict(tweak.get(f.name, {}))
        aliases = extra.pop("aliases", ())
        kw["help"] = _flag_help(f, f.name in preset_fields)
        kw.update(extra)
        group.add_argument("--" + f.name.replace("_", "-"), *aliases, **kw)
        done.append(f.name)
    return done


def flag_values(args, cls) -> dict:
    """The given (not None) flag values of `cls`'s fields on parsed `args`."""
    import dataclasses
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}


def _flag_kind(annotation: str, name: str) -> dict:
    base = str(annotation).removesuffix(" | None")
    kinds = {"bool": dict(action=argparse.BooleanOptionalAction), "int": dict(type=int, metavar="N"),
             "float": dict(type=float, metavar="X"),
             "str": dict(type=str), "list[str]": dict(action=_ListFlag, metavar="A,B"),
             "str | list[str]": dict(type=_str_or_list, metavar="NAME|A,B"),
             "dict": dict(type=_yaml_mapping, metavar="{KEY: VALUE}")}
    if base not in kinds:
        raise TypeError(f"option '{name}': no flag for the type {annotation}; add one to cli._flag_kind")
    return kinds[base]


def _flag_help(f, by_preset: bool) -> str:
    import dataclasses
    text = f.metadata.get("doc", "")
    default = f.default if f.default is not dataclasses.MISSING else None
    if by_preset:
        text += " (default: set by --preset)"
    elif isinstance(default, (int, float, str)) and not isinstance(default, bool) and default != "":
        text += f" (default {default})"
    return text.replace("%", "%%")


class _ListFlag(argparse.Action):
    """A list option: `--x a,b` or `--x a --x b` (both give [a, b]); `--x ''` gives the empty list."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest, None) or [])
        setattr(namespace, self.dest, items + [v for v in values.split(",") if v])


def _str_or_list(value: str):
    items = [v for v in value.split(",") if v]
    return items[0] if len(items) == 1 else items


def _yaml_mapping(value: str) -> dict:
    import yaml
    try:
        data = yaml.safe_load(value)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError(f"expected a YAML mapping such as '{{device: cuda}}', got {value!r}")
    return data


def add_set_flag(p: argparse.ArgumentParser, example: str) -> None:
    """`--set KEY=VALUE` (repeatable) into `args.sets`."""
    from .config import SET_HELP
    p.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE",
                   help=f"{SET_HELP} (e.g. --set {example})".replace("%", "%%"))


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


def budget_reached() -> type[BaseException]:
    from .generator.teachers import BudgetReached
    return BudgetReached


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    word = _command_word(argv)
    parser = build_parser(only=[word] if word else [])
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error argparse already explained on stderr
        if e.code and "--json" in argv:
            emit_json(_command_word(argv), e.code if isinstance(e.code, int) else 2, None,
                      error="invalid arguments (see stderr)")
        raise
    if not getattr(args, "_run", None):
        as_json = getattr(args, "json_summary", False)
        parser.print_help(sys.stderr if as_json else None)
        if as_json:
            emit_json(None, 2, None, error="no command given (see stderr)")
        return 2
    from . import rundir
    rundir.INVOCATION = ["gen"] + argv
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every default is local; never reach for a hub at run time
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    as_json = getattr(args, "json_summary", False)
    error = None
    try:
        with stdout_to_stderr(as_json):
            code, error = run_command(args)
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        return EXIT_PIPE
    except BaseException as e:  # a bug (the traceback follows on stderr): scripts still get their one object
        if as_json and not isinstance(e, SystemExit):
            emit_json(args.command, 1, output_of(args), error=f"internal error ({type(e).__name__}); see stderr")
        raise
    if as_json:
        emit_json(args.command, code, output_of(args), error=error, extra=getattr(args, "json_counts", None))
    return code


def run_command(args) -> tuple[int, str | None]:
    """Run the parsed command; returns (exit status, the one-line error or None)."""
    try:
        if getattr(args, "config", None) and getattr(args, "out", None) and getattr(args, "overwrite", False):
            from .rundir import refuse_overlap
            refuse_overlap(args.out, [args.config])  # a config file is an input --overwrite must not remove
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the BrokenPipeError handling of main
        return code, None
    except BrokenPipeError:
        raise
    except user_errors() as e:
        return _fail(args, str(e), 2)
    except budget_reached() as e:
        msg = str(e) or "what finished is kept; re-run the same command with a larger budget to resume"
        print(f"gen {args.command}: budget reached: {msg}", file=sys.stderr)
        return EXIT_BUDGET, f"budget reached: {msg}"
    except OSError as e:  # the file system said no (permissions, a full disk, a folder where a file was meant)
        if not e.filename:
            raise
        return _fail(args, f"{e.filename}: {e.strerror or e}", 2)
    except KeyboardInterrupt:
        print(f"\ngen {args.command}: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130, "interrupted"


def _fail(args, msg: str, code: int) -> tuple[int, str]:
    print(f"gen {args.command}: error: {msg}", file=sys.stderr)
    return code, msg


# ------------------------------------------------------------------------------------------------ --json

@contextlib.contextmanager
def stdout_to_stderr(active: bool):
    """While a `--json` command runs, whatever it prints to stdout (Python prints and child processes alike)
    goes to stderr, so stdout holds only the JSON summary."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = None
    with contextlib.suppress(AttributeError, OSError, ValueError):  # no real fd (an embedding or a test capture)
        out_fd, err_fd = sys.__stdout__.fileno(), sys.__stderr__.fileno()
        saved = os.dup(out_fd)
        os.dup2(err_fd, out_fd)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, sys.__stdout__.fileno())
            os.close(saved)


def output_of(args) -> str | None:
    """The folder (or file) the command wrote: --out, or the command's documented default."""
    cmd, out = args.command, getattr(args, "out", None)
    if cmd == "publish":
        out = getattr(args, "local_dir", None) or (os.path.join(args.run_dir, "publish") if args.dry_run else None)
    elif out is None and cmd == "instances" and os.path.isdir(getattr(args, "input", "") or ""):
        out = os.path.join(args.input, "instances")
    elif out is None and cmd == "merge":
        out = os.path.join(args.dir, "merged")
    elif out is None and cmd == "report":
        out = os.path.join(args.run_dir, "report.html")
    return os.path.abspath(out) if out else None


def counts(summary: object, depth: int = 0) -> dict:
    """The numbers of a summary.json (kept, rejected, per-reason counts, tokens...), nested stages kept."""
    if not isinstance(summary, dict):
        return {}
    res = {}
    for k, v in summary.items():
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            res[k] = v
        elif isinstance(v, dict) and depth < 2:
            inner = counts(v, depth + 1)
            if inner:
                res[k] = inner
    return res


def emit_json(command: str | None, code: int, output: str | None, error: str | None = None,
              extra: dict | None = None) -> None:
    """Print the `--json` object: command, exit status, output, whether it is complete, counts, error. `extra`
    are counts a command sets on its args as `json_counts` when its output has no summary.json (`gen export`
    writes a file: the examples it wrote)."""
    summary, completed = {}, None
    if output and os.path.isdir(output):
        if os.path.exists(os.path.join(output, "config.json")):  # a stage or run folder: has it finished?
            completed = os.path.exists(os.path.join(output, "completed"))
        for name in ("summary.json", os.path.join("instructgen", "manifest.json")):  # a stage; a publish build
            with contextlib.suppress(OSError, ValueError):
                with open(os.path.join(output, name), encoding="utf-8") as f:
                    summary = json.load(f)
                break
    obj = {"command": command, "exit_status": code, "output": output, "completed": completed,
           "counts": {**counts(summary), **counts(extra or {})}, "error": error}
    try:
        print(json.dumps(obj, ensure_ascii=False), flush=True)
    except BrokenPipeError:
        _stdout_closed()


def _command_word(argv: list[str]) -> str | None:
    return next((a for a in argv if a in COMMANDS), None)


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader went away; if so, point it at /dev/null, so the interpreter's
    final flush does not print a second BrokenPipeError."""
    try:
        sys.stdout.flush()
        closed = _pipe_reader_gone()
    except BrokenPipeError:
        closed = True
    except (OSError, ValueError):
        closed = False
    if not closed:
        return False
    with contextlib.suppress(AttributeError, OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return True


def _pipe_reader_gone() -> bool:
    """A pipe on stdout whose read end is closed (poll reports POLLERR on the write end)."""
    import select
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
