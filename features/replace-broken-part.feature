@policy:replace-broken-part
Feature: Replace a broken part
  Principle: "Take responsibility; put the customer in control."
  Owner: support-operations

  When a part breaks, the rep sends a free replacement without asking anyone, and the
  customer picks the delivery date. Only an order we cannot vouch for (over a year old, or
  not in our records) or a customer far outside the norm goes to the team lead, and even
  then the rep can credit something straight away.

  Background:
    Given it is Monday 2 November 2026, 09:00
    And rep "ana" works in team "north", led by "lee"
    And a customer "c-7" who has spent $2,400 with us over 14 orders

  Scenario: A part breaks and the rep replaces it without asking anyone
    Given the customer placed order "A-1" for $180 today
    And the customer contacts ana about "defect" on order "A-1"
    When the customer reports the part from order "A-1" as broken
    Then ana may send a free replacement worth up to $180
    And no manager is involved
    And a follow-up is due within 48 hours
    And ana can tell the customer "I'll send a replacement at no charge. Which day suits you for delivery?"
    And the decision was made by rule "trusted-by-default" of policy "replace-broken-part"

  Scenario: An order placed exactly a year ago is still replaced
    Given the customer placed order "A-1" for $180 365 days ago
    And the customer contacts ana about "defect" on order "A-1"
    When the customer reports the part from order "A-1" as broken
    Then ana may send a free replacement worth up to $180
    And no manager is involved
    And the decision was made by rule "trusted-by-default" of policy "replace-broken-part"

  Scenario: An order placed a year and a day ago goes to the team lead, with a credit now
    Given the customer placed order "A-1" for $180 366 days ago
    And the customer contacts ana about "defect" on order "A-1"
    When the customer reports the part from order "A-1" as broken
    Then ana may give a credit of up to $25
    And ana may not send a free replacement
    And it is routed to team lead "lee"
    And the reason given is "the order is over a year old or not in our records"
    And the handover shows order.age_days 366
    And ana can tell the customer "I can credit you $25 now, and a colleague will look at a repair or replacement with you today."
    And no follow-up is promised
    And the decision was made by rule "older-or-unknown-order" of policy "replace-broken-part"

  Scenario: An order we have no record of goes to the team lead, with a credit now
    Given the customer contacts ana about "defect" on order "Z-9"
    When the customer reports the part from order "Z-9" as broken
    Then ana may give a credit of up to $25
    And it is routed to team lead "lee"
    And the handover shows order.id "Z-9"
    And the decision was made by rule "older-or-unknown-order" of policy "replace-broken-part"

  Scenario: Two remedies in 90 days are nothing unusual
    Given the customer placed order "A-1" for $180 today
    And the customer has received 2 remedies in the last 90 days
    And the customer contacts ana about "defect" on order "A-1"
    When the customer reports the part from order "A-1" as broken
    Then ana may send a free replacement worth up to $180
    And no manager is involved
    And the decision was made by rule "trusted-by-default" of policy "replace-broken-part"

  Scenario: A customer with three remedies in 90 days is looked at by the team lead
    Given the customer placed order "A-1" for $180 today
    And the customer has received 3 remedies in the last 90 days
    And the customer contacts ana about "defect" on order "A-1"
    When the customer reports the part from order "A-1" as broken
    Then ana may give a credit of up to $20
    And ana may not send a free replacement
    And it is routed to team lead "lee"
    And the reason given is "several remedies in the last 90 days"
    And the handover shows customer.remedies_90d 3
    And the handover shows order.amount $180.00
    And the handover shows customer.lifetime_value $2,580.00
    And ana can tell the customer "I can credit you $20 right now, and a colleague will look at the replacement with you today."
    And no follow-up is promised
    And the decision was made by rule "unusual-history" of policy "replace-broken-part"

  Scenario: An old order of a customer with two remedies in 90 days is looked at as an old order
    Given the customer placed order "A-1" for $180 366 days ago
    And the customer has received 2 remedies in the last 90 days
    And the customer contacts ana about "defect" on order "A-1"
    When the customer reports the part from order "A-1" as broken
    Then ana may give a credit of up to $25
    And it is routed to team lead "lee"
    And the reason given is "the order is over a year old or not in our records"
    And the decision was made by rule "older-or-unknown-order" of policy "replace-broken-part"

  Scenario: A remedy from exactly 90 days ago no longer counts
    Given the customer placed order "A-1" for $180 today
    And the customer received a remedy 90 days ago
    And the customer has received 2 remedies in the last 90 days
    And the customer contacts ana about "defect" on order "A-1"
    When the customer reports the part from order "A-1" as broken
    Then ana may send a free replacement worth up to $180
    And the decision was made by rule "trusted-by-default" of policy "replace-broken-part"

  Scenario: A replacement asked for outside a defect report is not this policy's business
    Given the customer placed order "A-1" for $180 today
    And the customer contacts ana about "question" on order "A-1"
    When ana asks to send a replacement worth $180 for order "A-1"
    Then policy "replace-broken-part" does not apply
