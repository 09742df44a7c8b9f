"""Prompt templates: Jinja2 files rendered strictly (an undefined variable is an error, not an empty string).

A template whose file name ends in `.chat.jinja2` renders the user turn of a chat prompt; any other renders a
plain-completion prompt. `load_template("self_instruct.completion")` finds a packaged template by name; a path
loads a user's own file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEMPLATE_DIR = Path(__file__).parent


class TemplateError(ValueError):
    pass


@dataclass
class PromptTemplate:
    name: str
    path: Path
    source: str
    _compiled: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def is_chat(self) -> bool:
        return self.path.name.endswith(".chat.jinja2")

    def render(self, **variables):
        """Render to a string (completion) or a one-turn message list (chat). Undefined variables raise."""
        import jinja2
        try:
            if self._compiled is None:  # compile once: from_string costs ~1 ms a call, render ~20 us
                env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                                         autoescape=False)
                self._compiled = env.from_string(self.source)
            text = self._compiled.render(**variables)
        except jinja2.UndefinedError as e:
            raise TemplateError(f"{self.path}: {e.message}") from None
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"{self.path}:{e.lineno}: {e.message}") from None
        return [{"role": "user", "content": text}] if self.is_chat else text

    def check_syntax(self) -> None:
        import jinja2
        try:
            jinja2.Environment().parse(self.source)
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"{self.path}:{e.lineno}: {e.message}") from None


def load_template(name_or_path: str | Path) -> PromptTemplate:
    """A packaged template by name (with or without `.jinja2`) or a user's file by path."""
    p = Path(name_or_path)
    if not p.exists():
        cand = TEMPLATE_DIR / (str(name_or_path) if str(name_or_path).endswith(".jinja2") else f"{name_or_path}.jinja2")
        if not cand.exists():
            names = sorted(x.name.removesuffix(".jinja2") for x in TEMPLATE_DIR.glob("*.jinja2"))
            raise TemplateError(f"template '{name_or_path}' not found: not a file, nor one of {names}")
        p = cand
    t = PromptTemplate(name=p.name.removesuffix(".jinja2"), path=p, source=_read_text(p))
    t.check_syntax()
    return t


def _read_text(p: Path) -> str:
    """A template file's text; a folder, an unreadable file, a NUL byte or bytes that are not UTF-8 (a binary
    file given by mistake) raise TemplateError naming the file and the line."""
    if p.is_dir():
        raise TemplateError(f"template {p}: is a folder, not a template file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise TemplateError(f"template {p}: cannot read: {e.strerror or e}") from None
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise TemplateError(f"{p}:{line}: not a text template (a NUL byte; a binary file?)")
    from ..records import RecordError, utf8_text
    try:
        return utf8_text(data, p)
    except RecordError as e:
        raise TemplateError(f"{e} (a binary file?)") from None
