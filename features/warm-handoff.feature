@policy:warm-handoff
Feature: Warm handoff
  Principle: "Never make the customer repeat themselves."
  Owner: support-operations

  A transferred contact carries its full context to the receiving team: who handed it over
  and what they noted, what it is about, how long it has been open, how often it has moved,
  and who the customer is to us.

  Background:
    Given it is Monday 2 November 2026, 09:00
    And rep "ana" works in team "north", led by "lee"
    And a customer "c-7" who has spent $2,400 with us over 14 orders
    And the customer placed order "A-1" for $180 today
    And the customer contacts ana about "question" on order "A-1"

  Scenario: The receiving team sees everything, so the customer repeats nothing
    Given 2 hours pass
    When ana transfers the case to the "billing" team
    Then it is routed to "billing"
    And the reason given is "transferred with context"
    And the handover shows case.topic "question"
    And the handover shows case.age_hours 2
    And the handover shows case.transfers 1
    And the handover shows case.remedies 0
    And the handover shows customer.tier "gold"
    And the handover shows customer.lifetime_value $2,580.00
    And the handover shows customer.open_cases 1
    And the handover shows order.id "A-1"
    And nothing is authorized
    And ana can tell the customer "I'm bringing in our billing team; they can see everything we've discussed, so you won't need to repeat anything."
    And the decision was made by rule "carry-context" of policy "warm-handoff"

  Scenario: A case moved twice shows both moves
    Given ana transfers the case to the "billing" team
    When ana transfers the case to the "returns" team
    Then it is routed to "returns"
    And the handover shows case.transfers 2

  Scenario: What the rep noted travels with the case
    When ana transfers the case to the "billing" team, noting "customer prefers a callback"
    Then it is routed to "billing"
    And the handover shows event.from_rep "ana"
    And the handover shows event.note "customer prefers a callback"
