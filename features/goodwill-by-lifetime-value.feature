@policy:goodwill-by-lifetime-value
Feature: Goodwill credit by lifetime value
  Principle: "Know the customer's lifetime value; treat the relationship, not the transaction."
  Owner: customer-care

  A rep's credit authority scales with the customer's tier: standard up to $30, silver
  (lifetime value from $500) up to $75, gold (from $2,000) up to $150. Credits are charged
  to the team's monthly goodwill budget ($300 unless allocated otherwise); beyond it, or
  beyond the tier's authority, the team lead decides, and the customer is never refused:
  above the tier's authority the rep still gives the tier's own amount at once, so asking
  a cent more never leaves a gold customer with less than asking a cent less.

  Background:
    Given it is Monday 2 November 2026, 09:00
    And rep "ana" works in team "north", led by "lee"

  Scenario Outline: A rep credits up to the customer's tier authority on their own
    Given a customer "c-1" who has spent <spent> with us over 3 orders
    And the customer contacts ana about "question"
    When ana asks to credit the customer <credit>
    Then ana may give a credit of up to <credit>
    And <credit> is charged to the goodwill budget of "north", leaving <left>
    And no manager is involved
    And ana can tell the customer "<words>"
    And the decision was made by rule "<tier>" of policy "goodwill-by-lifetime-value"

    Examples:
      | spent     | tier     | credit | left | words                                                                       |
      | $120      | standard | $30    | $270 | I've added the credit to your account.                                      |
      | $499.99   | standard | $30    | $270 | I've added the credit to your account.                                      |
      | $500      | silver   | $75    | $225 | I've added the credit to your account.                                      |
      | $1,999.99 | silver   | $75    | $225 | I've added the credit to your account.                                      |
      | $2,000    | gold     | $150   | $150 | Thank you for being with us so long. I've added the credit to your account. |

  Scenario Outline: Below the tier's authority the rep may credit what was asked, no more
    Given a customer "c-1" who has spent <spent> with us over 3 orders
    And the customer contacts ana about "question"
    When ana asks to credit the customer $20
    Then ana may give a credit of up to $20
    And $20 is charged to the goodwill budget of "north", leaving $280
    And no manager is involved
    And the decision was made by rule "<tier>" of policy "goodwill-by-lifetime-value"

    Examples:
      | spent  | tier     |
      | $120   | standard |
      | $500   | silver   |
      | $2,000 | gold     |

  Scenario Outline: Above its authority the rep credits the tier's amount now and asks the team lead
    Given a customer "c-1" who has spent <spent> with us over 3 orders
    And the customer contacts ana about "question"
    When ana asks to credit the customer <credit>
    Then ana may give a credit of up to <now>
    And it is routed to team lead "lee"
    And the reason given is "the credit asked for is above this tier's authority"
    And the handover shows customer.tier "<tier>"
    And the handover shows event.amount <credit>
    And the handover shows customer.lifetime_value <spent>
    And <now> is charged to the goodwill budget of "north", leaving <left>
    And ana can tell the customer "I can credit <now> right now, and I've asked my team lead about the rest."
    And the decision was made by rule "<rule>" of policy "goodwill-by-lifetime-value"

    Examples:
      | spent   | tier     | credit  | now  | left | rule                   |
      | $499.99 | standard | $30.01  | $30  | $270 | above-tier-authority   |
      | $500    | silver   | $75.01  | $75  | $225 | silver-above-authority |
      | $2,000  | gold     | $150.01 | $150 | $150 | gold-above-authority   |

  Scenario: The team's goodwill budget can be used to the last cent
    Given a customer "c-1" who has spent $120 with us over 2 orders
    And team "north" has $30 left in its goodwill budget this month
    And the customer contacts ana about "question"
    When ana asks to credit the customer $30
    Then ana may give a credit of up to $30
    And $30 is charged to the goodwill budget of "north", leaving $0
    And the decision was made by rule "standard" of policy "goodwill-by-lifetime-value"

  Scenario: Beyond the team's goodwill budget the team lead approves
    Given a customer "c-1" who has spent $120 with us over 2 orders
    And team "north" has $29.99 left in its goodwill budget this month
    And the customer contacts ana about "question"
    When ana asks to credit the customer $30
    Then nothing is authorized
    And it is routed to team lead "lee"
    And the handover shows requested $30.00
    And the handover shows remaining $29.99
    And nothing is charged to a budget
    And ana can tell the customer "I've asked my team lead to approve this credit; you'll hear back within the hour."
    And the decision was made by rule "standard" of policy "goodwill-by-lifetime-value"

  Scenario: Without an allocation a team has $300 of goodwill a month
    Given a customer "c-1" who has spent $2,000 with us over 3 orders
    And the customer contacts ana about "question"
    And ana asks to credit the customer $150
    And ana asks to credit the customer $150
    When ana asks to credit the customer $0.01
    Then nothing is authorized
    And it is routed to team lead "lee"
    And the handover shows allocated $300.00
    And the handover shows remaining $0.00

  Scenario Outline: A refund is not a goodwill credit, whatever the customer's tier
    Given a customer "c-1" who has spent <spent> with us over 3 orders
    And the customer contacts ana about "question" on order "c-1-past-1"
    When ana asks to refund $20 for order "c-1-past-1"
    Then policy "goodwill-by-lifetime-value" does not apply
    And nothing is charged to a budget

    Examples:
      | spent  | tier     |
      | $120   | standard |
      | $500   | silver   |
      | $2,000 | gold     |
