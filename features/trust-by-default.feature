@policy:trust-by-default
Feature: Trust customers by default
  Principle: "Don't be paranoid; trust people by default and look only at real outliers."
  Owner: support-operations

  Replacements and refunds go through by default, up to the order's value. Only a customer
  far outside the norm (three or more remedies received in 90 days) is reviewed, and the
  rep keeps a small immediate remedy meanwhile; a request above the order's value goes to
  the team lead while the order's value goes through at once. A request for an order we
  have no record of goes to the team lead too, and the rep can credit $15 meanwhile.

  Background:
    Given it is Monday 2 November 2026, 09:00
    And rep "ana" works in team "north", led by "lee"
    And a customer "c-7" who has spent $2,400 with us over 14 orders
    And the customer placed order "A-1" for $120 today
    And the customer contacts ana about "question" on order "A-1"

  Scenario: A replacement goes through without anyone's review
    When ana asks to send a replacement worth $60 for order "A-1"
    Then ana may send a free replacement worth up to $60
    And ana may refund up to $60
    And no manager is involved
    And ana can tell the customer "You can have a replacement or your money back, whichever you prefer; I can do either right now."
    And the decision was made by rule "trusted" of policy "trust-by-default"

  Scenario: A refund of exactly the order's value goes through
    When ana asks to refund $120 for order "A-1"
    Then ana may refund up to $120
    And no manager is involved
    And the decision was made by rule "trusted" of policy "trust-by-default"

  Scenario: A refund larger than the order goes through up to its value, the rest is reviewed
    When ana asks to refund $150 for order "A-1"
    Then ana may refund up to $120
    And ana may send a free replacement worth up to $120
    And it is routed to team lead "lee"
    And the reason given is "the amount asked for is more than the order's value"
    And the handover shows event.amount $150.00
    And the handover shows order.amount $120.00
    And the handover shows order.known true
    And ana can tell the customer "I can put this right up to the order's value now, and a colleague will look at the rest with you today."
    And the decision was made by rule "more-than-the-order" of policy "trust-by-default"

  Scenario: A refund for an order we have no record of is looked at, and the rep can credit $15
    When ana asks to refund $60 for order "Z-9"
    Then ana may give a credit of up to $15
    And it is routed to team lead "lee"
    And the reason given is "the order is not in our records, so its value is not known"
    And the handover shows event.amount $60.00
    And ana can tell the customer "a colleague will find the order and sort out the rest"
    And the decision was made by rule "order-not-on-record" of policy "trust-by-default"

  Scenario: A replacement larger than the order goes through up to its value, the rest is reviewed
    When ana asks to send a replacement worth $150 for order "A-1"
    Then ana may send a free replacement worth up to $120
    And ana may refund up to $120
    And it is routed to team lead "lee"
    And the reason given is "the amount asked for is more than the order's value"
    And the decision was made by rule "more-than-the-order" of policy "trust-by-default"

  Scenario: A replacement for an order we have no record of is looked at, and the rep can credit $15
    When ana asks to send a replacement worth $60 for order "Z-9"
    Then ana may give a credit of up to $15
    And ana may not send a free replacement
    And it is routed to team lead "lee"
    And the reason given is "the order is not in our records, so its value is not known"
    And the handover shows event.order_id "Z-9"
    And the handover shows event.remedy "replacement"
    And the decision was made by rule "order-not-on-record" of policy "trust-by-default"

  Scenario: A customer far outside the norm is reviewed even for an order we have no record of
    Given the customer has received 3 remedies in the last 90 days
    When ana asks to refund $60 for order "Z-9"
    Then ana may give a credit of up to $15
    And it is routed to "review-desk"
    And ana may not refund
    And the decision was made by rule "outlier-review" of policy "trust-by-default"

  Scenario: Two remedies in 90 days are nothing unusual
    Given the customer has received 2 remedies in the last 90 days
    When ana asks to send a replacement worth $60 for order "A-1"
    Then ana may send a free replacement worth up to $60
    And no manager is involved
    And the decision was made by rule "trusted" of policy "trust-by-default"

  Scenario: Three remedies in 90 days are reviewed, and the rep can credit $15 meanwhile
    Given the customer has received 3 remedies in the last 90 days
    When ana asks to send a replacement worth $60 for order "A-1"
    Then ana may give a credit of up to $15
    And ana may not send a free replacement
    And ana may not refund
    And it is routed to "review-desk"
    And the reason given is "far more remedies than usual in 90 days"
    And the handover shows customer.remedies_90d 3
    And the handover shows customer.order_count 15
    And the handover shows customer.lifetime_value $2,520.00
    And ana can tell the customer "I can credit you $15 right now; a colleague is reviewing the rest and will contact you today."
    And the decision was made by rule "outlier-review" of policy "trust-by-default"

  Scenario: A remedy from exactly 90 days ago no longer counts
    Given the customer received a remedy 90 days ago
    And the customer has received 2 remedies in the last 90 days
    When ana asks to refund $60 for order "A-1"
    Then ana may refund up to $60
    And the decision was made by rule "trusted" of policy "trust-by-default"

  Scenario: An outlier's credit request is reviewed too, without words that take back the credit
    Given the customer has received 3 remedies in the last 90 days
    When ana asks to credit the customer $10
    Then it is routed to "review-desk"
    And the handover shows event.remedy "credit"
    And the handover shows event.amount $10.00
    And ana may give a credit of up to $10
    And $10 is charged to the goodwill budget of "north", leaving $290
    And ana can tell the customer "I've added the credit to your account."
    And ana can tell the customer "I've also asked a colleague to look over your recent orders"
    And the decision was made by rule "outlier-other-remedy" of policy "trust-by-default"

  Scenario: An outlier's shipping upgrade goes through, and the history is reviewed
    Given the customer has received 3 remedies in the last 90 days
    When ana asks to upgrade shipping on order "A-1" for $20
    Then ana may upgrade shipping for up to $20
    And ana may not give a credit
    And it is routed to "review-desk"
    And the decision was made by rule "outlier-other-remedy" of policy "trust-by-default"

  Scenario: A credit for a customer with no unusual history is another policy's business
    When ana asks to credit the customer $10
    Then policy "trust-by-default" does not apply
