@policy:root-cause-alert
Feature: Alert the product team to a spike in defect reports
  Principle: "Fix the cause, not just the case."
  Owner: product-quality

  Repeated defect reports for one product within 7 days alert the product team, once a
  week at most. The alert runs alongside the case: the customer is helped as always.

  Background:
    Given it is Monday 2 November 2026, 09:00
    And rep "ana" works in team "north", led by "lee"
    And a customer "c-7" who has spent $2,400 with us over 14 orders
    And the customer placed order "A-1" for $45 today
    And the customer contacts ana about "defect" on order "A-1"

  Scenario: The fifth report of a product within 7 days alerts the product team
    Given 4 customers have reported product "KETTLE-2" as broken
    And 2 days pass
    When the customer reports product "KETTLE-2" from order "A-1" as broken
    Then "product-team" is alerted that "KETTLE-2" had 5 defect reports in 7 days
    And the decision was made by rule "defect-spike" of policy "root-cause-alert"
    And the decision was made by policy "replace-broken-part"
    And ana may send a free replacement worth up to $45

  Scenario: A report about an order not in our records counts toward a spike too
    Given 4 customers have reported product "KETTLE-2" as broken
    When the customer reports product "KETTLE-2" from order "Z-9" as broken
    Then "product-team" is alerted that "KETTLE-2" had 5 defect reports in 7 days
    And the decision was made by rule "defect-spike" of policy "root-cause-alert"

  Scenario: The fourth report is not yet a spike
    Given 3 customers have reported product "KETTLE-2" as broken
    When the customer reports product "KETTLE-2" from order "A-1" as broken
    Then no one is alerted
    And policy "root-cause-alert" does not apply
    And ana may send a free replacement worth up to $45

  Scenario: Reports of other products do not add up
    Given 4 customers have reported product "TOASTER-1" as broken
    When the customer reports product "KETTLE-2" from order "A-1" as broken
    Then no one is alerted
    And policy "root-cause-alert" does not apply

  Scenario: A report made just under 7 days earlier still counts
    Given 1 customer has reported product "KETTLE-2" as broken
    And 1 day passes
    And 3 customers have reported product "KETTLE-2" as broken
    And 5 days, 23 hours, 59 minutes and 59 seconds pass
    When the customer reports product "KETTLE-2" from order "A-1" as broken
    Then "product-team" is alerted that "KETTLE-2" had 5 defect reports in 7 days

  Scenario Outline: A report made 7 days earlier or more no longer counts
    Given 1 customer has reported product "KETTLE-2" as broken
    And 1 day passes
    And 3 customers have reported product "KETTLE-2" as broken
    And <later> pass
    When the customer reports product "KETTLE-2" from order "A-1" as broken
    Then no one is alerted
    And policy "root-cause-alert" does not apply

    Examples: the first report was made
      | later               | earlier                |
      | 6 days              | exactly 7 days earlier |
      | 6 days and 1 second | 7 days and 1 second    |

  Scenario: The product team is alerted once a week, not once per report
    Given 5 customers have reported product "KETTLE-2" as broken
    And 1 day passes
    When the customer reports product "KETTLE-2" from order "A-1" as broken
    Then no one is alerted
    And the decision was made by rule "defect-spike" of policy "root-cause-alert"
    And policy "root-cause-alert" notes "no alert: at most one is raised per 7 days for a SKU, and the one for KETTLE-2 was raised at 2026-11-02T09:00:00+00:00"

  Scenario: A new spike a week later alerts again
    Given 5 customers have reported product "KETTLE-2" as broken
    And 7 days and 1 hour pass
    And 4 customers have reported product "KETTLE-2" as broken
    When the customer reports product "KETTLE-2" from order "A-1" as broken
    Then "product-team" is alerted that "KETTLE-2" had 5 defect reports in 7 days
