"""A YAML file read with positions: its text, its tree, and the problems found so far, each
pointing at its line and column. Policy files and budgets.yaml are read, and refused, the same
way (not a small UTF-8 text, an alias, a NUL or another control character, nesting too deep,
invalid YAML), and their keys checked the same way; what the keys mean is for the readers of
each kind of file (`engine.policy_file`, `engine.budgets_file`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.reader import ReaderError

from engine.errors import Diagnostic, Span, closest, relpath

_MAX_FILE_BYTES = 1 << 20


@dataclass
class File:
    """One YAML file being read: its text, its tree and the problems found so far."""

    path: str
    text: str
    problems: list[Diagnostic] = field(default_factory=list)
    # Per mapping (by id), the known keys its unknown ones were taken for: a misspelt
    # required key is one problem, not also a missing one.
    meant: dict[int, set[str]] = field(default_factory=dict)

    def missing(self, node: CommentedMap, key: str) -> bool:
        """Whether `key` is absent from `node` and no misspelling of it is there instead."""
        return key not in node and key not in self.meant.get(id(node), ())

    def error(self, span: Span | None, message: str, hint: str | None = None) -> None:
        self.problems.append(Diagnostic(self.path, span, message, hint))

    def key_span(self, node: CommentedMap, key: str) -> Span:
        line, col = node.lc.key(key)
        return Span(line + 1, col + 1, col + 1 + len(str(key)))

    def value_span(self, node: CommentedMap | CommentedSeq, key: Any) -> Span:
        line, col = node.lc.item(key) if isinstance(node, CommentedSeq) else node.lc.value(key)
        value = node[key]
        text = self.text.splitlines()[line] if line < len(self.text.splitlines()) else ""
        width = len(str(value)) if not isinstance(value, dict | list) else 1
        if text[col : col + 1] in ("'", '"'):
            col += 1
        elif text[col : col + 1] in ("|", ">"):
            # block scalar: the text starts on the next line, at that line's indentation
            rows = self.text.splitlines()
            nxt = rows[line + 1] if line + 1 < len(rows) else ""
            return Span(line + 2, len(nxt) - len(nxt.lstrip()) + 1, len(nxt) + 1)
        return Span(line + 1, col + 1, col + 1 + min(width, max(1, len(text) - col)))

    def keys(
        self,
        node: Any,
        allowed: dict[str, str],
        where: str,
        required: tuple[str, ...],
        top: bool = False,
    ) -> bool:
        """Whether `node` is a mapping with the `required` keys; every unknown key is a
        problem. `top`: the node is the whole file (a problem then points at its start)."""
        if not isinstance(node, CommentedMap):
            hint = "the file starts with its keys: " + ", ".join(required) if top else None
            self.error(Span(1, 1, 2) if top else None, f"{where} must be a mapping", hint)
            return False
        for key in node:
            if key not in allowed:
                close = closest(str(key), allowed)
                if close is not None:
                    self.meant.setdefault(id(node), set()).add(close)
                hint = f"did you mean '{close}'?" if close else None
                self.error(
                    self.key_span(node, key),
                    f"unknown key '{key}' in {where}",
                    hint or "allowed: " + ", ".join(sorted(allowed)),
                )
        ok = True
        for key in required:
            if key not in node:
                ok = False
            if self.missing(node, key):
                line, col = node.lc.line, node.lc.col
                self.error(
                    Span(line + 1, col + 1, col + 2), f"{where} needs '{key}'", allowed.get(key)
                )
        return ok

    def text_value(
        self, node: CommentedMap, key: str, required: bool = True, limit: int | None = None
    ) -> str | None:
        """The text at `key`; `limit`: the most characters the decision contract takes for
        it (decisions are serialized unvalidated, so the policy is held to it here)."""
        value = node.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            self.error(self.value_span(node, key), f"'{key}' must be text")
            return None
        if limit is not None and len(value) > limit:
            self.error(
                self.value_span(node, key),
                f"'{key}' is {len(value):,} characters; decisions carry at most {limit:,}",
                "shorten it",
            )
            return None
        return value


def _after(prefix: str) -> Span:
    """The character that follows `prefix`, the text of a file up to it."""
    line = prefix.count("\n") + 1
    col = len(prefix) - (prefix.rfind("\n") + 1) + 1
    return Span(line, col, col + 1)


def read_yaml(path: Path) -> tuple[File, Any]:
    if not path.is_file() or path.stat().st_size > _MAX_FILE_BYTES:
        f = File(relpath(path), "")
        what = "not a regular file" if not path.is_file() else "larger than 1 MB"
        f.error(None, f"{what}: a policy file is a small text file", "replace it with one")
        return f, None
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        f = File(relpath(path), raw.decode("utf-8", "replace"))
        f.error(
            _after(raw[: err.start].decode("utf-8")), "not UTF-8 text", "save the file as UTF-8"
        )
        return f, None
    f = File(relpath(path), text)
    try:
        for event in YAML(typ="rt").parse(text):
            if isinstance(event, AliasEvent):  # also what a `<<:` merge key copies from
                m = event.start_mark
                f.error(
                    Span(m.line + 1, m.column + 1, m.column + 2 + len(event.anchor or "")),
                    f"an alias (*{event.anchor}) copies another part of the file",
                    "write it out where it applies: each rule reads whole where it stands",
                )
                return f, None
        return f, YAML(typ="rt").load(text)
    except RecursionError:  # `[[[[...` a few hundred deep: the YAML reader recurses per level
        f.error(None, "not valid YAML: nested too deeply", "write it flatter")
        return f, None
    except ReaderError as err:  # a NUL or another control character
        f.error(
            _after(text[: err.position]), f"not valid YAML: {err.reason}", "remove the character"
        )
        return f, None
    except MarkedYAMLError as err:
        mark = err.problem_mark
        span = Span(mark.line + 1, mark.column + 1, mark.column + 2) if mark else None
        if isinstance(err, DuplicateKeyError):
            hint = "a key appears once per mapping: remove or rename one of them"
        elif err.context and err.context_mark is not None:  # e.g. an unclosed [ or {
            where = err.context_mark
            hint = f"{err.context}, which started at {where.line + 1}:{where.column + 1}"
        else:
            hint = "check indentation and quoting"
        f.error(span, f"not valid YAML: {err.problem}", hint)
        return f, None


def plain(node: Any) -> Any:
    """ruamel's commented tree → plain data, for hashing."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node
