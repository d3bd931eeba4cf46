@policy:take-responsibility
Feature: Take responsibility for our own mistakes
  Principle: "Take responsibility; when we got it wrong, we fix it without asking for proof."
  Owner: customer-care

  A contact about our own mistake (a wrong item, a billing error, damage in transit)
  authorizes a remedy straight away, without asking the customer to prove fault: the
  customer chooses a replacement, a refund or a credit. With no order named, the credit
  goes through at once, and the rest once the customer names the order.

  Background:
    Given it is Monday 2 November 2026, 09:00
    And rep "ana" works in team "north", led by "lee"
    And a customer "c-7" who has spent $2,400 with us over 14 orders
    And the customer placed order "A-1" for $120 today

  Scenario Outline: Our own mistake is put right at once, the customer's choice
    When the customer contacts ana about "<topic>" on order "A-1"
    Then ana may send a free replacement worth up to $120
    And ana may refund up to $120
    And ana may give a credit of up to $20
    And no manager is involved
    And ana can tell the customer "That's our mistake, and I'm sorry. I can put it right now; would a replacement, a refund or a credit suit you best?"
    And the decision was made by rule "our-mistake" of policy "take-responsibility"

    Examples:
      | topic              |
      | wrong_item         |
      | billing_error      |
      | damaged_in_transit |

  Scenario Outline: Other topics are not taken as our mistake
    When the customer contacts ana about "<topic>" on order "A-1"
    Then policy "take-responsibility" does not apply
    And nothing is authorized
    And a follow-up is due within 48 hours

    Examples:
      | topic         |
      | question      |
      | defect        |
      | late_delivery |

  Scenario Outline: Our own mistake with no order named gets the credit straight away
    When the customer contacts ana about "<topic>"
    Then ana may give a credit of up to $20
    And ana may not refund
    And ana may not send a free replacement
    And no manager is involved
    And ana can tell the customer "I can credit you $20 right now, and if you tell me the order I can replace or refund it too."
    And the decision was made by rule "our-mistake-no-order" of policy "take-responsibility"

    Examples:
      | topic              |
      | wrong_item         |
      | billing_error      |
      | damaged_in_transit |
