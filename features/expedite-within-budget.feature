@policy:expedite-within-budget
Feature: Expedite shipping within the rep's budget
  Principle: "Under-promise and over-deliver."
  Owner: support-operations

  A rep upgrades shipping at no charge from their own monthly expedite budget ($100 unless
  allocated otherwise), up to $50 at a time. Beyond the budget, or above $50, the team lead
  approves; the customer hears when, never "no".

  Background:
    Given it is Monday 2 November 2026, 09:00
    And rep "ana" works in team "north", led by "lee"
    And a customer "c-7" who has spent $2,400 with us over 14 orders
    And the customer placed order "A-1" for $180 today
    And the customer contacts ana about "late_delivery" on order "A-1"

  Scenario: An upgrade within the rep's budget needs no one's approval
    Given rep "ana" has $120 left in her expedite budget this month
    When ana asks to upgrade shipping on order "A-1" for $40
    Then ana may upgrade shipping for up to $40
    And $40 is charged to the expedite budget of "ana", leaving $80
    And no manager is involved
    And ana can tell the customer "I've upgraded your shipping at no charge. It's on its way faster."
    And the decision was made by rule "within-budget" of policy "expedite-within-budget"

  Scenario: The budget can be spent to the last cent
    Given rep "ana" has $40 left in her expedite budget this month
    When ana asks to upgrade shipping on order "A-1" for $40
    Then ana may upgrade shipping for up to $40
    And $40 is charged to the expedite budget of "ana", leaving $0
    And no manager is involved

  Scenario: One cent beyond the budget goes to the team lead
    Given rep "ana" has $39.99 left in her expedite budget this month
    When ana asks to upgrade shipping on order "A-1" for $40
    Then nothing is authorized
    And it is routed to team lead "lee"
    And the handover shows requested $40.00
    And the handover shows remaining $39.99
    And nothing is charged to a budget
    And ana can tell the customer "I've asked my team lead to approve the faster shipping; you'll hear back within the hour."
    And the decision was made by rule "within-budget" of policy "expedite-within-budget"

  Scenario: An upgrade of exactly $50 is within a rep's own authority
    When ana asks to upgrade shipping on order "A-1" for $50
    Then ana may upgrade shipping for up to $50
    And $50 is charged to the expedite budget of "ana", leaving $50
    And no manager is involved

  Scenario: An upgrade above $50 is looked at by the team lead
    When ana asks to upgrade shipping on order "A-1" for $50.01
    Then ana may not upgrade shipping
    And it is routed to team lead "lee"
    And the reason given is "an expedite above $50 is unusual"
    And the handover shows event.amount $50.01
    And the handover shows budget.remaining $100.00
    And the handover shows order.amount $180.00
    And nothing is charged to a budget
    And ana can tell the customer "That upgrade needs a quick look from my team lead; I'll confirm within the hour."
    And the decision was made by rule "unusually-large" of policy "expedite-within-budget"

  Scenario: Without an allocation a rep has $100 of expedite a month
    Given ana asks to upgrade shipping on order "A-1" for $50
    And ana asks to upgrade shipping on order "A-1" for $50
    When ana asks to upgrade shipping on order "A-1" for $0.01
    Then nothing is authorized
    And it is routed to team lead "lee"
    And the handover shows allocated $100.00
    And the handover shows remaining $0.00

  Scenario: A new month brings a fresh budget
    Given rep "ana" has $0 left in her expedite budget this month
    And 29 days pass
    When ana asks to upgrade shipping on order "A-1" for $40
    Then ana may upgrade shipping for up to $40
    And $40 is charged to the expedite budget of "ana", leaving $60

  Scenario Outline: A credit is not a shipping upgrade, however large
    When ana asks to credit the customer <credit>
    Then policy "expedite-within-budget" does not apply

    Examples:
      | credit |
      | $10    |
      | $60    |
