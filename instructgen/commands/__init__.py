"""CLI commands: one module per command with `HELP`, `add_arguments(parser)` and `run(args) -> int`.
Modules import only the standard library at top level, so `gen --help` never loads torch."""
