"""The only module that touches durable_rules: one host per policy-set version.

A ruleset is posted to in one of two ways, fixed when the host is built:

- as *events* (the default): an event fires at most one rule — the lowest `pri` among those
  that match — and is consumed by it, so nothing stays in durable's memory;
- as *facts* (`RuleHost(..., facts=names)`): a fact fires every rule that matches, one action
  each, and stays in memory until retracted; `match` completes every action, collects the
  rule names and retracts the fact before it returns, so nothing stays either. This lets
  `engine.compile` pack many policies into one ruleset and post once for all of them.

Measured quirks of durable_rules 2.0.28 that shape this module (tests/test_rules_host.py
shows each one):

- `Host.__init__` starts two self-rearming `threading.Timer` loops; `_Host` switches them off.
- `Host.post` runs actions through `Promise.run`, which catches every exception and stores it
  as `exception` in the session state — where it stays, so every later post returns it too.
- Each post through `Host.post` builds a `Closure` and json round-trips the session state;
  `match` drives the same ruleset handle with the three engine calls that matter instead
  (2-3x the throughput) and checks every answer.
- More than 1024 sessions per ruleset crash the process: every event uses the one sid `_SID`.
- Loose typing, limits and unicode: see `check_fact` and `_LIMITS`.
- Facts (`assert_fact`): answers 0 and a state when some rule matches, 1 when none does;
  `start_action_for_state` hands out one fired rule, and each `complete_and_start_action`
  the next one (its message JSON, not a tuple), None when all are done. A rule whose
  condition is an `$or` fires once per matching branch. A fact that matched nothing is not
  kept (`get_facts` is empty; 300,000 such asserts grew RSS by 256 KB); a matched fact is
  kept until `retract_fact` (100,000 unretracted: +780 MB). `retract_fact` answers 0 even
  for a fact durable does not hold (no MessageNotHandled: that is `Host`'s Python layer).
- Error 303 counts the distinct *root* conditions (the first condition of each `$and`
  chain, every branch of an `$or`) one message matches: 65 matching rules that share one
  condition, 33 two-condition `$and`s on 66 distinct conditions and 66 pairs over 12
  conditions all pass; 65 distinct matching conditions fail, the fact not kept. So at most
  64 distinct conditions per ruleset (what `engine.compile` packs to) can never reach it.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Collection, Mapping
from typing import Any

import durable_rules_engine
from durable.engine import Host

_SID = "0"
_ACTION = "goodwill.fired"
_HANDLED, _NOT_HANDLED = 0, 1
# durable refuses a message with more than 254 properties (error 302); sid and id take two.
_MAX_PROPERTIES = 252
# Past int64 durable compares lossily: 2**63 + 1 == 2**63 + 2 is true.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_LIMITS = {
    "303": "one message matched more than 64 distinct conditions of the ruleset",
}
# durable's Ruleset compiles rules from ensure_ascii=False JSON, and its parser does not
# join \u surrogate pairs: an escaped emoji would never equal the rule's. Built once:
# json.dumps with any option builds a new encoder per call (measured: ~1 us of ~3 per post).
# A checked fact holds scalars only, so the circular-reference check has nothing to find.
_ENCODE = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode


def verbatim_rule(answer: str, payload: str) -> str | None:
    """The rule named by durable's `answer` to a post of `payload`, when the answer is
    `{"<rule>":{"m":<payload>}}` with `payload` verbatim (a rule with one condition fired on
    that very message: durable copies the posted text); else None, and the caller parses
    the answer as JSON. The verbatim payload carries the post's fresh id, so the rule fired
    on the message just posted, not on one durable held; the action then gets that id
    alone (`{"m": {"id": ...}}`), which is all it reads. This skips `json.loads` of the
    answer, which builds the whole fact again."""
    tail = len(payload) + 9  # '":{"m":' + payload + '}}'
    if (
        len(answer) > tail + 2
        and answer.startswith('{"')
        and answer.endswith(payload + "}}")
        and answer.startswith('":{"m":', len(answer) - tail)
    ):
        rule = answer[2:-tail]
        if '"' not in rule and "\\" not in rule:  # a name JSON escapes takes the parse
            return rule
    return None


def _answer(answer: str, payload: str, post_id: int) -> tuple[str, Mapping[str, Any]]:
    """The fired rule's name and the messages its action gets: read without parsing when
    the answer carries `payload` verbatim (its id is `post_id`), else parsed."""
    rule = verbatim_rule(answer, payload)
    if rule is not None:
        return rule, {"m": {"id": post_id}}
    ((name, messages),) = json.loads(answer).items()
    return str(name), messages


class RuleEngineError(Exception):
    """durable_rules failed or refused: an error code, or a broken action."""


def check_fact(fact: Mapping[str, Any]) -> None:
    """Refuse a fact durable_rules would match wrongly or not at all (ValueError names the key).

    Values are str, bool or int within int64. Refused: floats (durable rejects an exponent
    without a decimal point, `1e5`, and money is integer minor units here); None (durable
    finds `null == null` but not `null != 0`, `null != 'x'` or `null >= null`); nested
    dicts and lists (conditions read flat properties); the keys `sid` and `id`, which
    `RuleHost` sets — a fact carrying its own `sid` would open a session per value.

    It cannot see loose typing between a value and a condition (`'50' > 100` is true,
    `1 == True`, `100 == '100'`); the policy validator checks conditions against field types.
    """
    if len(fact) > _MAX_PROPERTIES:
        raise ValueError(
            f"fact has {len(fact)} properties; durable_rules accepts at most {_MAX_PROPERTIES}"
        )
    for key in ("sid", "id"):
        if key in fact:
            raise ValueError(f"fact key {key!r} is reserved for the rule host")
    for key, value in fact.items():
        kind = value.__class__
        if kind is str or kind is bool or (kind is int and _INT_MIN <= value <= _INT_MAX):
            continue  # the common cases first, without isinstance's subclass walk
        if isinstance(value, str | bool):
            continue
        if isinstance(value, int):
            if _INT_MIN <= value <= _INT_MAX:
                continue
            raise ValueError(f"fact key {key!r}: integer {value} is outside int64")
        raise ValueError(
            f"fact key {key!r}: {type(value).__name__} value {value!r} is not allowed;"
            " facts hold str, int (money in minor units) or bool"
        )


class _Host(Host):  # type: ignore[misc]  # durable ships no type information
    """A durable Host with no background threads whose one action is resolved here.

    durable's Ruleset needs a named action ("run") per rule and resolves it through
    `get_action` when the ruleset is registered; `RuleHost.match` then calls `fired` itself,
    not through durable's Promise, so an exception in it is never swallowed.
    """

    def _run(self) -> None:
        # The base starts timer threads that poll for durable timers and queued actions;
        # Goodwill uses neither (deadlines are in event time), and they would race match().
        pass

    def get_action(self, action_name: str) -> Callable[[Mapping[str, Any]], int]:
        if action_name != _ACTION:
            return super().get_action(action_name)  # type: ignore[no-any-return]
        return self.fired

    def fired(self, messages: Mapping[str, Any]) -> int:
        """The action every rule runs: the id of the one event it fired on."""
        ((_, message),) = messages.items()
        return int(message["id"])


class RuleHost:
    """The durable_rules rulesets of one policy-set version.

    Owns a private durable Host with the timer threads off; rulesets are registered from
    deep copies, and every rule's named action is resolved by that host, never through
    the `durable.lang` globals. Two hosts may hold rulesets of the same name: durable's
    C engine keys rulesets by handle, not by name.

    Not thread-safe: use one host per worker.
    """

    def __init__(
        self, rulesets: Mapping[str, Mapping[str, Any]], facts: Collection[str] = ()
    ) -> None:
        """`rulesets`: name -> {rule name: {"all" or "any": [...], "pri": int}}, no "run".

        `facts`: the names of the rulesets posted as facts (every matching rule fires;
        `match_all`); the others are posted as events (`match`).
        """
        self._durable = _Host()
        self._handles: dict[str, int] = {}
        self._ids = itertools.count()
        unknown = set(facts) - set(rulesets)
        if unknown:
            raise ValueError(f"fact rulesets {sorted(unknown)} are not among the rulesets")
        self._facts = frozenset(facts)
        for name, rules in rulesets.items():
            if "$" in name:
                # durable turns a name containing '$state' or '$flow' into a chart.
                raise ValueError(f"ruleset name {name!r} must not contain '$'")
            definition: dict[str, dict[str, Any]] = {}
            for rule_name, rule in rules.items():
                if len(rule.get("all", ())) > 1:
                    # A join keeps every event that matches part of it in memory.
                    raise ValueError(f"ruleset {name!r}, rule {rule_name!r}: 'all' joins events")
                definition[rule_name] = {**copy.deepcopy(dict(rule)), "run": _ACTION}
            try:
                self._durable.register_rulesets({name: definition})
            except durable_rules_engine.error as error:
                raise RuleEngineError(f"ruleset {name!r} refused: {error}") from error
            # Private to durable's Ruleset, but the handle is what its own methods use.
            self._handles[name] = self._durable.get_ruleset(name)._handle

    def names(self) -> tuple[str, ...]:
        return tuple(self._handles)

    def is_fact_ruleset(self, ruleset: str) -> bool:
        return ruleset in self._facts

    def match_all(
        self, ruleset: str, fact: Mapping[str, Any], *, checked: bool = False
    ) -> tuple[str, ...]:
        """Every rule of a fact ruleset that `fact` fires, each once, in firing order.

        `checked=True`: the caller has run `check_fact` on these values (or on a fact they
        are part of), so it is not repeated here.
        """
        if ruleset not in self._facts:
            raise ValueError(f"ruleset {ruleset!r} is posted as events: use match()")
        if not checked:
            check_fact(fact)
        return tuple(self._fire(ruleset, fact))

    def match(self, ruleset: str, fact: Mapping[str, Any]) -> str | None:
        """The name of the rule of `ruleset` that `fact` fires, or None if none matches."""
        if ruleset in self._facts:
            raise ValueError(f"ruleset {ruleset!r} is posted as facts: use match_all()")
        check_fact(fact)
        handle = self._handles[ruleset]
        # A fresh id every time: durable drops an event whose id it still holds.
        event_id = next(self._ids)
        payload = _ENCODE({**fact, "sid": _SID, "id": event_id})
        try:
            code, state = durable_rules_engine.assert_event(handle, payload)
            if code == _NOT_HANDLED:
                return None
            if code != _HANDLED:
                raise RuleEngineError(f"ruleset {ruleset!r}: durable_rules answered code {code}")
            started = durable_rules_engine.start_action_for_state(handle, state)
            if started is None:
                raise RuleEngineError(
                    f"ruleset {ruleset!r}: event accepted but no rule fired (session busy?)"
                )
            rule: str | None = None
            try:
                rule, messages = _answer(started[1], payload, event_id)
                fired_on = self._durable.fired(messages)
            except Exception as error:
                raise RuleEngineError(
                    f"ruleset {ruleset!r}: action of rule {rule!r} failed: {error!r}"
                ) from error
            finally:
                # Complete the action even when it failed, and any the completion starts:
                # an action left open (or abandoned) blocks or resurfaces in later posts.
                extra = 0
                while durable_rules_engine.complete_and_start_action(handle, state) is not None:
                    extra += 1
        except durable_rules_engine.error as error:
            code_text = str(error).rpartition(" ")[2]
            reason = _LIMITS.get(code_text, "")
            raise RuleEngineError(
                f"ruleset {ruleset!r}: {error}" + (f" ({reason})" if reason else "")
            ) from error
        if fired_on != event_id:
            raise RuleEngineError(
                f"ruleset {ruleset!r}: rule {rule!r} fired on a held event {fired_on},"
                f" not on event {event_id} just posted"
            )
        if extra:
            raise RuleEngineError(f"ruleset {ruleset!r}: one post fired {1 + extra} rules")
        return str(rule)

    def _fire(self, ruleset: str, fact: Mapping[str, Any]) -> list[str]:
        """Assert `fact` as a fact, complete every action it starts, then retract it."""
        handle = self._handles[ruleset]
        fact_id = next(self._ids)  # fresh, like an event's: durable dedupes on the id
        payload = _ENCODE({**fact, "sid": _SID, "id": fact_id})
        fired: list[str] = []
        failure: RuleEngineError | None = None
        held = True
        try:
            try:
                code, state = durable_rules_engine.assert_fact(handle, payload)
                if code == _NOT_HANDLED:
                    # Matched no rule, so durable holds nothing of it (rules never join
                    # facts; tests check it): most posts end here, with no retract to pay.
                    held = False
                    return fired
                if code != _HANDLED:
                    raise RuleEngineError(
                        f"ruleset {ruleset!r}: durable_rules answered code {code}"
                    )
                started = durable_rules_engine.start_action_for_state(handle, state)
                if started is None:
                    raise RuleEngineError(
                        f"ruleset {ruleset!r}: fact accepted but no rule fired (session busy?)"
                    )
                message: str | None = started[1]
                while message is not None:
                    # Every action is completed, even after one failed: an action left open
                    # blocks or resurfaces in later posts.
                    if failure is None:
                        failure = self._collect(ruleset, message, payload, fact_id, fired)
                    message = durable_rules_engine.complete_and_start_action(handle, state)
            finally:
                # A matched fact stays in memory until retracted; retracting one durable does
                # not hold answers 0 too, so this runs whatever happened above.
                if held:
                    retracted = durable_rules_engine.retract_fact(handle, payload)[0]
                    if retracted != _HANDLED and failure is None:
                        failure = RuleEngineError(
                            f"ruleset {ruleset!r}: retracting the fact answered code {retracted}"
                        )
        except durable_rules_engine.error as error:
            code_text = str(error).rpartition(" ")[2]
            reason = _LIMITS.get(code_text, "")
            raise RuleEngineError(
                f"ruleset {ruleset!r}: {error}" + (f" ({reason})" if reason else "")
            ) from error
        if failure is not None:
            raise failure
        return fired

    def _collect(
        self, ruleset: str, message: str, payload: str, fact_id: int, fired: list[str]
    ) -> RuleEngineError | None:
        """Run the action of one fired rule; add its name to `fired`, or return the error."""
        try:
            rule, messages = _answer(message, payload, fact_id)
            fired_on = self._durable.fired(messages)
        except Exception as error:
            failure = RuleEngineError(f"ruleset {ruleset!r}: an action failed: {error!r}")
            failure.__cause__ = error
            return failure
        if fired_on != fact_id:
            return RuleEngineError(
                f"ruleset {ruleset!r}: rule {rule!r} fired on a held fact {fired_on},"
                f" not on fact {fact_id} just posted"
            )
        if rule not in fired:  # a rule whose condition is an $or fires once per branch
            fired.append(rule)
        return None
