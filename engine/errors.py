"""Errors for people: every problem a user can cause points at its file, line and column."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Span:
    """1-based line and column; `end_col` is exclusive, on the same line."""

    line: int
    col: int
    end_col: int


@dataclass(frozen=True)
class Diagnostic:
    file: str
    span: Span | None
    message: str
    hint: str | None = None

    def render(self, source: str | None = None) -> str:
        if self.span is None:
            head = f"{self.file}: {self.message}"
            return head if self.hint is None else f"{head}\n  {self.hint}"
        head = f"{self.file}:{self.span.line}:{self.span.col}: {self.message}"
        lines = [head]
        text = _line(source, self.span.line) if source is not None else None
        if text is not None:
            width = max(1, self.span.end_col - self.span.col)
            lines.append(f"    {text}")
            lines.append("    " + " " * (self.span.col - 1) + "^" * width)
        if self.hint:
            lines.append(f"  {self.hint}")
        return "\n".join(lines)


def _line(source: str, number: int) -> str | None:
    rows = source.splitlines()
    return rows[number - 1].rstrip() if 0 < number <= len(rows) else None


class PolicyError(Exception):
    """A policy set was refused; carries every diagnostic found, in file order."""

    def __init__(self, diagnostics: Sequence[Diagnostic], sources: dict[str, str]) -> None:
        self.diagnostics = tuple(diagnostics)
        self.sources = sources
        super().__init__(f"{len(self.diagnostics)} problem(s) in the policy set")

    def render(self) -> str:
        return "\n".join(d.render(self.sources.get(d.file)) for d in self.diagnostics)


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` is most likely a misspelling of, if any is close enough."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    close = closest(word, choices)
    return f"did you mean '{close}'?" if close else None


def relpath(path: Path) -> str:
    """Paths in messages are relative to the working directory when possible."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
