"""The README's commands and policy examples are the ones that work."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from engine.cli import app
from engine.load import load_policy_set

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(lang: str, text: str = README) -> list[str]:
    """Fenced code blocks whose opening fence names `lang` ("" for a bare fence)."""
    found, current, inside = [], [], None
    for line in text.splitlines():
        if line.startswith("```"):
            if inside is None:
                inside, current = line[3:].strip(), []
            else:
                if inside == lang:
                    found.append("\n".join(current) + "\n")
                inside = None
        elif inside is not None:
            current.append(line)
    return found


def test_the_quickstart_is_two_commands_and_ci_runs_the_test_one() -> None:
    quick = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = [b.strip() for b in blocks("sh", quick)]
    assert len(commands) == 2
    run, test = commands
    assert "goodwill run examples/shop-day.jsonl" in run
    assert (ROOT / "examples" / "shop-day.jsonl").exists()
    assert test in (ROOT / ".ci" / "run").read_text(), "CI must call the README's test command"


def test_the_authoring_example_is_a_valid_policy(tmp_path: Path) -> None:
    [example] = [b for b in blocks("yaml") if b.startswith("policy: replace-broken-part")]
    policies = tmp_path / "policies"
    policies.mkdir()
    shutil.copy(ROOT / "policies" / "budgets.yaml", policies)
    (policies / "example.yaml").write_text(example)
    [policy] = load_policy_set(policies).policies
    assert policy.id == "replace-broken-part" and [r.name for r in policy.rules] == [
        "trusted-by-default"
    ]
    # "the whole of its first rule": the file's lines up to its second rule, comments apart
    shown = [line.split("  #", 1)[0].rstrip() for line in example.splitlines()]
    live = (ROOT / "policies" / "replace-broken-part.yaml").read_text().splitlines()
    assert shown == live[: len(shown)]
    assert live[len(shown)].startswith("  - name:")


def test_the_error_example_is_what_check_prints() -> None:
    [shown] = [b for b in blocks("") if "unknown field 'order.amout'" in b]
    first = shown.splitlines()[0]
    assert first.startswith("policies/replace-broken-part.yaml:9:27: unknown field 'order.amout'")
    live = (ROOT / "policies" / "replace-broken-part.yaml").read_text().splitlines()[8]
    assert live.replace("order.age_days", "order.amout") in shown


def test_every_cli_command_is_in_the_reference() -> None:
    reference = README.split("## CLI reference", 1)[1].split("\n## ", 1)[0]
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else "")
        assert f"`goodwill {name}" in reference, f"README's CLI reference lacks `{name}`"


def test_the_code_map_names_every_module_and_only_those() -> None:
    code_map = README[README.index("Code map.") : README.index("## CLI reference")]
    named = set(re.findall(r"`([a-z_]+\.py)`", code_map))
    modules = {
        p.name for package in ("engine", "events") for p in (ROOT / package).glob("*.py")
    } - {"__init__.py"}
    assert sorted(modules - named) == [], "modules the README's code map does not name"
    assert sorted(named - modules) == [], "names in the code map that are no module"


def test_the_contexts_table_lists_every_state_field_and_only_those() -> None:
    from engine.facts import BUDGET_FIELDS, STATE_FIELDS

    table = README.split("The contexts:\n\n", 1)[1].split("\n\n", 1)[0]
    listed = {
        f"{context}.{name}"
        for context, names in re.findall(r"^\| `(\w+)` \| `([^`]*)`", table, re.M)
        if context != "event"
        for name in names.split()
    }
    fields = set(STATE_FIELDS) | set(BUDGET_FIELDS)
    assert sorted(fields - listed) == [], "fields the README's contexts table does not list"
    assert sorted(listed - fields) == [], "names in the contexts table that are no field"


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_to_a_readme_section_names_one() -> None:
    sections = {_slug(h) for h in re.findall(r"^#+ (.+)$", README, re.M)}
    links = re.findall(r"\]\(#([\w-]+)\)", README)
    for doc in ("docs/kafka.md", "docs/specs.md", "examples/README.md", "bench/README.md"):
        links += re.findall(r"README\.md#([\w-]+)\)", (ROOT / doc).read_text())
    assert links and sorted(set(links) - sections) == []


def test_the_state_schema_version_is_the_one_upgrading_names() -> None:
    from engine.state_file import STATE_SCHEMA_VERSION

    upgrading = " ".join(README.split("## Upgrading", 1)[1].split("\n## ", 1)[0].split())
    assert f"raises the file's schema version (now {STATE_SCHEMA_VERSION};" in upgrading
