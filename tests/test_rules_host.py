"""RuleHost against the real durable_rules 2.0.28, and the durable quirks it guards against.

Tests named `test_durable_*` pin raw engine behaviour that engine/rules.py relies on or
defends against; if durable_rules changes, they fail and the module needs another look.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import durable.engine
import durable_rules_engine
import pytest
from durable.engine import Host

from engine.rules import RuleEngineError, RuleHost, check_fact, verbatim_rule

_names = itertools.count()


def rule(condition: Mapping[str, Any], pri: int) -> dict[str, Any]:
    return {"all": [{"m": condition}], "pri": pri}


def raw(rules: Mapping[str, Any], message: Mapping[str, Any] | str) -> int | str:
    """Post one event straight to a fresh C ruleset: its answer code, or the error text."""
    # Unescaped, as durable's own Ruleset creates its rulesets.
    definition = json.dumps(rules, ensure_ascii=False)
    handle = durable_rules_engine.create_ruleset(f"raw{next(_names)}", definition)
    text = message if isinstance(message, str) else json.dumps({**message, "sid": "0", "id": 1})
    try:
        code, _ = durable_rules_engine.assert_event(handle, text)
    except durable_rules_engine.error as error:
        return str(error)
    return int(code)


MATCHED, NOT_MATCHED = 0, 1

REFUND = {
    "small": rule({"$and": [{"kind": "defect"}, {"$lte": {"amount": 500}}]}, 0),
    "large": rule({"$and": [{"kind": "defect"}, {"$gt": {"amount": 500}}]}, 1),
    "loyal": rule({"$gte": {"tier": 3}}, 2),
}


def held(host: RuleHost, ruleset: str) -> list[Any]:
    """Everything durable keeps for the host's one session: pending events and facts."""
    durable_host = host._durable
    return [*durable_host.get_pending_events(ruleset, "0"), *durable_host.get_facts(ruleset, "0")]


# 1. Priority


@pytest.mark.parametrize(("first", "second"), [("a", "b"), ("b", "a")])
def test_lowest_pri_fires_and_only_it(
    monkeypatch: pytest.MonkeyPatch, first: str, second: str
) -> None:
    # Both rules match; declaration order is the opposite of priority order.
    host = RuleHost({"p": {second: rule({"$gt": {"x": 1}}, 1), first: rule({"$gt": {"x": 0}}, 0)}})
    fired: list[Mapping[str, Any]] = []
    action = host._durable.fired

    def counting(messages: Mapping[str, Any]) -> int:
        fired.append(messages)
        return action(messages)

    monkeypatch.setattr(host._durable, "fired", counting)

    assert host.match("p", {"x": 5}) == first
    assert len(fired) == 1
    assert held(host, "p") == []


def test_first_matching_rule_wins_and_no_match_is_none() -> None:
    host = RuleHost({"refund": REFUND})
    assert host.match("refund", {"kind": "defect", "amount": 300, "tier": 5}) == "small"
    assert host.match("refund", {"kind": "defect", "amount": 900, "tier": 5}) == "large"
    assert host.match("refund", {"kind": "late", "amount": 300, "tier": 5}) == "loyal"
    assert host.match("refund", {"kind": "late", "amount": 300, "tier": 1}) is None
    assert host.match("refund", {}) is None


# 2. Timer threads


def test_constructing_and_matching_start_no_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    timers: list[tuple[Any, ...]] = []

    class RecordingTimer:
        def __init__(self, *args: Any) -> None:
            timers.append(args)
            self.daemon = False

        def start(self) -> None:
            pass

    monkeypatch.setattr(durable.engine.threading, "Timer", RecordingTimer)
    Host()
    assert len(timers) == 2  # durable's own Host arms its two polling loops...
    timers.clear()

    before = (threading.active_count(), set(threading.enumerate()))
    host = RuleHost({"refund": REFUND})
    host.match("refund", {"kind": "defect", "amount": 1})
    assert timers == []  # ...a RuleHost arms none,
    assert (threading.active_count(), set(threading.enumerate())) == before  # nor any thread.


# 3. Same names in two hosts


def test_durable_c_engine_has_no_registry_of_names() -> None:
    first = durable_rules_engine.create_ruleset("same", json.dumps({"r": rule({"a": 1}, 0)}))
    second = durable_rules_engine.create_ruleset("same", json.dumps({"r": rule({"b": 1}, 0)}))
    assert first != second
    event = json.dumps({"sid": "0", "id": 1, "b": 1})
    assert durable_rules_engine.assert_event(first, event)[0] == NOT_MATCHED
    assert durable_rules_engine.assert_event(second, event)[0] == MATCHED


def test_two_hosts_with_the_same_ruleset_names_coexist() -> None:
    old = RuleHost({"refund": {"old": rule({"$lte": {"amount": 100}}, 0)}})
    new = RuleHost({"refund": {"new": rule({"$lte": {"amount": 500}}, 0)}})
    for _ in range(3):
        assert old.match("refund", {"amount": 300}) is None
        assert new.match("refund", {"amount": 300}) == "new"
        assert old.match("refund", {"amount": 50}) == "old"
    assert old.names() == new.names() == ("refund",)


# 4. Action exceptions


def test_durable_host_post_swallows_action_exceptions_into_sticky_state() -> None:
    class Raising(Host):  # type: ignore[misc]
        def _run(self) -> None:
            pass

        def get_action(self, name: str) -> Any:
            def action(c: Any) -> None:
                if c.m.boom:
                    raise ValueError("kaboom")

            return action

    host = Raising({"p": {"r": {**rule({"$gt": {"x": 0}}, 0), "run": "r"}}})
    state = host.post("p", {"sid": "0", "id": 1, "x": 1, "boom": True})  # no exception
    assert "kaboom" in state["exception"]
    later = host.post("p", {"sid": "0", "id": 2, "x": 1, "boom": False})
    assert "kaboom" in later["exception"]  # a later, clean post still reports it


def test_action_exception_raises_and_leaves_the_session_clean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = RuleHost({"refund": REFUND})

    def broken(messages: Mapping[str, Any]) -> int:
        raise ValueError("kaboom")

    monkeypatch.setattr(host._durable, "fired", broken)
    with pytest.raises(RuleEngineError, match=r"'refund'.*rule 'small'.*kaboom"):
        host.match("refund", {"kind": "defect", "amount": 300})
    assert held(host, "refund") == []

    monkeypatch.undo()
    assert host.match("refund", {"kind": "defect", "amount": 300}) == "small"


def test_a_held_event_firing_is_not_reported_as_a_match() -> None:
    host = RuleHost({"refund": REFUND})
    # Leave a higher-priority event open and abandoned in the session, as durable's
    # Host does when completing an action fails: durable fires it before our event.
    handle = host._handles["refund"]
    stale = {"sid": "0", "id": 10**9, "kind": "defect", "amount": 1}
    _, state = durable_rules_engine.assert_event(handle, json.dumps(stale))
    durable_rules_engine.start_action_for_state(handle, state)
    durable_rules_engine.abandon_action(handle, state)

    with pytest.raises(RuleEngineError, match=r"held event 1000000000"):
        host.match("refund", {"kind": "late", "tier": 5})
    assert held(host, "refund") == []
    assert host.match("refund", {"kind": "late", "tier": 5}) == "loyal"


# 5. Sessions and memory


def test_thousands_of_posts_use_one_session_and_keep_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = RuleHost({"refund": REFUND})
    posted: list[dict[str, Any]] = []
    assert_event = durable_rules_engine.assert_event

    def spy(handle: int, message: str) -> Any:
        posted.append(json.loads(message))
        return assert_event(handle, message)

    monkeypatch.setattr(durable_rules_engine, "assert_event", spy)
    facts = [
        {"kind": "defect", "amount": 300},
        {"kind": "defect", "amount": 900},
        {"kind": "late", "tier": 4},
        {"kind": "late", "tier": 1},
    ]
    answers = [host.match("refund", facts[i % 4]) for i in range(5000)]

    assert answers[:4] == ["small", "large", "loyal", None]
    assert answers.count(None) == 1250
    assert {m["sid"] for m in posted} == {"0"}
    assert len({m["id"] for m in posted}) == 5000
    assert held(host, "refund") == []


def test_durable_drops_an_event_whose_id_it_still_holds() -> None:
    handle = durable_rules_engine.create_ruleset("ids", json.dumps({"r": rule({"a": 1}, 0)}))
    event = json.dumps({"sid": "0", "id": 7, "a": 1})
    assert durable_rules_engine.assert_event(handle, event)[0] == MATCHED  # action left open
    assert durable_rules_engine.assert_event(handle, event)[0] == 2  # "observed": dropped


# 6. Limits


def test_more_than_64_distinct_conditions_matched_by_one_event_is_error_303() -> None:
    host = RuleHost({"wide": {f"r{i}": rule({"$gt": {"a": i}}, i) for i in range(65)}})
    assert host.match("wide", {"a": 64}) == "r0"  # 64 conditions hold: fine
    with pytest.raises(RuleEngineError, match=r"'wide'.*303.*more than 64 distinct conditions"):
        host.match("wide", {"a": 65})
    assert host.match("wide", {"a": 10}) == "r0"
    assert held(host, "wide") == []


def test_durable_repeated_conditions_do_not_count_towards_303() -> None:
    rules = {f"r{i}": rule({"$gt": {"a": 0}}, i) for i in range(200)}
    assert raw(rules, {"a": 1}) == MATCHED


def test_durable_refuses_a_message_with_more_than_254_properties() -> None:
    rules = {"r": rule({"a": 1}, 0)}
    fact_252 = {"a": 1, **{f"p{i}": i for i in range(251)}}
    assert raw(rules, fact_252) == MATCHED  # 252 + sid + id = 254
    assert raw(rules, {**fact_252, "q": 0}) == "Could not assert event, error code: 302"

    check_fact(fact_252)
    with pytest.raises(ValueError, match="253 properties"):
        check_fact({**fact_252, "q": 0})
    assert RuleHost({"p": rules}).match("p", fact_252) == "r"


# 7. Loose typing and check_fact


@pytest.mark.parametrize(
    ("condition", "value"),
    [
        ({"$gt": {"a": 100}}, "500"),
        ({"$gt": {"a": 100}}, "50"),  # any string is "greater" than a number
        ({"a": 1}, True),
        ({"a": True}, 1),
        ({"a": 0}, False),
        ({"a": "100"}, 100),
    ],
)
def test_durable_matches_across_types(condition: dict[str, Any], value: Any) -> None:
    assert raw({"r": rule(condition, 0)}, {"a": value}) == MATCHED


@pytest.mark.parametrize(
    ("condition", "value", "python_says"),
    [
        ({"a": None}, None, True),
        ({"$neq": {"a": 0}}, None, False),  # Python: None != 0
        ({"$neq": {"a": "x"}}, None, False),  # Python: None != "x"
        ({"$gte": {"a": None}}, None, False),
        ({"a": 2**63 + 2}, 2**63 + 1, True),  # Python: different numbers
    ],
)
def test_durable_null_and_huge_ints_disagree_with_python(
    condition: dict[str, Any], value: Any, python_says: bool
) -> None:
    code = raw({"r": rule(condition, 0)}, {"a": value})
    assert code == MATCHED if python_says else code == NOT_MATCHED


@pytest.mark.parametrize("literal", ["1e5", "1E5", "1e-5"])
def test_durable_rejects_exponent_floats(literal: str) -> None:
    answer = raw({"r": rule({"$gt": {"a": 1}}, 0)}, f'{{"sid": "0", "id": 1, "a": {literal}}}')
    assert answer == "Could not assert event, error code: 204"


@pytest.mark.parametrize(
    ("fact", "key"),
    [
        ({"ok": 1, "amount": 12.5}, "amount"),
        ({"amount": 1e5}, "amount"),
        ({"note": None}, "note"),
        ({"order": {"amount": 1}}, "order"),
        ({"items": [1, 2]}, "items"),
        ({"big": 2**63}, "big"),
        ({"small": -(2**63) - 1}, "small"),
        ({"sid": "customer-1"}, "sid"),
        ({"id": 3}, "id"),
    ],
)
def test_check_fact_refuses_and_names_the_key(fact: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=f"'{key}'"):
        check_fact(fact)


def test_check_fact_accepts_str_int_and_bool() -> None:
    check_fact({"s": "", "i": 0, "b": False, "lo": -(2**63), "hi": 2**63 - 1, "t": True})


def test_match_checks_the_fact_before_posting(monkeypatch: pytest.MonkeyPatch) -> None:
    host = RuleHost({"refund": REFUND})
    monkeypatch.setattr(durable_rules_engine, "assert_event", None)
    with pytest.raises(ValueError, match="'amount'"):
        host.match("refund", {"kind": "defect", "amount": 3.0})


def test_durable_needs_unescaped_unicode_on_both_sides() -> None:
    rules = {"r": rule({"a": "x😀"}, 0)}
    escaped = json.dumps({"sid": "0", "id": 1, "a": "x😀"})
    assert raw(rules, escaped) == NOT_MATCHED
    assert RuleHost({"p": rules}).match("p", {"a": "x😀"}) == "r"


# Construction


def test_rulesets_are_deep_copied() -> None:
    rulesets = {"refund": {"small": rule({"$lte": {"amount": 500}}, 0)}}
    snapshot = json.dumps(rulesets)
    host = RuleHost(rulesets)
    assert json.dumps(rulesets) == snapshot  # no "run" added to the caller's rules
    rulesets["refund"]["small"]["all"][0]["m"] = {"amount": 0}
    kept = host._durable.get_ruleset("refund").get_definition()  # durable keeps a reference
    assert kept["small"]["all"][0]["m"] == {"$lte": {"amount": 500}}
    assert host.match("refund", {"amount": 300}) == "small"
    assert host.names() == ("refund",)


def test_refuses_chart_names_and_joins() -> None:
    with pytest.raises(ValueError, match=r"'\$'"):
        RuleHost({"refund$state": REFUND})
    join = {"all": [{"m": {"a": 1}}, {"n": {"b": 1}}], "pri": 0}
    with pytest.raises(ValueError, match=r"'j'.*joins"):
        RuleHost({"p": {"j": join}})


def test_durable_refusal_names_the_ruleset() -> None:
    with pytest.raises(RuleEngineError, match=r"ruleset 'bad' refused: .*error code"):
        RuleHost({"good": REFUND, "bad": {"r": rule({"a": {"$gt": 1}}, 0)}})


# 8. Reading durable's answers


def test_durable_answers_with_the_posted_text_verbatim() -> None:
    # verbatim_rule relies on this: the answer embeds the message exactly as posted.
    for kind in ("event", "fact"):
        handle = durable_rules_engine.create_ruleset(
            f"verbatim{next(_names)}", json.dumps({"r/0": rule({"$gt": {"x": 1}}, 0)})
        )
        payload = json.dumps({"x": 5, "who": 'Zoë "Z"', "sid": "0", "id": 7}, ensure_ascii=False)
        assert_ = (
            durable_rules_engine.assert_event
            if kind == "event"
            else durable_rules_engine.assert_fact
        )
        code, state = assert_(handle, payload)
        assert code == MATCHED
        answer = durable_rules_engine.start_action_for_state(handle, state)[1]
        assert answer == '{"r/0":{"m":' + payload + "}}"
        assert verbatim_rule(answer, payload) == "r/0"


def test_verbatim_rule_reads_only_an_answer_that_carries_the_payload_itself() -> None:
    payload = '{"x": 5, "sid": "0", "id": 7}'
    assert verbatim_rule('{"p/1":{"m":' + payload + "}}", payload) == "p/1"
    # Another message (a held one: another id), another shape, a name JSON escapes: None,
    # and the caller parses the answer.
    assert verbatim_rule('{"p/1":{"m":{"x": 5, "sid": "0", "id": 6}}}', payload) is None
    assert verbatim_rule('{"p/1":{"m_0":' + payload + "}}", payload) is None
    assert verbatim_rule('{"p\\"1":{"m":' + payload + "}}", payload) is None
    assert verbatim_rule('{"":{"m":' + payload + "}}", payload) is None
    assert verbatim_rule(payload, payload) is None


def test_the_host_reads_answers_without_parsing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.rules

    def no_parse(text: str) -> Any:
        raise AssertionError(f"parsed {text}")

    monkeypatch.setattr(engine.rules.json, "loads", no_parse)
    host = RuleHost({"refund": REFUND})
    assert host.match("refund", {"kind": "defect", "amount": 300, "tier": 1}) == "small"
    facts = fact_host(3, distinct=True)
    assert facts.match_all("shared", {"x": 1}) == ("p/0", "p/1")
    monkeypatch.undo()  # json.loads is the json module's: durable's own reads need it
    assert held(host, "refund") == [] and held_facts(facts, "shared") == []


# ---------------------------------------------------------------- rulesets posted as facts


def fact_host(n_rules: int, distinct: bool) -> RuleHost:
    rules = {f"p/{i}": rule({"$gte": {"x": i if distinct else 0}}, i) for i in range(n_rules)}
    return RuleHost({"shared": rules}, facts=["shared"])


def held_facts(host: RuleHost, ruleset: str) -> Any:
    return json.loads(durable_rules_engine.get_facts(host._handles[ruleset], "0"))


def test_a_fact_fires_every_matching_rule_and_is_retracted() -> None:
    rules = {
        "a/0": rule({"$gt": {"x": 5}}, 0),
        "a/1": rule({"$gt": {"x": 1}}, 1),
        "b/0": rule({"y": "on"}, 0),
        "b/1": rule({"$or": [{"$gt": {"x": 0}}, {"y": "on"}]}, 1),
        "c/0": rule({"$lt": {"x": 0}}, 0),
    }
    host = RuleHost({"shared": rules}, facts=["shared"])
    fired = host.match_all("shared", {"x": 10, "y": "on"})
    assert sorted(fired) == ["a/0", "a/1", "b/0", "b/1"]  # the $or only once
    assert held_facts(host, "shared") == []
    assert host.match_all("shared", {"x": -5, "y": "off"}) == ("c/0",)
    assert host.match_all("shared", {"x": 0, "y": "off"}) == ()
    assert held_facts(host, "shared") == []


def test_sixty_four_distinct_conditions_per_ruleset_pass_sixty_five_raise() -> None:
    assert len(fact_host(64, distinct=True).match_all("shared", {"x": 100})) == 64
    assert len(fact_host(200, distinct=False).match_all("shared", {"x": 100})) == 200
    host = fact_host(65, distinct=True)
    with pytest.raises(RuleEngineError, match="303"):
        host.match_all("shared", {"x": 100})
    assert held_facts(host, "shared") == []
    assert host.match_all("shared", {"x": 0}) == ("p/0",)  # the host still works


def test_compile_packs_at_most_64_distinct_conditions_per_shared_ruleset(
    tmp_path: Path,
) -> None:
    from engine.compile import compile_set
    from engine.load import load_policy_set
    from engine.policy_schema import MAX_CONDITIONS

    for i in range(7):  # 7 policies of 20 distinct conditions each: 3 + 3 + 1 per ruleset
        when = " or ".join(f"event.amount == {i * 100 + k}" for k in range(20))
        (tmp_path / f"p{i}.yaml").write_text(
            f"policy: p{i}\nversion: 1\nowner: o\nprinciple: p\nsummary: s\n"
            f"on: remedy.requested\nrules:\n  - name: r\n    when: {when}\n    then:\n"
            "      authorize: [{remedy: credit, up_to: 1}]\n      say: ok\n"
        )
    compiled = compile_set(load_policy_set(tmp_path))
    packs = compiled.shared["remedy.requested"]
    assert [len(s.policies) for s in packs] == [3, 3, 1]  # 60 + 20 > 64
    assert all(len(s.policies) * 20 <= MAX_CONDITIONS for s in packs)
    assert [s.name for s in packs] == [f"remedy.requested#{i}" for i in range(3)]
    assert compiled.host.match_all("remedy.requested#1", {"event__amount": 40500}) == ("p4/0",)


def test_a_failing_action_on_a_fact_raises_and_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = fact_host(3, distinct=True)

    def broken(messages: Mapping[str, Any]) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(host._durable, "fired", broken)
    with pytest.raises(RuleEngineError, match="boom"):
        host.match_all("shared", {"x": 5})
    assert held_facts(host, "shared") == []
    monkeypatch.undo()
    assert host.match_all("shared", {"x": 5}) == ("p/0", "p/1", "p/2")


def test_fact_rulesets_must_exist_and_each_kind_has_its_own_call() -> None:
    with pytest.raises(ValueError, match="not among"):
        RuleHost({"a": {"r": rule({"x": 1}, 0)}}, facts=["b"])
    host = RuleHost({"a": {"r": rule({"x": 1}, 0)}, "e": {"r": rule({"x": 1}, 0)}}, facts=["a"])
    with pytest.raises(ValueError, match="use match_all"):
        host.match("a", {"x": 1})
    with pytest.raises(ValueError, match="use match"):
        host.match_all("e", {"x": 1})
    assert host.match("e", {"x": 1}) == "r" and host.match_all("a", {"x": 1}) == ("r",)


def test_a_fact_that_matches_no_rule_is_not_held_even_when_it_matches_part_of_one() -> None:
    # _fire skips the retract when assert_fact answers "not handled"; that is only safe if
    # durable keeps nothing of such a fact, including one that passes some conditions.
    rules = {
        "a/0": rule({"$and": [{"$gt": {"x": 5}}, {"y": "on"}]}, 0),
        "b/0": rule({"$and": [{"y": "on"}, {"$lt": {"x": 0}}, {"z": 1}]}, 0),
        "c/0": rule({"$or": [{"$and": [{"x": 3}, {"y": "off"}]}, {"z": 9}]}, 0),
    }
    host = RuleHost({"shared": rules}, facts=["shared"])
    for fact in (
        {"x": 10, "y": "off", "z": 0},
        {"x": -1, "y": "on", "z": 0},
        {"x": 3, "y": "on", "z": 1},
    ):
        assert host.match_all("shared", fact) == ()
    assert held_facts(host, "shared") == []
    assert host.match_all("shared", {"x": 10, "y": "on", "z": 9}) == ("a/0", "c/0")
    assert held_facts(host, "shared") == []
