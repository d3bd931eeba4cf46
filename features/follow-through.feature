@policy:follow-through
Feature: Follow through on every case
  Principle: "Follow through; never leave a customer wondering."
  Owner: support-operations

  Every opened case gets a follow-up deadline of 48 hours; a follow-up still open when the
  deadline comes escalates to the rep's team lead. A resolved case needs no follow-up.

  Background:
    Given it is Monday 2 November 2026, 09:00
    And rep "ana" works in team "north", led by "lee"
    And a customer "c-7"

  Scenario: Every new case gets a follow-up within 48 hours
    When the customer contacts ana about "question"
    Then a follow-up is due within 48 hours
    And ana can tell the customer "I'll follow up with you within 48 hours, even if it's just to tell you where things stand."
    And nothing is authorized
    And no manager is involved
    And the outcome is noted
    And the decision was made by rule "follow-up-deadline" of policy "follow-through"

  Scenario Outline: Every case gets a follow-up, whatever it is about
    When the customer contacts ana about "<topic>"
    Then a follow-up is due within 48 hours
    And the decision was made by rule "follow-up-deadline" of policy "follow-through"

    Examples:
      | topic              |
      | wrong_item         |
      | billing_error      |
      | damaged_in_transit |
      | late_delivery      |

  Scenario Outline: A case about an order gets a follow-up too
    Given the customer placed order "A-1" for $120 today
    When the customer contacts ana about "<topic>" on order "A-1"
    Then a follow-up is due within 48 hours
    And the decision was made by rule "follow-up-deadline" of policy "follow-through"

    Examples:
      | topic              |
      | question           |
      | wrong_item         |
      | damaged_in_transit |
      | defect             |

  Scenario: A follow-up not done by its deadline goes to the team lead
    Given the customer contacts ana about "question"
    When 48 hours pass
    Then the overdue follow-up is escalated to team lead "lee"

  Scenario: A case with a second promise on it is escalated once, at the earlier deadline
    Given the customer placed order "A-1" for $120 today
    And the customer contacts ana about "defect" on order "A-1"
    And 10 minutes pass
    And the customer reports the part from order "A-1" as broken
    When 48 hours pass
    Then the overdue follow-up is escalated to team lead "lee"

  Scenario: Until the deadline nothing escalates
    Given the customer contacts ana about "question"
    When 47 hours, 59 minutes and 59 seconds pass
    Then no follow-up is overdue

  Scenario: A resolved case needs no follow-up
    Given the customer contacts ana about "question"
    And 1 day passes
    And the case is resolved
    When 2 days pass
    Then no follow-up is overdue
