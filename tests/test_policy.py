"""Policy files: refused with positions and hints, or accepted with stable hashes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.compile import load
from engine.errors import PolicyError, Span, relpath
from engine.load import load_policy_set

POLICIES = Path(__file__).resolve().parent.parent / "policies"


@pytest.fixture
def pdir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def refused(directory: Path) -> PolicyError:
    with pytest.raises(PolicyError) as err:
        load_policy_set(directory)
    return err.value


def test_the_library_loads_with_every_policy() -> None:
    ps = load_policy_set(POLICIES)
    ids = [p.id for p in ps.policies]
    assert ids == sorted(ids)
    assert {
        "replace-broken-part",
        "expedite-within-budget",
        "goodwill-by-lifetime-value",
        "trust-by-default",
        "follow-through",
        "recover-the-moment",
        "warm-handoff",
        "root-cause-alert",
        "take-responsibility",
    } <= set(ids)
    assert all(p.principle and p.owner and p.summary for p in ps.policies)


def test_hash_ignores_comments_but_not_meaning(pdir: Path) -> None:
    before = load_policy_set(pdir)
    f = pdir / "replace-broken-part.yaml"
    f.write_text("# a comment an auditor added\n" + f.read_text())
    assert load_policy_set(pdir).hash == before.hash
    edit(f, "up_to: 20", "up_to: 25")
    after = load_policy_set(pdir)
    assert after.hash != before.hash
    changed = {p.id for p in after.policies} - {
        p.id
        for p in after.policies
        if p.hash == next(q.hash for q in before.policies if q.id == p.id)
    }
    assert changed == {"replace-broken-part"}


def test_unknown_field_points_at_it_with_a_suggestion(pdir: Path) -> None:
    edit(pdir / "replace-broken-part.yaml", "order.age_days <= 365", "order.age_dayz <= 365")
    err = refused(pdir)
    [d] = err.diagnostics
    assert d.file.endswith("replace-broken-part.yaml")
    assert d.span is not None and (d.span.line, d.span.col) == (9, 27)
    assert d.span.end_col - d.span.col == len("order.age_dayz")
    assert d.hint == "did you mean 'order.age_days'?"
    rendered = err.render()
    assert "replace-broken-part.yaml:9:27: unknown field 'order.age_dayz'" in rendered
    assert "\n                              ^^^^^^^^^^^^^^\n" in rendered


@pytest.mark.parametrize(
    ("file", "old", "new", "message", "hint"),
    [
        (
            "follow-through.yaml",
            "on: contact.opened",
            "on: contact.openned",
            "unknown event type 'contact.openned'",
            "did you mean 'contact.opened'?",
        ),
        (
            "expedite-within-budget.yaml",
            "        budget: expedite",
            "        budget: expedit",
            "undefined budget 'expedit'",
            "did you mean 'expedite'?",
        ),
        (
            "goodwill-by-lifetime-value.yaml",
            "      say: Thank you",
            "      sai: Thank you",
            "unknown key 'sai'",
            "did you mean 'say'?",
        ),
        (
            "trust-by-default.yaml",
            "remedy: refund",
            "remedy: refnud",
            "unknown remedy 'refnud'",
            "did you mean 'refund'?",
        ),
        (
            "replace-broken-part.yaml",
            "customer.remedies_90d < 3",
            "customer.remedies_90d < '3'",
            "type mismatch: compares number with text '3'",
            "write a whole number",
        ),
        (
            "follow-through.yaml",
            "follow_up: 48h",
            "follow_up: soon",
            "follow_up needs a duration",
            "e.g. 48h",
        ),
        (
            "warm-handoff.yaml",
            "policy: warm-handoff",
            "policy: follow-through",
            "duplicate policy id 'follow-through'",
            "also defined in",
        ),
        (
            "goodwill-by-lifetime-value.yaml",
            "  - name: silver",
            "  - name: gold",
            "duplicate rule name 'gold'",
            None,
        ),
        # What a policy puts into decisions is held to the decision contract's limits.
        (
            "expedite-within-budget.yaml",
            "  - name: within-budget",
            "  - name: " + "w" * 129,
            "'name' is 129 characters; decisions carry at most 128",
            "shorten it",
        ),
        (
            "expedite-within-budget.yaml",
            "        reason: an expedite above $50 is unusual",
            "        reason: " + "r" * 4001,
            "'reason' is 4,001 characters; decisions carry at most 4,000",
            "shorten it",
        ),
        (
            "expedite-within-budget.yaml",
            "      say: I've upgraded your shipping at no charge. It's on its way faster.",
            "      say: " + "s" * 4001,
            "'say' is 4,001 characters",
            "shorten it",
        ),
        (
            "budgets.yaml",
            "      say: I've asked my team lead to approve the faster shipping;",
            "      say: " + "b" * 4001 + " I've asked my team lead to approve the faster shipping;",
            "'say' is 4,",
            "shorten it",
        ),
        # Only a declared budget's ledger (allocated, spent) is read before deciding: a
        # charge to another could not be held to what is left of it.
        (
            "expedite-within-budget.yaml",
            "      charge:\n        budget: expedite",
            "      charge:\n        budget: goodwill",
            "this policy charges the goodwill budget but declares the expedite budget",
            "charge expedite, or move this rule to a policy with `budget: goodwill`",
        ),
        (
            "trust-by-default.yaml",
            "      say: You can have a replacement",
            "      charge: {budget: goodwill, amount: 5}\n      say: You can have a replacement",
            "this policy charges the goodwill budget but declares none",
            "declare `budget: goodwill` on the policy (one budget per policy)",
        ),
        # With --budget-stage kafka such a decision is finished after the customer's state
        # (which keeps follow-ups and alert windows) has moved on.
        (
            "expedite-within-budget.yaml",
            "      say: I've upgraded",
            "      obligations: [{follow_up: 48h}]\n      say: I've upgraded",
            "a policy with a budget cannot add follow-ups",
            "put the obligations in a policy without a budget on remedy.requested",
        ),
        (
            "root-cause-alert.yaml",
            "      alert:",
            "      obligations: [{follow_up: 48h}]\n      alert:",
            "a policy that counts defect reports or raises alerts cannot add follow-ups",
            "put the obligations in another policy on item.defect_reported",
        ),
    ],
)
def test_each_kind_of_mistake_is_refused(
    pdir: Path, file: str, old: str, new: str, message: str, hint: str | None
) -> None:
    edit(pdir / file, old, new)
    err = refused(pdir)
    found = [d for d in err.diagnostics if message in d.message]
    assert found, err.render()
    assert found[0].span is not None
    if hint is not None:
        assert found[0].hint is not None and hint in found[0].hint


def test_a_dead_end_rule_is_refused(pdir: Path) -> None:
    (pdir / "dead-end.yaml").write_text(
        "policy: dead-end\nversion: 1\nowner: x\nprinciple: p\nsummary: s\n"
        "on: contact.opened\nrules:\n  - name: just-words\n    then:\n      say: no.\n"
    )
    err = refused(pdir)
    [d] = err.diagnostics
    assert "dead end" in d.message and d.span is not None and d.span.line == 8


def test_routing_without_words_is_refused(pdir: Path) -> None:
    (pdir / "mute.yaml").write_text(
        "policy: mute\nversion: 1\nowner: x\nprinciple: p\nsummary: s\n"
        "on: contact.opened\nrules:\n  - name: hand-off\n    then:\n"
        "      route: {to: team-lead}\n"
    )
    assert "no words to say" in refused(pdir).render()


def test_too_many_conditions_for_the_matcher_are_refused(pdir: Path) -> None:
    rules = "".join(
        f"  - name: r{i}\n    when: event.amount == {i}\n    then:\n"
        f"      authorize: [{{remedy: credit, up_to: 1}}]\n      say: ok\n"
        for i in range(65)
    )
    (pdir / "wide.yaml").write_text(
        "policy: wide\nversion: 1\nowner: x\nprinciple: p\nsummary: s\n"
        f"on: remedy.requested\nrules:\n{rules}"
    )
    assert "65 distinct conditions; the matcher allows 64" in refused(pdir).render()


def test_invalid_yaml_is_positioned(pdir: Path) -> None:
    (pdir / "broken.yaml").write_text("policy: broken\nrules: [\n  - name: x\n")
    [d] = refused(pdir).diagnostics
    assert d.file.endswith("broken.yaml") and "not valid YAML" in d.message
    assert d.span is not None


def test_yaml_hints_fit_the_mistake(pdir: Path) -> None:
    f = pdir / "follow-through.yaml"
    edit(f, "owner:", "owner: twice\nowner:")
    [duplicate] = refused(pdir).diagnostics
    assert duplicate.hint == "a key appears once per mapping: remove or rename one of them"
    (pdir / "follow-through.yaml").write_text(
        "policy: x\nversion: 1\nowner: o\nprinciple: p\nsummary: s\non: case.opened\n"
        "rules:\n  - name: r\n    then:\n      say: [a, b\n      obligations: x\n"
    )
    [unclosed] = refused(pdir).diagnostics
    assert unclosed.span is not None and unclosed.span.line == 11
    assert unclosed.hint == "while parsing a flow sequence, which started at 10:12"


def test_words_hold_only_field_placeholders(pdir: Path) -> None:
    f = pdir / "replace-broken-part.yaml"
    edit(f, "at no charge.", "worth {order.amount * 0.5} at no charge {order.amount} :}")
    computed, lone = refused(pdir).diagnostics
    line = f.read_text().splitlines()[computed.span.line - 1]  # type: ignore[union-attr]
    assert computed.message == "'{order.amount * 0.5}' in say is not a placeholder"
    assert computed.span is not None
    start, end = computed.span.col - 1, computed.span.end_col - 1
    assert line[start:end] == "{order.amount * 0.5}"  # the caret under the placeholder
    assert lone.message == "'}' in say is not a placeholder"


def test_an_alert_needs_an_event_that_names_a_sku(pdir: Path) -> None:
    (pdir / "tell-product.yaml").write_text(
        "policy: tell-product\nversion: 1\nowner: o\nprinciple: p\nsummary: s\n"
        "on: contact.opened\nrules:\n  - name: r\n    then:\n"
        "      alert: {to: product-team, reason: look}\n"
    )
    [d] = refused(pdir).diagnostics
    assert d.message == "an alert is about a SKU, and contact.opened names none"
    assert d.hint is not None and "item.defect_reported" in d.hint


def test_a_misspelt_required_key_is_one_problem_not_two(pdir: Path) -> None:
    edit(pdir / "follow-through.yaml", "principle:", "principal:")
    edit(pdir / "follow-through.yaml", "version:", "verson:")
    problems = refused(pdir).diagnostics
    assert [(d.message, d.hint) for d in problems] == [
        ("unknown key 'verson' in a policy", "did you mean 'version'?"),
        ("unknown key 'principal' in a policy", "did you mean 'principle'?"),
    ]
    edit(pdir / "follow-through.yaml", "verson:", "version:")
    edit(pdir / "follow-through.yaml", "principal:", "owner_note:")  # no longer a misspelling
    assert [d.message for d in refused(pdir).diagnostics] == [
        "unknown key 'owner_note' in a policy",
        "a policy needs 'principle'",
    ]


def test_a_policy_filed_in_a_subdirectory_is_refused_not_ignored(pdir: Path) -> None:
    (pdir / "team" / "deep").mkdir(parents=True)
    shutil.copy(pdir / "follow-through.yaml", pdir / "team" / "deep" / "mine.yaml")
    (pdir / ".hidden").mkdir()  # tools' folders (.git, ...) are not policies
    (pdir / ".hidden" / "x.yaml").write_text("not: a policy\n")
    [d] = refused(pdir).diagnostics
    assert (d.file, d.message) == (
        relpath(pdir / "team" / "deep" / "mine.yaml"),
        "a policy file in a subdirectory is not read",
    )
    shutil.rmtree(pdir / "team")
    assert len(load_policy_set(pdir).policies) == len(load_policy_set(POLICIES).policies)


def test_a_duplicate_rule_name_says_why_names_matter(pdir: Path) -> None:
    f = pdir / "replace-broken-part.yaml"
    edit(f, "name: unusual-history", "name: trusted-by-default")
    [d] = refused(pdir).diagnostics
    assert d.message == "duplicate rule name 'trusted-by-default' in this policy"
    assert d.hint == "each rule of a policy has its own name: decisions and specs cite it"


def test_an_empty_file_or_a_bare_value_is_refused_at_its_start(pdir: Path) -> None:
    (pdir / "empty.yaml").write_text("# nothing yet\n")
    (pdir / "text.yaml").write_text('"just text"\n')
    empty, text = refused(pdir).diagnostics
    assert (empty.file, empty.span, empty.message) == (
        relpath(pdir / "empty.yaml"),
        Span(1, 1, 2),
        "empty policy file",
    )
    assert (text.span, text.message) == (Span(1, 1, 2), "a policy must be a mapping")
    assert text.hint == "the file starts with its keys: policy, version, on, rules"


def test_a_missing_budgets_file_is_named_in_every_undefined_budget(pdir: Path) -> None:
    (pdir / "budgets.yaml").unlink()
    undefined = [d for d in refused(pdir).diagnostics if d.message.startswith("undefined budget")]
    assert undefined
    expected = f"{relpath(pdir / 'budgets.yaml')} does not exist: budgets are defined there"
    assert {d.hint for d in undefined} == {expected}


def test_a_policy_file_given_for_the_directory_is_named_as_such(pdir: Path) -> None:
    [d] = refused(pdir / "follow-through.yaml").diagnostics
    assert (d.message, d.hint) == (
        "is not a directory",
        f"give the directory that holds the policy files: {relpath(pdir)}",
    )
    [missing] = refused(pdir / "nowhere").diagnostics
    assert missing.message == "no such policy directory"


def test_every_problem_is_reported_at_once(pdir: Path) -> None:
    edit(pdir / "follow-through.yaml", "follow_up: 48h", "follow_up: soon")
    edit(pdir / "warm-handoff.yaml", "case.topic", "case.topik")
    assert len(refused(pdir).diagnostics) == 2


def test_a_policy_id_with_a_final_newline_is_refused_not_a_second_policy(pdir: Path) -> None:
    # `$` matches before a final newline: "follow-through\n" passed as a valid id, so the
    # file applied beside follow-through.yaml as a second policy that looks the same
    shutil.copy(pdir / "follow-through.yaml", pdir / "copy.yaml")
    edit(pdir / "copy.yaml", "policy: follow-through", 'policy: "follow-through\\n"')
    [d] = refused(pdir).diagnostics
    assert d.file == relpath(pdir / "copy.yaml") and "is not a valid id" in d.message


@pytest.mark.parametrize("then", ["authorize: []", "route:", "obligations: []", "obligations:"])
def test_an_empty_action_is_refused_not_taken_for_one(pdir: Path, then: str) -> None:
    # the key alone passed the dead-end check: the rep said the words, nothing was done
    (pdir / "hollow.yaml").write_text(
        "policy: hollow\nversion: 1\nowner: x\nprinciple: p\nsummary: s\n"
        "on: remedy.requested\nrules:\n  - name: promise\n    then:\n"
        f"      {then}\n      say: I've asked my team lead to approve it.\n"
    )
    [d] = refused(pdir).diagnostics
    assert d.message.endswith("is empty") and d.span is not None and d.span.line == 10


def test_an_empty_when_is_refused_not_read_as_always(pdir: Path) -> None:
    edit(pdir / "replace-broken-part.yaml", "    when: ", "    when:\n    # ")
    [d] = refused(pdir).diagnostics
    assert d.message == "'when' is empty" and d.span is not None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("currency: USD", "currency:", "'None' is not a currency code"),
        ("currency: USD", "currency: usd", "'usd' is not a currency code"),
        ("amount: 100", "amount: 1e20", "amount must be money"),
        ("amount: 100", "amount: .inf", "amount must be money"),
        ("amount: 100", "amount: 99.999", "amount must be money"),
        ("amount: 100", "amount: .nan", "amount must be a non-negative number"),
        ("within the hour.", "about {event.amout}.", "unknown field '{event.amout}' in say"),
        ("within the hour.", "about {{this}}.", "'{' in say is not a placeholder"),
    ],
)
def test_what_the_budgets_file_puts_into_decisions_is_checked(
    pdir: Path, old: str, new: str, message: str
) -> None:
    # each was accepted: an empty currency dead-lettered every event with money, an
    # allocation of 1e20 broke the decision contract, .inf tracebacked, and the overflow's
    # words reached the customer as "about None." or with their braces
    edit(pdir / "budgets.yaml", old, new)
    err = refused(pdir)
    found = [d for d in err.diagnostics if d.message.startswith(message)]
    assert found and found[0].span is not None, err.render()
    assert found[0].file == relpath(pdir / "budgets.yaml")


def test_an_overflow_says_only_fields_every_policy_charging_it_can_read(pdir: Path) -> None:
    edit(pdir / "budgets.yaml", "within the hour.", "within the hour ({event.remedy}).")
    (pdir / "late-credit.yaml").write_text(
        "policy: late-credit\nversion: 1\nowner: x\nprinciple: p\nsummary: s\n"
        "on: shipment.delayed\nbudget: expedite\nrules:\n  - name: sorry\n    then:\n"
        "      authorize: [{remedy: credit, up_to: 5}]\n"
        "      charge: {budget: expedite, amount: 5}\n      say: Sorry for the wait.\n"
    )
    [d] = refused(pdir).diagnostics
    assert d.message == (
        "the expedite budget's overflow words use {event.remedy}, which a policy on"
        " shipment.delayed cannot read"
    )
    assert d.file == relpath(pdir / "late-credit.yaml") and d.span is not None


def test_a_condition_the_matcher_cannot_hold_is_refused_where_it_is_written(pdir: Path) -> None:
    # durable_rules refused the ruleset (error 113), and goodwill check printed a traceback
    fifteen = " or ".join(
        f"(customer.order_count == {i} and event.amount <= {i})" for i in range(15)
    )
    deep = "not " * 5000 + "order.known"
    (pdir / "tangled.yaml").write_text(
        "policy: tangled\nversion: 1\nowner: x\nprinciple: p\nsummary: s\n"
        "on: remedy.requested\nrules:\n"
        f"  - name: wide\n    when: {fifteen}\n    then:\n      route: {{to: team-lead}}\n"
        "      say: ok\n"
        f"  - name: deep\n    when: {deep}\n    then:\n      route: {{to: team-lead}}\n"
        "      say: ok\n"
        f"  - name: long\n    then:\n      authorize:\n"
        f"        [{{remedy: credit, up_to: '{'1 + ' * 3000}1'}}]\n"
        "      say: ok\n"
    )
    wide, deep_, long = refused(pdir).diagnostics
    assert wide.message.startswith("the condition has 16 and/or groups")
    assert wide.span is not None and (wide.span.line, wide.span.col) == (9, 11)
    assert deep_.message == "the condition is nested too deeply" and deep_.span is not None
    assert long.message == "the amount is nested too deeply" and long.span is not None
    edit(pdir / "tangled.yaml", "(customer.order_count == 0 and event.amount <= 0) or ", "")
    edit(pdir / "tangled.yaml", deep, "order.known")
    edit(pdir / "tangled.yaml", "1 + " * 3000, "1 + ")
    assert "tangled" in {p.id for p in load(pdir).policy_set.policies}


@pytest.mark.parametrize("within", ["99999999999d", "3000000d", "3651d"])
def test_a_follow_up_past_any_deadline_is_refused(pdir: Path, within: str) -> None:
    # 99999999999d overflowed timedelta (a traceback); 3000000d passed, and every event the
    # rule fired on was dead-lettered: its due time is past year 9999
    edit(pdir / "follow-through.yaml", "follow_up: 48h", f"follow_up: {within}")
    [d] = refused(pdir).diagnostics
    assert d.message == "follow_up needs a duration" and d.span is not None


_HEAD = "policy: odd\nversion: 1\nowner: x\nprinciple: p\nsummary: s\non: remedy.requested\n"


def test_an_alias_is_refused_where_it_is_written_before_it_can_expand(pdir: Path) -> None:
    # A "billion laughs" chain: reading the condition expanded it past gigabytes.
    bomb = "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9) if i else 'lol'}]\n" for i in range(9)
    )
    (pdir / "odd.yaml").write_text(
        f"{bomb}{_HEAD}rules:\n  - name: r\n    when: *a8\n    then: {{route: {{to: x}}}}\n"
    )
    [d] = refused(pdir).diagnostics
    assert d.message == "an alias (*a0) copies another part of the file"
    assert d.span is not None and (d.span.line, d.span.col) == (2, 10)
    # a merge key copies through an alias too (it was a KeyError traceback)
    (pdir / "odd.yaml").write_text(
        f"{_HEAD}rules:\n  - &r1 {{name: a, then: {{route: {{to: x}}, say: hi}}}}\n"
        "  - {<<: *r1, name: b}\n"
    )
    [d] = refused(pdir).diagnostics
    assert d.message == "an alias (*r1) copies another part of the file"
    assert d.span is not None and (d.span.line, d.span.col) == (9, 10)


def test_bytes_that_are_not_text_are_refused_with_their_position(pdir: Path) -> None:
    (pdir / "odd.yaml").write_bytes(_HEAD.encode() + b"rules:\n  - name: caf\xe9\n")
    [d] = refused(pdir).diagnostics
    assert (d.message, d.hint) == ("not UTF-8 text", "save the file as UTF-8")
    assert d.span is not None and (d.span.line, d.span.col) == (8, 14)
    (pdir / "odd.yaml").write_bytes(_HEAD.encode() + b"rules:\n  - name: a\x00b\n")
    [d] = refused(pdir).diagnostics
    assert d.message.startswith("not valid YAML: special characters are not allowed")
    assert d.span is not None and (d.span.line, d.span.col) == (8, 12)


def test_a_file_nested_past_what_the_yaml_reader_can_follow_is_refused(pdir: Path) -> None:
    # a few hundred `[` are well under 1 MB; the YAML reader recursed per level and
    # goodwill check printed a RecursionError traceback
    (pdir / "odd.yaml").write_text(_HEAD + "rules: " + "[" * 3000 + "]" * 3000 + "\n")
    [d] = refused(pdir).diagnostics
    assert (d.file, d.message) == (relpath(pdir / "odd.yaml"), "not valid YAML: nested too deeply")


def test_a_file_that_is_no_policy_text_is_refused_without_reading_it(pdir: Path) -> None:
    (pdir / "zero.yaml").symlink_to("/dev/zero")  # read_text ran out of memory
    (pdir / "huge.yaml").write_text(_HEAD + "#" * (1 << 20))
    huge, zero = refused(pdir).diagnostics
    assert zero.message == "not a regular file: a policy file is a small text file"
    assert huge.message == "larger than 1 MB: a policy file is a small text file"


def test_a_policy_file_with_a_capital_suffix_is_read(pdir: Path) -> None:
    shutil.move(pdir / "follow-through.yaml", pdir / "Follow-Through.YAML")
    assert "follow-through" in {p.id for p in load_policy_set(pdir).policies}


def test_a_nested_context_item_and_a_lone_surrogate_are_refused(pdir: Path) -> None:
    (pdir / "odd.yaml").write_text(
        f"{_HEAD}rules:\n  - name: r\n    when: event.remedy == '\\ud800'\n"
        "    then:\n      route: {to: x, context: [[order.amount]]}\n      say: hi\n"
    )
    surrogate, nested = refused(pdir).diagnostics
    assert surrogate.message == "text that is not Unicode characters"
    assert nested.message == "a context item is one field name"
    assert nested.span is not None and nested.span.line == 11


def test_budgets_that_are_not_a_list_is_one_problem(pdir: Path) -> None:
    (pdir / "budgets.yaml").write_text("budgets: foo\n")
    problems = [d.message for d in refused(pdir).diagnostics if d.file.endswith("budgets.yaml")]
    assert problems == ["budgets must be a list of budgets"]


def test_an_overflow_to_a_field_is_refused_not_taken_as_a_name(pdir: Path) -> None:
    # A route's `to: rep.lead` names a field; an overflow's was taken as a person "rep.lead".
    edit(pdir / "budgets.yaml", "to: team-lead", "to: rep.lead")
    [d] = refused(pdir).diagnostics
    assert d.message == "an overflow goes to a person or team by name, not to a field ('rep.lead')"
    assert d.hint == "team-lead is the rep's lead" and d.span is not None


@pytest.mark.parametrize(
    ("up_to", "message", "hint"),
    [
        # YAML reads an unquoted 1e999 as infinity: it was "unknown field 'inf'"
        ("1e999", "an amount must be a finite number", None),
        (
            "order.amount +",
            "cannot parse amount: invalid syntax",
            "amounts look like: order.amount, 25, or min(order.amount * 0.1, 25)",
        ),
    ],
)
def test_an_amount_that_is_no_amount_is_named_as_one(
    pdir: Path, up_to: str, message: str, hint: str | None
) -> None:
    path = pdir / "goodwill-by-lifetime-value.yaml"
    line = path.read_text().split("up_to: 30\n")[0].count("\n") + 1
    edit(path, "up_to: 30\n", f"up_to: {up_to}\n")
    [d] = refused(pdir).diagnostics
    assert (d.message, d.hint) == (message, hint)
    assert d.span is not None and (d.span.line, d.span.col) == (line, 18)
