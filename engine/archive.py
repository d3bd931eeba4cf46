"""The policy sets a data directory activated, kept in it under their content hash.

A decision names the policy set that made it (`policy_set`, a content hash). To trace it to
the rules as they were written, or to decide its event again (`goodwill verify`), that
set's files must outlive the policy directory, which moves on. So each run keeps the files
of the set it activates in `<data-dir>/policy-sets/<hash>/`, once. A kept set is trusted as
far as its content goes: it is read like any policy directory and used only when it hashes
to its directory's name, so a file changed since cannot pass for the set that was run.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from engine.compile import CompiledSet, load
from engine.errors import PolicyError
from engine.policy import PolicySet

SETS_DIR = "policy-sets"

log = logging.getLogger("goodwill.archive")


def keep(data_dir: Path, policy_set: PolicySet) -> Path | None:
    """Keep `policy_set`'s files in `data_dir` unless they are already kept; return where.

    Keeping is for tracing decisions, not for making them: a directory that cannot be
    written is logged as a warning and the run goes on (None)."""
    target = data_dir / SETS_DIR / policy_set.hash
    if target.is_dir() or not policy_set.texts:
        return target
    scratch: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, then renamed into place: a kept set is whole or absent.
        scratch = target.parent / f".{policy_set.hash}-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)  # left by a run that died writing it
        scratch.mkdir()
        for name, text in policy_set.texts:
            with (scratch / name).open("w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())  # on disk before the name says the set is whole
        scratch.rename(target)
    except OSError as err:
        if not target.is_dir():  # not merely another run that kept it first
            log.warning("could not keep policy set %s in %s: %s", policy_set.hash, target, err)
            return None
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


@dataclass
class Kept:
    """The sets kept in a data directory, by hash, and the kept directories not used."""

    sets: dict[str, CompiledSet] = field(default_factory=dict)
    where: dict[str, Path] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # one line each: which and why


def kept(data_dir: Path) -> Kept:
    """Every policy set kept in `data_dir` that still hashes to its directory's name."""
    found = Kept()
    root = data_dir / SETS_DIR
    if not root.is_dir():
        return found
    for path in sorted(root.iterdir()):
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            compiled = load(path)
        except PolicyError as err:
            found.refused.append(f"{path}: refused ({len(err.diagnostics)} problem(s)); not used")
            continue
        if compiled.hash != path.name:
            found.refused.append(
                f"{path}: its files hash to {compiled.hash}, so they changed after they were"
                " kept; not used"
            )
            continue
        found.sets[compiled.hash] = compiled
        found.where[compiled.hash] = path
    return found
