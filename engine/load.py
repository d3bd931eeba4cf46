"""Policy files: YAML with positions → validated, typed, content-hashed `PolicySet`.

Nothing downstream of `load_policy_set` ever sees an unvalidated policy: every problem
is collected as a positioned `Diagnostic` and the whole set is refused together. This
module finds a directory's files and builds the set from them, with its content hash;
reading one file is `engine.policy_file`'s and `engine.budgets_file`'s, and the set's
types are `engine.policy`'s. Its own module because which files make a set, and how the
set is refused or hashed as a whole, change apart from what one file may say.
"""

from __future__ import annotations

from pathlib import Path

from engine.budgets_file import BUDGETS_FILE, read_budgets
from engine.errors import Diagnostic, PolicyError, Span, relpath
from engine.policy import Budget, Policy, PolicySet, digest
from engine.policy_file import PolicyReader
from engine.yaml_file import File, read_yaml


def load_policy_set(directory: Path) -> PolicySet:
    """Read and validate every policy file in `directory`; refuse the set on any problem."""
    if not directory.is_dir():
        found = directory.exists()
        problem = "is not a directory" if found else "no such policy directory"
        hint = (
            f"give the directory that holds the policy files: {relpath(directory.parent)}"
            if found
            else "run where policies/ is, or give its path (`goodwill check DIR`, --policies DIR)"
        )
        raise PolicyError([Diagnostic(relpath(directory), None, problem, hint)], {})
    files: list[File] = []
    budgets: dict[str, Budget] = {}
    currency = "USD"
    if (directory / BUDGETS_FILE).exists():
        bf, budgets, currency = read_budgets(directory / BUDGETS_FILE)
        files.append(bf)
    policies: list[Policy] = []
    seen: dict[str, str] = {}
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".yaml", ".yml"))
    nested = sorted(
        p
        for p in directory.glob("*/**/*")
        if p.suffix.lower() in (".yaml", ".yml")
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )
    for path in nested:  # a policy filed in a subdirectory would silently never apply
        misplaced = Diagnostic(
            relpath(path),
            None,
            "a policy file in a subdirectory is not read",
            f"policy files sit directly in {relpath(directory)}: move it there",
        )
        files.append(File(relpath(path), "", [misplaced]))
    for path in paths:
        if path.name == BUDGETS_FILE:
            continue
        f, doc = read_yaml(path)
        files.append(f)
        if doc is None:
            if not f.problems:  # nothing but blanks and comments: a slip, not a policy
                f.error(Span(1, 1, 2), "empty policy file", "delete the file to drop a policy")
            continue
        policy = PolicyReader(f, budgets, directory / BUDGETS_FILE).read(doc)
        if policy is None:
            continue
        if policy.id in seen:
            f.error(
                f.value_span(doc, "policy"),
                f"duplicate policy id '{policy.id}'",
                f"also defined in {seen[policy.id]}",
            )
            continue
        seen[policy.id] = policy.path
        policies.append(policy)
    problems = [d for f in files for d in f.problems]
    if problems:
        raise PolicyError(problems, {f.path: f.text for f in files})
    if not policies:
        raise PolicyError(
            [
                Diagnostic(
                    relpath(directory),
                    None,
                    "no policy files found",
                    "policy files are *.yaml next to budgets.yaml",
                )
            ],
            {},
        )
    policies.sort(key=lambda p: p.id)
    budget_hash = digest(
        {b.name: [b.scope, b.period, b.amount, b.overflow.to, b.say] for b in budgets.values()}
    )
    set_hash = digest([[p.id, p.version, p.hash] for p in policies] + [budget_hash, currency])
    return PolicySet(
        tuple(policies),
        budgets,
        currency,
        set_hash,
        tuple((p.path, p.id, p.version, p.hash) for p in policies),
        tuple(sorted((Path(f.path).name, f.text) for f in files)),
    )
