"""The only module that touches durable_rules: one host per policy-set version.

Each policy is one durable ruleset whose rules are the policy's rules in order (rule i has
`"pri": i`). A fact is posted as an *event*, which fires at most one rule — the lowest `pri`
among those that match — so "the first matching rule of a policy wins". Events are consumed
by the rule they fire, so nothing stays in durable's memory; facts would stay until retracted.

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
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Mapping
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
    "303": "one event matched more than 64 distinct conditions of the ruleset",
}
# durable's Ruleset compiles rules from ensure_ascii=False JSON, and its parser does not
# join \u surrogate pairs: an escaped emoji would never equal the rule's. Built once:
# json.dumps with any option builds a new encoder per call (measured: ~1 us of ~3 per post).
# A checked fact holds scalars only, so the circular-reference check has nothing to find.
_ENCODE = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode


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
    for key, value in fact.items():
        if key in ("sid", "id"):
            raise ValueError(f"fact key {key!r} is reserved for the rule host")
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

    def __init__(self, rulesets: Mapping[str, Mapping[str, Any]]) -> None:
        """`rulesets`: name -> {rule name: {"all" or "any": [...], "pri": int}}, no "run"."""
        self._durable = _Host()
        self._handles: dict[str, int] = {}
        self._ids = itertools.count()
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

    def match(self, ruleset: str, fact: Mapping[str, Any]) -> str | None:
        """The name of the rule of `ruleset` that `fact` fires, or None if none matches."""
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
            ((rule, messages),) = json.loads(started[1]).items()
            try:
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
