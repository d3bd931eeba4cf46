@policy:recover-the-moment
Feature: Recover the moment when a shipment is late
  Principle: "Recover the moment before the customer has to ask."
  Owner: customer-care

  A delayed shipment triggers an apology and a credit before the customer gets in touch:
  three days late or more, a tenth of the order (at most $25) and faster shipping for the
  rest; less than that, a small credit for the wait. The credit is once per order: when
  the carrier reports the same order late again, the rep may speed up the rest instead. A
  parcel the carrier already reported lost is being replaced overnight
  (recover-lost-parcel), so a delay reported for it after that is not apologized for again.

  Background:
    Given it is Monday 2 November 2026, 09:00
    And a customer "c-7"

  Scenario: Three days late: a credit and faster shipping, before the customer asks
    Given the customer placed order "A-1" for $180 today
    And order "A-1" was shipped by standard delivery, promised in 4 days
    When the carrier says order "A-1" will arrive 3 days late
    Then we may give a credit of up to $18
    And we may upgrade shipping for up to $20
    And no manager is involved
    And we can tell the customer "Your order is running 3 days late; that's on us. I've added a credit, and I can speed up the rest."
    And the decision was made by rule "long-delay" of policy "recover-the-moment"

  Scenario Outline: The credit for a long delay is a tenth of the order, at most $25
    Given the customer placed order "B-1" for <order> today
    And order "B-1" was shipped by expedited delivery, promised in 2 days
    When the carrier says order "B-1" will arrive 5 days late
    Then we may give a credit of up to <credit>
    And the decision was made by rule "long-delay" of policy "recover-the-moment"

    Examples:
      | order  | credit | note                         |
      | $180   | $18    | a tenth                      |
      | $250   | $25    | a tenth is the cap           |
      | $1,000 | $25    | capped                       |
      | $12.25 | $1.22  | half a cent rounds to even   |
      | $12.35 | $1.24  | half a cent rounds to even   |

  Scenario: Just under three days late is a short delay: a small credit for the wait
    Given the customer placed order "A-1" for $180 today
    And order "A-1" was shipped by standard delivery, promised in 4 days
    When the carrier says order "A-1" will arrive 2 days and 23 hours late
    Then we may give a credit of up to $5
    And we may not upgrade shipping
    And we can tell the customer "Your order is running a little late. Sorry about that; here's a small credit for the wait."
    And the decision was made by rule "short-delay" of policy "recover-the-moment"

  Scenario: A delay of a few hours gets the small credit too
    Given the customer placed order "A-1" for $180 today
    And order "A-1" was shipped by standard delivery, promised in 4 days
    When the carrier says order "A-1" will arrive 5 hours late
    Then we may give a credit of up to $5
    And we may not upgrade shipping
    And no manager is involved
    And the decision was made by rule "short-delay" of policy "recover-the-moment"

  Scenario Outline: Late again: faster shipping, not a second credit
    Given the customer placed order "A-1" for $180 today
    And order "A-1" was shipped by standard delivery, promised in 4 days
    And the carrier says order "A-1" will arrive <first> late
    When the carrier says order "A-1" will arrive <again> late
    Then we may upgrade shipping for up to $20
    And we may not give a credit
    And no manager is involved
    And we can tell the customer "I'm sorry your order is still running late. I can speed up the rest at no charge."
    And the decision was made by rule "delayed-again" of policy "recover-the-moment"

    Examples:
      | first  | again  |
      | 1 day  | 4 days |
      | 5 days | 6 days |

  Scenario: Late a third time: faster shipping again, still no second credit
    Given the customer placed order "A-1" for $180 today
    And order "A-1" was shipped by standard delivery, promised in 4 days
    And the carrier says order "A-1" will arrive 1 day late
    And the carrier says order "A-1" will arrive 3 days late
    When the carrier says order "A-1" will arrive 5 days late
    Then we may upgrade shipping for up to $20
    And we may not give a credit
    And the decision was made by rule "delayed-again" of policy "recover-the-moment"

  Scenario Outline: A delay reported after the parcel was lost is not apologized for again
    Given the customer placed order "A-1" for $180 today
    And order "A-1" was shipped by standard delivery, promised in 4 days
    And the carrier reports order "A-1" as lost
    When the carrier says order "A-1" will arrive <late> late
    Then policy "recover-the-moment" does not apply

    Examples:
      | late   |
      | 5 days |
      | 1 day  |

  Scenario: A delay reported again after the parcel was lost is not apologized for either
    Given the customer placed order "A-1" for $180 today
    And order "A-1" was shipped by standard delivery, promised in 4 days
    And the carrier says order "A-1" will arrive 2 days late
    And the carrier reports order "A-1" as lost
    When the carrier says order "A-1" will arrive 5 days late
    Then policy "recover-the-moment" does not apply
