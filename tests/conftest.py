"""Suite-wide pytest settings."""

from __future__ import annotations

import os

import pytest

from hypothesis import HealthCheck, settings

# CI (and anyone who sets ASTTAPI_HYPOTHESIS=ci) runs the same examples every
# time and keeps no example database: a red run must be red for a reason in
# the code, not for one that an earlier run saved in .hypothesis/.  Locally the
# default profile ("dev") explores at random, as many examples as CI, and
# remembers what it found; "explore" searches ten times longer.  The number of
# examples belongs to the profile, never to a test: a test's own
# max_examples would outweigh every profile.
_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, max_examples=100, **_COMMON)
settings.register_profile("dev", max_examples=100, **_COMMON)
settings.register_profile("explore", max_examples=1000, **_COMMON)
settings.load_profile(
    os.environ.get("ASTTAPI_HYPOTHESIS") or ("ci" if os.environ.get("CI") else "dev")
)


def pytest_collection_modifyitems(config, items):
    """Under CI every Hypothesis test runs the profile's fixed examples: a test
    that brings its own seed, randomness, database or example count is a
    collection error, not a source of flaky or slow runs."""
    profile = settings.default
    if not profile.derandomize:
        return
    wrong = []
    for item in items:
        test = getattr(item, "obj", None)
        if not getattr(test, "is_hypothesis_test", False):
            continue
        own = getattr(test, "_hypothesis_internal_use_settings", profile)
        if (getattr(test, "_hypothesis_internal_use_seed", None) is not None or not own.derandomize
                or own.database is not None or own.max_examples != profile.max_examples):
            wrong.append(item.nodeid)
    if wrong:
        raise pytest.UsageError(
            "Hypothesis tests that override the CI profile (seed, derandomize, database or "
            "max_examples): " + ", ".join(wrong)
        )
