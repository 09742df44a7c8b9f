"""gen serve: serve a teacher over an OpenAI-compatible HTTP API."""

from __future__ import annotations

HELP = "serve a teacher over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions)"


def add_arguments(p) -> None:
    from ..generator.serve import add_arguments as add
    add(p)


def run(args) -> int:
    from ..generator.serve import run as serve
    return serve(args)
