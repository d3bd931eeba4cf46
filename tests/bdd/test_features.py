"""Every scenario of every feature in `features/` (or GOODWILL_FEATURES), as a test."""

from pytest_bdd import scenarios

from tests.bdd.world import features_dir

scenarios(str(features_dir()))
