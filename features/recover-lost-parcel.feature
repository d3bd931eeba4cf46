@policy:recover-lost-parcel
Feature: Recover a lost parcel
  Principle: "Recover the moment before the customer has to ask."
  Owner: customer-care

  A lost parcel gets a free replacement sent overnight, offered before the customer gets
  in touch. A parcel lost for an order not in our records goes to a team lead, and the
  faster shipping is authorized at once. An order the carrier reports lost a second time
  goes to the team lead too, who checks with the carrier before another replacement: a
  second report is often the first one sent again.

  Background:
    Given it is Monday 2 November 2026, 09:00
    And a customer "c-7"
    And the customer placed order "A-1" for $180 today
    And order "A-1" was shipped by standard delivery, promised in 4 days

  Scenario: A lost parcel is replaced overnight, before the customer asks
    When the carrier reports order "A-1" as lost
    Then we may send a free replacement worth up to $180
    And we may upgrade shipping for up to $30
    And no manager is involved
    And we can tell the customer "Your parcel has gone missing in transit. I'm sending a replacement overnight at no cost to you."
    And the decision was made by rule "replace-lost-parcel" of policy "recover-lost-parcel"

  Scenario: A late parcel is not a lost one
    When the carrier says order "A-1" will arrive 3 days late
    Then policy "recover-lost-parcel" does not apply

  Scenario: A parcel lost for an order not in our records goes to a team lead
    When the carrier reports order "B-9" as lost
    Then we may upgrade shipping for up to $30
    And we may not send a free replacement
    And it is routed to "team-lead"
    And the reason given is "a parcel was lost for an order not in our records"
    And the handover shows order.id "B-9"
    And we can tell the customer "A colleague is arranging the replacement now and will confirm it with you today."
    And the decision was made by rule "order-not-on-record" of policy "recover-lost-parcel"

  Scenario: An order reported lost again goes to the team lead, not to a second replacement
    Given the carrier reports order "A-1" as lost
    When the carrier reports order "A-1" as lost
    Then we may not send a free replacement
    And it is routed to "team-lead"
    And the reason given is "the carrier has reported this order lost more than once"
    And the handover shows order.lost_reports 2
    And we can tell the customer "The carrier has sent us another report about your parcel. A colleague is checking it with them and will confirm your replacement with you today."
    And the decision was made by rule "lost-again" of policy "recover-lost-parcel"

  Scenario: A third loss report goes to the team lead too
    Given the carrier reports order "A-1" as lost
    And the carrier reports order "A-1" as lost
    When the carrier reports order "A-1" as lost
    Then we may not send a free replacement
    And it is routed to "team-lead"
    And the handover shows order.lost_reports 3
    And the decision was made by rule "lost-again" of policy "recover-lost-parcel"

  Scenario: An order not in our records reported lost again goes to the team lead as lost again
    Given the carrier reports order "B-9" as lost
    When the carrier reports order "B-9" as lost
    Then we may not upgrade shipping
    And it is routed to "team-lead"
    And the handover shows order.lost_reports 2
    And the decision was made by rule "lost-again" of policy "recover-lost-parcel"
